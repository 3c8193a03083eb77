package policy

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/big"
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

// JWT algorithm names, as written in the token header's "alg".
const (
	algHS256 = "HS256"
	algHS384 = "HS384"
	algHS512 = "HS512"
	algES256 = "ES256"
	algES384 = "ES384"
	algEdDSA = "EdDSA"
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

// JWTKey verifies JWT tickets of one algorithm. Make one with HS256Key,
// HS384Key, HS512Key, ES256Key, ES256KeyFromCompressed, ES384Key,
// ES384KeyFromCompressed or EdDSAKey, or from a signing key with
// [JWTSigningKey.VerifyingKey]. The zero JWTKey verifies nothing.
//
// A JWTKey is an immutable value, safe to copy and to share between
// goroutines.
type JWTKey struct {
	alg string
	key any // []byte (HMAC secret), *ecdsa.PublicKey or ed25519.PublicKey
}

// Algorithm is the key's JWT algorithm name ("HS256", "ES256", "EdDSA", …).
func (k JWTKey) Algorithm() string { return k.alg }

func hmacKey(alg string, size int, secret []byte) (JWTKey, error) {
	if len(secret) != size {
		return JWTKey{}, fmt.Errorf("policy: an %s secret is %d bytes, got %d", alg, size, len(secret))
	}
	return JWTKey{alg: alg, key: bytes.Clone(secret)}, nil
}

// HS256Key returns an HMAC-SHA256 key. As in mosaik, the secret must be
// exactly 32 bytes. The secret is copied.
func HS256Key(secret []byte) (JWTKey, error) { return hmacKey(algHS256, 32, secret) }

// HS384Key returns an HMAC-SHA384 key; the secret must be exactly 48 bytes.
func HS384Key(secret []byte) (JWTKey, error) { return hmacKey(algHS384, 48, secret) }

// HS512Key returns an HMAC-SHA512 key; the secret must be exactly 64 bytes.
func HS512Key(secret []byte) (JWTKey, error) { return hmacKey(algHS512, 64, secret) }

// curveBytes is the size of a coordinate of curve c.
func curveBytes(c elliptic.Curve) int { return (c.Params().BitSize + 7) / 8 }

// ecdsaPublic checks that pub is a valid point of curve c and returns an
// independent copy of it.
func ecdsaPublic(alg string, c elliptic.Curve, pub *ecdsa.PublicKey) (*ecdsa.PublicKey, error) {
	if pub == nil || pub.Curve != c {
		return nil, fmt.Errorf("policy: an %s key must be on %s", alg, c.Params().Name)
	}
	raw, err := pub.Bytes()
	if err != nil {
		return nil, fmt.Errorf("policy: %s key: %w", alg, err)
	}
	cp, err := ecdsa.ParseUncompressedPublicKey(c, raw)
	if err != nil {
		return nil, fmt.Errorf("policy: %s key: %w", alg, err)
	}
	return cp, nil
}

// ecdsaCompressed decodes a SEC1 compressed point of curve c.
func ecdsaCompressed(alg string, c elliptic.Curve, b []byte) (*ecdsa.PublicKey, error) {
	n := curveBytes(c)
	if len(b) != 1+n {
		return nil, fmt.Errorf("policy: a compressed %s key is %d bytes, got %d", alg, 1+n, len(b))
	}
	x, y := elliptic.UnmarshalCompressed(c, b)
	if x == nil {
		return nil, fmt.Errorf("policy: %s key is not a compressed point of %s", alg, c.Params().Name)
	}
	raw := make([]byte, 1+2*n)
	raw[0] = 4
	x.FillBytes(raw[1 : 1+n])
	y.FillBytes(raw[1+n:])
	pub, err := ecdsa.ParseUncompressedPublicKey(c, raw)
	if err != nil {
		return nil, fmt.Errorf("policy: %s key: %w", alg, err)
	}
	return pub, nil
}

// ES256Key returns an ECDSA P-256 / SHA-256 verifying key.
func ES256Key(pub *ecdsa.PublicKey) (JWTKey, error) {
	k, err := ecdsaPublic(algES256, elliptic.P256(), pub)
	if err != nil {
		return JWTKey{}, err
	}
	return JWTKey{alg: algES256, key: k}, nil
}

// ES256KeyFromCompressed returns an ES256 verifying key from a 33-byte SEC1
// compressed P-256 point, the form mosaik's Es256 keys take.
func ES256KeyFromCompressed(b []byte) (JWTKey, error) {
	k, err := ecdsaCompressed(algES256, elliptic.P256(), b)
	if err != nil {
		return JWTKey{}, err
	}
	return JWTKey{alg: algES256, key: k}, nil
}

// ES384Key returns an ECDSA P-384 / SHA-384 verifying key.
func ES384Key(pub *ecdsa.PublicKey) (JWTKey, error) {
	k, err := ecdsaPublic(algES384, elliptic.P384(), pub)
	if err != nil {
		return JWTKey{}, err
	}
	return JWTKey{alg: algES384, key: k}, nil
}

// ES384KeyFromCompressed returns an ES384 verifying key from a 49-byte SEC1
// compressed P-384 point.
func ES384KeyFromCompressed(b []byte) (JWTKey, error) {
	k, err := ecdsaCompressed(algES384, elliptic.P384(), b)
	if err != nil {
		return JWTKey{}, err
	}
	return JWTKey{alg: algES384, key: k}, nil
}

// EdDSAKey returns an Ed25519 verifying key ("EdDSA"). The key is copied.
func EdDSAKey(pub ed25519.PublicKey) (JWTKey, error) {
	if len(pub) != ed25519.PublicKeySize {
		return JWTKey{}, fmt.Errorf("policy: an EdDSA key is %d bytes, got %d", ed25519.PublicKeySize, len(pub))
	}
	return JWTKey{alg: algEdDSA, key: ed25519.PublicKey(bytes.Clone(pub))}, nil
}

// JWTSigningKey signs JWT tickets (see [JWTBuilder]). Make one with
// HS256SigningKey, HS384SigningKey, HS512SigningKey, ES256SigningKey,
// ES384SigningKey or EdDSASigningKey.
//
// A JWTSigningKey is an immutable value, safe to copy and to share between
// goroutines. It holds secret material: do not log it.
type JWTSigningKey struct {
	method jwt.SigningMethod
	key    any // []byte, *ecdsa.PrivateKey or ed25519.PrivateKey
	verify JWTKey
}

// Algorithm is the key's JWT algorithm name.
func (k JWTSigningKey) Algorithm() string { return k.verify.alg }

// VerifyingKey returns the key that verifies this key's signatures: the
// public key, or the same secret for HMAC.
func (k JWTSigningKey) VerifyingKey() JWTKey { return k.verify }

func hmacSigningKey(m jwt.SigningMethod, size int, secret []byte) (JWTSigningKey, error) {
	vk, err := hmacKey(m.Alg(), size, secret)
	if err != nil {
		return JWTSigningKey{}, err
	}
	return JWTSigningKey{method: m, key: vk.key, verify: vk}, nil
}

// HS256SigningKey returns an HMAC-SHA256 signing key from a 32-byte secret.
func HS256SigningKey(secret []byte) (JWTSigningKey, error) {
	return hmacSigningKey(jwt.SigningMethodHS256, 32, secret)
}

// HS384SigningKey returns an HMAC-SHA384 signing key from a 48-byte secret.
func HS384SigningKey(secret []byte) (JWTSigningKey, error) {
	return hmacSigningKey(jwt.SigningMethodHS384, 48, secret)
}

// HS512SigningKey returns an HMAC-SHA512 signing key from a 64-byte secret.
func HS512SigningKey(secret []byte) (JWTSigningKey, error) {
	return hmacSigningKey(jwt.SigningMethodHS512, 64, secret)
}

func ecdsaSigningKey(m jwt.SigningMethod, c elliptic.Curve, priv *ecdsa.PrivateKey) (JWTSigningKey, error) {
	if priv == nil {
		return JWTSigningKey{}, fmt.Errorf("policy: no %s private key", m.Alg())
	}
	pub, err := ecdsaPublic(m.Alg(), c, &priv.PublicKey)
	if err != nil {
		return JWTSigningKey{}, err
	}
	raw, err := priv.Bytes()
	if err != nil {
		return JWTSigningKey{}, fmt.Errorf("policy: %s private key: %w", m.Alg(), err)
	}
	cp, err := ecdsa.ParseRawPrivateKey(c, raw)
	if err != nil {
		return JWTSigningKey{}, fmt.Errorf("policy: %s private key: %w", m.Alg(), err)
	}
	return JWTSigningKey{method: m, key: cp, verify: JWTKey{alg: m.Alg(), key: pub}}, nil
}

// ES256SigningKey returns an ECDSA P-256 / SHA-256 signing key. For a raw
// 32-byte scalar, parse it first with ecdsa.ParseRawPrivateKey.
func ES256SigningKey(priv *ecdsa.PrivateKey) (JWTSigningKey, error) {
	return ecdsaSigningKey(jwt.SigningMethodES256, elliptic.P256(), priv)
}

// ES384SigningKey returns an ECDSA P-384 / SHA-384 signing key.
func ES384SigningKey(priv *ecdsa.PrivateKey) (JWTSigningKey, error) {
	return ecdsaSigningKey(jwt.SigningMethodES384, elliptic.P384(), priv)
}

// EdDSASigningKey returns an Ed25519 signing key ("EdDSA"). The key is
// copied; it must be a well-formed 64-byte private key (seed ‖ public key).
func EdDSASigningKey(priv ed25519.PrivateKey) (JWTSigningKey, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return JWTSigningKey{}, fmt.Errorf("policy: an EdDSA private key is %d bytes, got %d", ed25519.PrivateKeySize, len(priv))
	}
	cp := ed25519.NewKeyFromSeed(priv.Seed())
	if !cp.Equal(priv) {
		return JWTSigningKey{}, errors.New("policy: EdDSA private key: public half does not match the seed")
	}
	pub := cp.Public().(ed25519.PublicKey)
	return JWTSigningKey{method: jwt.SigningMethodEdDSA, key: cp, verify: JWTKey{alg: algEdDSA, key: pub}}, nil
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
// HMAC (HS256/HS384/HS512), ECDSA (ES256, ES384) and Ed25519 (EdDSA). Any
// configured key whose algorithm matches the token header's "alg" may
// verify it, so several keys allow rotation; an "alg" none of the keys has,
// "none" included, is refused with ErrTicketAlgorithm.
//
// After the signature, Validate checks, in this order and at whole seconds
// of the injected now:
//
//  1. issuer: with AllowIssuer, "iss" must be one of the allowed
//     (ErrTicketIssuerName);
//  2. subject: "sub" must equal RequireSubject's value, by default
//     Subject(holder), the lowercase hex of the holder's 32-byte Ed25519
//     public key, as in mosaik (ErrWrongSubject);
//  3. "nbf" after now + leeway rejects (ErrTicketNotYet);
//  4. "exp" missing rejects unless AllowNonExpiring (ErrTicketNoExpiry);
//     exp <= now − leeway rejects (ErrTicketExpired);
//  5. with MaxLifetime, exp − now above it rejects (ErrTicketTooLong);
//  6. with MaxAge, "iat" is required and now − iat above it rejects
//     (ErrTicketTooOld);
//  7. audience: with AllowAudience, "aud" (a string, or an array of
//     strings) must be, or contain, one of the allowed (ErrTicketAudience);
//  8. every RequireClaim claim must be present and equal (ErrTicketClaim).
//
// Tokens larger than MaxJWTSize, not UTF-8 or not well-formed fail with
// ErrTicketMalformed; bad signatures with ErrTicketSignature. Validate
// returns exp + leeway (the instant it would start refusing the token), or
// Never for a token without "exp".
//
// Unlike mosaik (which has no leeway), Leeway tolerates clock skew; it is 0
// by default, so the defaults behave exactly as mosaik.
type JWT struct {
	class            catalog.TicketClass
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

// NewJWT returns a validator of class JWTClass trusting keys.
func NewJWT(keys ...JWTKey) *JWT {
	return &JWT{class: JWTClass, keys: slices.Clone(keys)}
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

// Leeway tolerates clock skew of d on the "nbf" and "exp" comparisons only
// (default 0, as in mosaik). Negative values count as 0.
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
		return fmt.Errorf("%w: alg %q", ErrTicketAlgorithm, t.Method.Alg())
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		// No or unknown "alg", or no key for it.
		alg := "?"
		if t != nil {
			if a, ok := t.Header["alg"].(string); ok {
				alg = a
			}
		}
		return fmt.Errorf("%w: alg %q: %v", ErrTicketAlgorithm, alg, err)
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

	nowS := time.Unix(now.Unix(), 0) // mosaik compares whole unix seconds
	// 1. issuer
	if len(v.issuers) > 0 && (c.iss == nil || !slices.Contains(v.issuers, *c.iss)) {
		return time.Time{}, fmt.Errorf("%w: %s", ErrTicketIssuerName, quoteOpt(c.iss))
	}
	// 2. subject
	want := v.subject
	if !v.hasSubject {
		if want, err = Subject(holder); err != nil {
			return time.Time{}, fmt.Errorf("%w: %v", ErrWrongSubject, err)
		}
	}
	if c.sub == nil || *c.sub != want {
		return time.Time{}, fmt.Errorf("%w: sub %s, want %q", ErrWrongSubject, quoteOpt(c.sub), want)
	}
	// 3. not before
	if c.nbf != nil && c.nbf.After(nowS.Add(v.leeway)) {
		return time.Time{}, fmt.Errorf("%w: from %v", ErrTicketNotYet, c.nbf.UTC())
	}
	// 4. expiry
	switch {
	case c.exp == nil && !v.allowNonExpiring:
		return time.Time{}, ErrTicketNoExpiry
	case c.exp != nil && !c.exp.After(nowS.Add(-v.leeway)):
		return time.Time{}, fmt.Errorf("%w at %v", ErrTicketExpired, c.exp.UTC())
	}
	// 5. lifetime
	if v.maxLifetime > 0 && c.exp != nil && c.exp.Sub(nowS) > v.maxLifetime {
		return time.Time{}, fmt.Errorf("%w: expires %v after now, the maximum is %v", ErrTicketTooLong, c.exp.Sub(nowS), v.maxLifetime)
	}
	// 6. age
	if v.maxAge > 0 {
		if c.iat == nil {
			return time.Time{}, fmt.Errorf("%w: no iat", ErrTicketTooOld)
		}
		if age := nowS.Sub(*c.iat); age > v.maxAge {
			return time.Time{}, fmt.Errorf("%w: issued %v ago, the maximum is %v", ErrTicketTooOld, age, v.maxAge)
		}
	}
	// 7. audience
	if len(v.audiences) > 0 && !slices.ContainsFunc(c.aud, func(a string) bool { return slices.Contains(v.audiences, a) }) {
		return time.Time{}, fmt.Errorf("%w: %q", ErrTicketAudience, c.aud)
	}
	// 8. required claims
	for _, rc := range v.claims {
		got, ok := raw[rc.name]
		if !ok {
			return time.Time{}, fmt.Errorf("%w: %s missing", ErrTicketClaim, rc.name)
		}
		if !jsonEqual(got, rc.value) {
			return time.Time{}, fmt.Errorf("%w: %s differs", ErrTicketClaim, rc.name)
		}
	}
	if c.exp == nil {
		return Never, nil
	}
	return c.exp.Add(v.leeway), nil
}

func quoteOpt(s *string) string {
	if s == nil {
		return "missing"
	}
	return strconv.Quote(*s)
}

// registeredClaims are the registered claims Validate judges; nil means
// absent.
type registeredClaims struct {
	iss, sub      *string
	aud           []string
	exp, nbf, iat *time.Time
}

func parseRegisteredClaims(m jwt.MapClaims) (registeredClaims, error) {
	var c registeredClaims
	var err error
	str := func(name string) (*string, error) {
		v, ok := m[name]
		if !ok {
			return nil, nil
		}
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("%w: %s is not a string", ErrTicketMalformed, name)
		}
		return &s, nil
	}
	date := func(name string) (*time.Time, error) {
		v, ok := m[name]
		if !ok {
			return nil, nil
		}
		t, ok := numericDate(v)
		if !ok {
			return nil, fmt.Errorf("%w: %s is not a date", ErrTicketMalformed, name)
		}
		return &t, nil
	}
	if c.iss, err = str("iss"); err != nil {
		return c, err
	}
	if c.sub, err = str("sub"); err != nil {
		return c, err
	}
	if c.exp, err = date("exp"); err != nil {
		return c, err
	}
	if c.nbf, err = date("nbf"); err != nil {
		return c, err
	}
	if c.iat, err = date("iat"); err != nil {
		return c, err
	}
	switch a := m["aud"].(type) {
	case nil:
		if _, ok := m["aud"]; ok {
			return c, fmt.Errorf("%w: aud is null", ErrTicketMalformed)
		}
	case string:
		c.aud = []string{a}
	case []any:
		for _, e := range a {
			s, ok := e.(string)
			if !ok {
				return c, fmt.Errorf("%w: aud holds a non-string", ErrTicketMalformed)
			}
			c.aud = append(c.aud, s)
		}
	default:
		return c, fmt.Errorf("%w: aud is neither a string nor an array", ErrTicketMalformed)
	}
	return c, nil
}

// numericDate decodes a JWT NumericDate (unix seconds, possibly
// fractional) decoded as a json.Number.
func numericDate(v any) (time.Time, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return time.Time{}, false
	}
	if i, err := n.Int64(); err == nil {
		if i < -maxNumericDate || i > maxNumericDate {
			return time.Time{}, false
		}
		return time.Unix(i, 0), true
	}
	f, err := n.Float64()
	if err != nil || math.IsNaN(f) || f < -maxNumericDate || f > maxNumericDate {
		return time.Time{}, false
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), true
}

