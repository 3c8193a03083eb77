package policy

import (
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/catalog"
)

// MaxJWTSize caps a JWT ticket (the compact serialization); larger tokens
// are refused before any decoding, and JWTBuilder.Build refuses to issue
// them.
const MaxJWTSize = 8 << 10

// JWTClass is the default class of JWT tickets, the same ID as mosaik's
// Jwt::CLASS (the BLAKE3 hash of "mosaik.tickets.jwt.v1").
var JWTClass = catalog.IDFromString("mosaik.tickets.jwt.v1")

// The private claims that bind a JWT to one network and one ticket class.
// Without them a token issued for a test network, or for another class
// signed with a shared key, would be accepted everywhere the key is
// trusted. [JWTBuilder] writes both as 64 lowercase hex characters; a
// validator reads them by the catalog's one rule ([catalog.IDFromString]),
// so an issuer outside mosaik may also write the names themselves.
const (
	JWTNetworkClaim = "mosaik_network"
	JWTClassClaim   = "mosaik_class"
)

// maxNumericDate bounds the registered time claims (exp, nbf, iat) to
// ±9999-12-31T23:59:59Z in unix seconds; anything larger is malformed.
const maxNumericDate = 253402300799

// Subject returns the JWT subject string of peer p, the form mosaik uses:
// the lowercase hex of the 32-byte raw Ed25519 public key p is derived from
// (not the base58 peer ID string). It fails for peers whose ID does not
// embed an Ed25519 key.
func Subject(p peer.ID) (string, error) {
	pk, err := p.ExtractPublicKey()
	if err != nil {
		return "", fmt.Errorf("policy: JWT subject of %s: %w", p, err)
	}
	if pk.Type() != crypto.Ed25519 {
		return "", fmt.Errorf("policy: JWT subject of %s: key type %v, want Ed25519", p, pk.Type())
	}
	raw, err := pk.Raw()
	if err != nil {
		return "", fmt.Errorf("policy: JWT subject of %s: %w", p, err)
	}
	return hex.EncodeToString(raw), nil
}

// requiredClaim is a claim the validator requires, its value normalized to
// what encoding/json decodes (numbers as json.Number).
type requiredClaim struct {
	name  string
	value any
}

// JWT validates JWT tickets, mosaik's built-in ticket format. It is the Go
// counterpart of mosaik's Jwt validator.
//
// Configure it with NewJWT and the builder methods; each returns a changed
// copy, so a JWT is immutable once built and safe for concurrent use. Keys:
// HMAC (HS256/HS384/HS512), ECDSA (ES256, ES384, ES512) and Ed25519 (EdDSA). Any
// configured key whose algorithm matches the token header's "alg" may
// verify it, so several keys allow rotation; an "alg" none of the keys has,
// "none" included, is refused with ErrTicketAlgorithm.
//
// After the signature, Validate checks, in this order and at whole seconds
// of the injected now:
//
//  1. binding: the JWTNetworkClaim claim must name the validator's network
//     (ErrWrongNetwork) and the JWTClassClaim claim its class
//     (ErrWrongClass); a token carrying neither is refused unless
//     AcceptUnbound;
//  2. issuer: with AllowIssuer, "iss" must be one of the allowed
//     (ErrTicketIssuerName);
//  3. subject: "sub" must equal RequireSubject's value, by default
//     Subject(holder), the lowercase hex of the holder's 32-byte Ed25519
//     public key, as in mosaik (ErrWrongSubject);
//  4. "nbf" after now + leeway, or "iat" after now + leeway + 1 s (a
//     token from the future: the issuer's clock is ahead by more than the
//     allowed drift; the second is iat's whole-second precision), rejects
//     (ErrTicketNotYet);
//  5. "exp" missing rejects unless AllowNonExpiring (ErrTicketNoExpiry);
//     exp <= now − leeway rejects (ErrTicketExpired);
//  6. with MaxLifetime, exp − now above it rejects (ErrTicketTooLong);
//  7. with MaxAge, "iat" is required and now − iat above it rejects
//     (ErrTicketTooOld);
//  8. audience: with AllowAudience, "aud" (a string, or an array of
//     strings) must be, or contain, one of the allowed (ErrTicketAudience);
//  9. every RequireClaim claim must be present and equal (ErrTicketClaim).
//
// Tokens larger than MaxJWTSize, not UTF-8 or not well-formed fail with
// ErrTicketMalformed; bad signatures with ErrTicketSignature. Validate
// returns the instant it would start refusing the token: exp + leeway, or
// with MaxAge the end of the token's age if sooner, or Never for a token
// without "exp" and no MaxAge.
//
// Unlike mosaik, which has neither, a JWT is bound to its network and class
// (step 1; AcceptUnbound restores mosaik's behaviour for issuers that do not
// bind), Leeway tolerates clock skew (0 by default, as in mosaik), and
// "iat" in the future is refused (step 4; mosaik does not check it).
type JWT struct {
	class            catalog.TicketClass
	network          catalog.NetworkID
	acceptUnbound    bool
	keys             []JWTKey
	issuers          []string
	audiences        []string
	subject          string
	hasSubject       bool
	claims           []requiredClaim // sorted by name, unique
	allowNonExpiring bool
	maxLifetime      time.Duration
	maxAge           time.Duration
	leeway           time.Duration
}