// normalizeJSON returns v as encoding/json would decode its encoding, with
// numbers as json.Number.
func normalizeJSON(v any) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var out any
	if err := d.Decode(&out); err != nil {
		return nil, err
	}
	return out, nil
}

// jsonEqual compares two decoded JSON values (numbers as json.Number).
func jsonEqual(a, b any) bool {
	switch x := a.(type) {
	case nil:
		return b == nil
	case bool:
		y, ok := b.(bool)
		return ok && x == y
	case string:
		y, ok := b.(string)
		return ok && x == y
	case json.Number:
		y, ok := b.(json.Number)
		return ok && numberEqual(x, y)
	case []any:
		y, ok := b.([]any)
		return ok && slices.EqualFunc(x, y, jsonEqual)
	case map[string]any:
		y, ok := b.(map[string]any)
		return ok && maps.EqualFunc(x, y, jsonEqual)
	}
	return false
}

// numberEqual compares JSON numbers by value: integers exactly, others as
// float64.
func numberEqual(a, b json.Number) bool {
	if a == b {
		return true
	}
	var x, y big.Int
	if _, ok := x.SetString(string(a), 10); ok {
		if _, ok := y.SetString(string(b), 10); ok {
			return x.Cmp(&y) == 0
		}
	}
	fa, errA := a.Float64()
	fb, errB := b.Float64()
	return errA == nil && errB == nil && fa == fb
}

// JWTBuilder issues JWT tickets, the counterpart of mosaik's
// JwtTicketBuilder. Each method returns a changed copy, so a builder can be
// shared as a template; it is safe for concurrent use.
//
// The header is {"alg":"<ALG>","typ":"JWT"}. By default a token has only
// "sub" (Subject of the holder) and no "exp": set an expiry with ExpiresAt
// or ExpiresIn, since validators refuse non-expiring tokens by default.
// Times are written as whole unix seconds (fractions are dropped).
type JWTBuilder struct {
	key       JWTSigningKey
	class     catalog.TicketClass
	iss, sub  string
	jti       string
	aud       []string
	exp, nbf  time.Time
	iat       time.Time
	claims    map[string]any
	setIssued bool
}

// NewJWTBuilder returns a builder of tickets of class JWTClass signed with
// key.
func NewJWTBuilder(key JWTSigningKey) *JWTBuilder {
	return &JWTBuilder{key: key, class: JWTClass}
}

func (b *JWTBuilder) clone() *JWTBuilder {
	n := *b
	n.aud = slices.Clip(n.aud)
	n.claims = maps.Clone(n.claims)
	return &n
}

// WithClass sets the class of the tickets built (default JWTClass).
func (b *JWTBuilder) WithClass(c catalog.TicketClass) *JWTBuilder {
	n := b.clone()
	n.class = c
	return n
}