var _ TicketValidator = (*JWT)(nil)

// NewJWT returns a validator of class JWTClass for tokens bound to network,
// trusting keys.
func NewJWT(network catalog.NetworkID, keys ...JWTKey) *JWT {
	return &JWT{class: JWTClass, network: network, keys: slices.Clone(keys)}
}

func (v *JWT) clone() *JWT {
	n := *v
	n.keys = slices.Clip(n.keys)
	n.issuers = slices.Clip(n.issuers)
	n.audiences = slices.Clip(n.audiences)
	n.claims = slices.Clip(n.claims)
	return &n
}

// WithClass sets the ticket class (default JWTClass).
func (v *JWT) WithClass(c catalog.TicketClass) *JWT {
	n := v.clone()
	n.class = c
	return n
}

// AcceptUnbound also accepts tokens that carry neither binding claim, as
// mosaik's issuers write them; a token that carries either must still
// match. It weakens the validator: an unbound token signed with a trusted
// key passes in every network and class that trusts the key, so use it
// only while such issuers remain.
func (v *JWT) AcceptUnbound() *JWT {
	n := v.clone()
	n.acceptUnbound = true
	return n
}

// AddKey trusts one more key (key rotation: any key of the token's
// algorithm may verify it).
func (v *JWT) AddKey(k JWTKey) *JWT {
	n := v.clone()
	n.keys = append(n.keys, k)
	return n
}

// AllowIssuer allows tokens whose "iss" is iss. Repeated calls allow any of
// the issuers; without any call the issuer is not checked.
func (v *JWT) AllowIssuer(iss string) *JWT {
	n := v.clone()
	n.issuers = append(n.issuers, iss)
	return n
}

// AllowAudience allows tokens whose "aud" is (or contains) aud. Repeated
// calls allow any of the audiences; without any call the audience is not
// checked.
func (v *JWT) AllowAudience(aud string) *JWT {
	n := v.clone()
	n.audiences = append(n.audiences, aud)
	return n
}

// RequireSubject requires "sub" to be sub instead of the holder's
// Subject: then any holder of a token issued for sub passes.
func (v *JWT) RequireSubject(sub string) *JWT {
	n := v.clone()
	n.subject, n.hasSubject = sub, true
	return n
}