// Issuer sets "iss" (empty: none).
func (b *JWTBuilder) Issuer(iss string) *JWTBuilder {
	n := b.clone()
	n.iss = iss
	return n
}

// Subject sets "sub" (empty: the default, Subject of the holder).
func (b *JWTBuilder) Subject(sub string) *JWTBuilder {
	n := b.clone()
	n.sub = sub
	return n
}

// Audience adds an audience: one makes "aud" a string, several an array.
func (b *JWTBuilder) Audience(aud string) *JWTBuilder {
	n := b.clone()
	n.aud = append(n.aud, aud)
	return n
}

// ExpiresAt sets "exp" (the zero time: none, a non-expiring token).
func (b *JWTBuilder) ExpiresAt(t time.Time) *JWTBuilder {
	n := b.clone()
	n.exp = t
	return n
}

// ExpiresIn sets "exp" to now + d and, unless IssuedAt was called, "iat" to
// now.
func (b *JWTBuilder) ExpiresIn(d time.Duration, now time.Time) *JWTBuilder {
	n := b.clone()
	n.exp = now.Add(d)
	if !n.setIssued {
		n.iat = now
	}
	return n
}

// IssuedAt sets "iat" (the zero time: none).
func (b *JWTBuilder) IssuedAt(t time.Time) *JWTBuilder {
	n := b.clone()
	n.iat, n.setIssued = t, true
	return n
}