// RequireClaim requires the token to carry claim name with a value equal
// to value once both are encoded as JSON: strings, booleans and null
// exactly, numbers by value (3 equals 3.0), arrays element by element and
// objects key by key. Repeated calls are ANDed; a second call for the same
// name replaces the first. Any claim may be named, registered ones too.
//
// RequireClaim panics if value cannot be encoded as JSON (a programming
// error, caught when the validator is configured).
func (v *JWT) RequireClaim(name string, value any) *JWT {
	norm, err := normalizeJSON(value)
	if err != nil {
		panic(fmt.Sprintf("policy: JWT.RequireClaim(%q): value is not JSON: %v", name, err))
	}
	n := v.clone()
	i, found := slices.BinarySearchFunc(n.claims, name, func(c requiredClaim, name string) int { return strings.Compare(c.name, name) })
	if found {
		n.claims = slices.Clone(n.claims)
		n.claims[i].value = norm
	} else {
		n.claims = slices.Insert(n.claims, i, requiredClaim{name: name, value: norm})
	}
	return n
}

// AllowNonExpiring accepts tokens without "exp"; they validate as Never.
func (v *JWT) AllowNonExpiring() *JWT {
	n := v.clone()
	n.allowNonExpiring = true
	return n
}

// MaxLifetime refuses tokens whose remaining lifetime, exp − now, exceeds
// d. It does not apply to non-expiring tokens. d <= 0 removes the limit.
func (v *JWT) MaxLifetime(d time.Duration) *JWT {
	n := v.clone()
	n.maxLifetime = max(d, 0)
	return n
}

// MaxAge requires "iat" and refuses tokens issued more than d before now.
// d <= 0 removes the requirement.
func (v *JWT) MaxAge(d time.Duration) *JWT {
	n := v.clone()
	n.maxAge = max(d, 0)
	return n
}

// Leeway tolerates clock skew of d on the "nbf", "iat" and "exp"
// comparisons (default 0, as in mosaik). Negative values count as 0.
func (v *JWT) Leeway(d time.Duration) *JWT {
	n := v.clone()
	n.leeway = max(d, 0)
	return n
}

// Class implements TicketValidator.
func (v *JWT) Class() catalog.TicketClass { return v.class }

// algorithms lists the distinct algorithms of the configured keys, never
// nil (so that jwt.WithValidMethods refuses everything when there are no
// keys).
func (v *JWT) algorithms() []string {
	algs := []string{}
	for _, k := range v.keys {
		if k.alg != "" && !slices.Contains(algs, k.alg) {
			algs = append(algs, k.alg)
		}
	}
	return algs
}

// verificationKeys is the jwt.Keyfunc: every configured key of the token's
// algorithm.
func (v *JWT) verificationKeys(t *jwt.Token) (any, error) {
	alg := t.Method.Alg()
	var set jwt.VerificationKeySet
	for _, k := range v.keys {
		if k.alg == alg {
			set.Keys = append(set.Keys, k.key)
		}
	}
	if len(set.Keys) == 0 {
		return nil, fmt.Errorf("no key for %s", alg)
	}
	return set, nil
}

// parseError maps an error of the jwt parser to the policy sentinels.
func (v *JWT) parseError(t *jwt.Token, err error) error {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return fmt.Errorf("%w: %v", ErrTicketMalformed, err)
	case t != nil && t.Method != nil && !slices.Contains(v.algorithms(), t.Method.Alg()):
		return fmt.Errorf("%w: alg %s", ErrTicketAlgorithm, clip(t.Method.Alg()))
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		// No or unknown "alg", or no key for it.
		alg := "?"
		if t != nil {
			if a, ok := t.Header["alg"].(string); ok {
				alg = a
			}
		}
		return fmt.Errorf("%w: alg %s: %v", ErrTicketAlgorithm, clip(alg), err)
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return fmt.Errorf("%w: %v", ErrTicketSignature, err)
	}
	return fmt.Errorf("%w: %v", ErrTicketMalformed, err)
}