// NotBefore sets "nbf" (the zero time: none).
func (b *JWTBuilder) NotBefore(t time.Time) *JWTBuilder {
	n := b.clone()
	n.nbf = t
	return n
}

// ID sets "jti" (empty: none).
func (b *JWTBuilder) ID(jti string) *JWTBuilder {
	n := b.clone()
	n.jti = jti
	return n
}

// Claim sets a claim to any JSON-encodable value. A registered claim set
// with its own method (Issuer, Subject, Audience, ExpiresAt, …) overrides a
// Claim of the same name.
func (b *JWTBuilder) Claim(name string, value any) *JWTBuilder {
	n := b.clone()
	if n.claims == nil {
		n.claims = map[string]any{}
	}
	n.claims[name] = value
	return n
}

// Build signs a ticket for holder.
func (b *JWTBuilder) Build(holder peer.ID) (catalog.Ticket, error) {
	if b.key.method == nil {
		return catalog.Ticket{}, errors.New("policy: JWT builder has no signing key")
	}
	m := jwt.MapClaims(maps.Clone(b.claims))
	if m == nil {
		m = jwt.MapClaims{}
	}
	if b.iss != "" {
		m["iss"] = b.iss
	}
	if b.sub != "" {
		m["sub"] = b.sub
	} else if _, ok := m["sub"]; !ok {
		sub, err := Subject(holder)
		if err != nil {
			return catalog.Ticket{}, err
		}
		m["sub"] = sub
	}
	switch len(b.aud) {
	case 0:
	case 1:
		m["aud"] = b.aud[0]
	default:
		m["aud"] = slices.Clone(b.aud)
	}
	for name, t := range map[string]time.Time{"exp": b.exp, "nbf": b.nbf, "iat": b.iat} {
		if !t.IsZero() {
			m[name] = t.Unix()
		}
	}
	if b.jti != "" {
		m["jti"] = b.jti
	}
	s, err := jwt.NewWithClaims(b.key.method, m).SignedString(b.key.key)
	if err != nil {
		return catalog.Ticket{}, fmt.Errorf("policy: sign JWT: %w", err)
	}
	if len(s) > MaxJWTSize {
		return catalog.Ticket{}, fmt.Errorf("policy: JWT is %d bytes, the limit is %d", len(s), MaxJWTSize)
	}
	return catalog.Ticket{Class: b.class, Data: []byte(s)}, nil
}