// Validate implements TicketValidator; see [JWT] for the checks and their
// order.
func (v *JWT) Validate(data []byte, holder peer.ID, now time.Time) (time.Time, error) {
	if len(data) > MaxJWTSize {
		return time.Time{}, fmt.Errorf("%w: %d bytes > %d", ErrTicketMalformed, len(data), MaxJWTSize)
	}
	if !utf8.Valid(data) {
		return time.Time{}, fmt.Errorf("%w: not UTF-8", ErrTicketMalformed)
	}
	parser := jwt.NewParser(
		jwt.WithValidMethods(v.algorithms()),
		jwt.WithoutClaimsValidation(), // times are checked below, against now
		jwt.WithJSONNumber(),
		jwt.WithStrictDecoding(),
	)
	raw := jwt.MapClaims{}
	tok, err := parser.ParseWithClaims(string(data), raw, v.verificationKeys)
	if err != nil {
		return time.Time{}, v.parseError(tok, err)
	}
	c, err := parseRegisteredClaims(raw)
	if err != nil {
		return time.Time{}, err
	}
	// The checks run in the order documented on JWT, which callers and
	// tests rely on to know which refusal a token with several faults gets.
	if err := v.checkBinding(raw); err != nil {
		return time.Time{}, err
	}
	// mosaik compares whole unix seconds. The validity window (nbf, iat,
	// exp) is checked against now itself, which for whole-second claims
	// gives the same answers (c > now exactly when c > now cut to its
	// second), while a claim with a fraction (a NumericDate may have one)
	// is judged by the instant it names: exp 1000.1 at 1000.9 is expired,
	// not valid with an expiry already past. Ages and lifetimes count from
	// the whole second.
	nowS := time.Unix(now.Unix(), 0)
	if len(v.issuers) > 0 && (c.iss == nil || !slices.Contains(v.issuers, *c.iss)) {
		return time.Time{}, fmt.Errorf("%w: %s", ErrTicketIssuerName, quoteOpt(c.iss))
	}
	want := v.subject
	if !v.hasSubject {
		if want, err = Subject(holder); err != nil {
			return time.Time{}, fmt.Errorf("%w: %v", ErrWrongSubject, err)
		}
	}
	if c.sub == nil || *c.sub != want {
		return time.Time{}, fmt.Errorf("%w: sub %s, want %q", ErrWrongSubject, quoteOpt(c.sub), want)
	}
	if c.nbf != nil && c.nbf.After(now.Add(v.leeway)) {
		return time.Time{}, fmt.Errorf("%w: from %v", ErrTicketNotYet, c.nbf.UTC())
	}
	if c.iat != nil && c.iat.After(now.Add(v.leeway+iatGrace)) {
		return time.Time{}, fmt.Errorf("%w: issued at %v, in the future beyond the allowed clock drift of %v", ErrTicketNotYet, c.iat.UTC(), v.leeway+iatGrace)
	}
	switch {
	case c.exp == nil && !v.allowNonExpiring:
		return time.Time{}, ErrTicketNoExpiry
	case c.exp != nil && !c.exp.After(now.Add(-v.leeway)):
		return time.Time{}, fmt.Errorf("%w at %v", ErrTicketExpired, c.exp.UTC())
	}
	if v.maxLifetime > 0 && c.exp != nil && c.exp.Sub(nowS) > v.maxLifetime {
		return time.Time{}, fmt.Errorf("%w: expires %v after now, the maximum is %v", ErrTicketTooLong, c.exp.Sub(nowS), v.maxLifetime)
	}
	if v.maxAge > 0 {
		if c.iat == nil {
			return time.Time{}, fmt.Errorf("%w: no iat", ErrTicketTooOld)
		}
		if age := nowS.Sub(*c.iat); age > v.maxAge {
			return time.Time{}, fmt.Errorf("%w: issued %v ago, the maximum is %v", ErrTicketTooOld, age, v.maxAge)
		}
	}
	if len(v.audiences) > 0 && !slices.ContainsFunc(c.aud, func(a string) bool { return slices.Contains(v.audiences, a) }) {
		return time.Time{}, fmt.Errorf("%w: %s", ErrTicketAudience, clipAll(c.aud))
	}
	for _, rc := range v.claims {
		got, ok := raw[rc.name]
		if !ok {
			return time.Time{}, fmt.Errorf("%w: %s missing", ErrTicketClaim, rc.name)
		}
		if !jsonEqual(got, rc.value) {
			return time.Time{}, fmt.Errorf("%w: %s differs", ErrTicketClaim, rc.name)
		}
	}
	ends := Never
	if c.exp != nil {
		ends = c.exp.Add(v.leeway)
	}
	if v.maxAge > 0 {
		// Refused from the first whole second s with s − iat > MaxAge.
		if old := c.iat.Add(v.maxAge).Truncate(time.Second).Add(time.Second); ends.IsZero() || old.Before(ends) {
			ends = old
		}
	}
	return ends, nil
}

// iatGrace is how far "iat" may be ahead of now beyond the leeway: a
// builder writes the whole second it was issued in, so a verifier whose
// clock is a little behind the issuer's sees a fresh token issued up to a
// second "ahead" (with the default leeway of 0, one in twenty tokens at a
// skew of 50 ms was refused).
const iatGrace = time.Second

// checkBinding is step 1 of Validate: the token names this validator's
// network and class.
func (v *JWT) checkBinding(raw jwt.MapClaims) error {
	nw, hasNW, err := idClaim(raw, JWTNetworkClaim)
	if err != nil {
		return err
	}
	cl, hasCl, err := idClaim(raw, JWTClassClaim)
	if err != nil {
		return err
	}
	if !hasNW && !hasCl && v.acceptUnbound {
		return nil
	}
	switch {
	case !hasNW:
		return fmt.Errorf("%w: the token has no %s claim, it is not bound to a network", ErrWrongNetwork, JWTNetworkClaim)
	case nw != v.network:
		return fmt.Errorf("%w: %s is %s, want %s", ErrWrongNetwork, JWTNetworkClaim, nw.Short(), v.network.Short())
	case !hasCl:
		return fmt.Errorf("%w: the token has no %s claim, it is not bound to a class", ErrWrongClass, JWTClassClaim)
	case cl != v.class:
		return fmt.Errorf("%w: %s is %s, want %s", ErrWrongClass, JWTClassClaim, cl.Short(), v.class.Short())
	}
	return nil
}

// idClaim reads a binding claim: a string turned into an ID by the
// catalog's rule.
func idClaim(raw jwt.MapClaims, name string) (catalog.ID, bool, error) {
	x, ok := raw[name]
	if !ok {
		return catalog.ID{}, false, nil
	}
	s, ok := x.(string)
	if !ok || s == "" {
		return catalog.ID{}, false, fmt.Errorf("%w: %s is not a non-empty string", ErrTicketMalformed, name)
	}
	return catalog.IDFromString(s), true, nil
}

func quoteOpt(s *string) string {
	if s == nil {
		return "missing"
	}
	return clip(*s)
}

// maxQuoted caps what an error quotes of a value from the token: errors
// are logged and cached (a verdict cache, log-once keys), and a ticket is
// up to 8 KiB of its sender's choosing.
const maxQuoted = 64

// clip quotes s, cut to maxQuoted bytes (the length said after it).
func clip(s string) string {
	if len(s) <= maxQuoted {
		return strconv.Quote(s)
	}
	return fmt.Sprintf("%s… (%d bytes)", strconv.Quote(strings.ToValidUTF8(s[:maxQuoted], "")), len(s))
}

// clipAll quotes the first few of ss with clip.
func clipAll(ss []string) string {
	const most = 4
	q := make([]string, 0, min(len(ss), most))
	for _, s := range ss[:min(len(ss), most)] {
		q = append(q, clip(s))
	}
	if len(ss) > most {
		q = append(q, fmt.Sprintf("… (%d in all)", len(ss)))
	}
	return "[" + strings.Join(q, " ") + "]"
}
