package policy

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	cryptopb "github.com/libp2p/go-libp2p/core/crypto/pb"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/record"
	"google.golang.org/protobuf/proto"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/policy/pb"
)

// Wire constants of libp2p-signed tickets (see PROTOCOL.md).
const (
	SignedTicketDomain = "mosaik-ticket"
	// MaxSignedTicketSize caps a sealed ticket; larger ones are refused
	// before decoding.
	MaxSignedTicketSize = 4 << 10
)

// SignedTicketPayloadType is the envelope payload type of signed tickets.
var SignedTicketPayloadType = []byte("/mosaik/ticket/1")

// SignedTicketClass is the default class of libp2p-signed tickets.
var SignedTicketClass = catalog.IDFromString("mosaik.tickets.libp2p.v1")

// SignedTicket is the content of a libp2p-signed ticket.
type SignedTicket struct {
	Issuer    peer.ID // filled in by OpenSignedTicket
	Subject   peer.ID // the holder
	Network   catalog.NetworkID
	Class     catalog.TicketClass
	NotBefore time.Time // zero: valid from issue
	Expires   time.Time // zero: never expires
	Claims    map[string]string
}

type ticketRecord struct{ m *pb.SignedTicket }

func (*ticketRecord) Domain() string { return SignedTicketDomain }
func (*ticketRecord) Codec() []byte  { return SignedTicketPayloadType }
func (r *ticketRecord) MarshalRecord() ([]byte, error) {
	return proto.MarshalOptions{Deterministic: true}.Marshal(r.m)
}
func (r *ticketRecord) UnmarshalRecord(b []byte) error {
	r.m = new(pb.SignedTicket)
	return proto.Unmarshal(b, r.m)
}

func unixMS(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMS(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

// IssueSignedTicket seals t with the issuer's libp2p key and returns it as
// a catalog ticket of t.Class (SignedTicketClass when unset), ready for
// node.AddTicket on the holder.
func IssueSignedTicket(issuer crypto.PrivKey, t SignedTicket) (catalog.Ticket, error) {
	if t.Subject == "" {
		return catalog.Ticket{}, errors.New("policy: a signed ticket needs a subject")
	}
	if t.Class.IsZero() {
		t.Class = SignedTicketClass
	}
	// On the wire 0 ms means unset: a time that rounds to the epoch would
	// silently become "valid from issue" or "never expires".
	if !t.NotBefore.IsZero() && t.NotBefore.UnixMilli() == 0 {
		return catalog.Ticket{}, errors.New("policy: a signed ticket's not-before cannot be the unix epoch")
	}
	if !t.Expires.IsZero() && t.Expires.UnixMilli() == 0 {
		return catalog.Ticket{}, errors.New("policy: a signed ticket's expiry cannot be the unix epoch")
	}
	m := &pb.SignedTicket{
		Subject: []byte(t.Subject), Network: t.Network[:], Class: t.Class[:],
		NotBeforeMs: unixMS(t.NotBefore), ExpiresMs: unixMS(t.Expires), Claims: t.Claims,
	}
	env, err := record.Seal(&ticketRecord{m: m}, issuer)
	if err != nil {
		return catalog.Ticket{}, fmt.Errorf("policy: seal ticket: %w", err)
	}
	data, err := env.Marshal()
	if err != nil {
		return catalog.Ticket{}, fmt.Errorf("policy: seal ticket: %w", err)
	}
	if len(data) > MaxSignedTicketSize {
		return catalog.Ticket{}, fmt.Errorf("policy: sealed ticket is %d bytes, the limit is %d", len(data), MaxSignedTicketSize)
	}
	return catalog.Ticket{Class: t.Class, Data: data}, nil
}

// OpenSignedTicket verifies a sealed ticket's signature and decodes it. It
// does not judge the issuer, subject, network or times: the validator does.
func OpenSignedTicket(data []byte) (*SignedTicket, error) {
	return openSignedTicket(data, nil)
}

// openSignedTicket is OpenSignedTicket with an issuer check that runs after
// the envelope is parsed but before its signature is verified, so that a
// ticket from an untrusted issuer costs a parse, never a verification.
func openSignedTicket(data []byte, trusted func(peer.ID) bool) (*SignedTicket, error) {
	if len(data) > MaxSignedTicketSize {
		return nil, fmt.Errorf("%w: %d bytes > %d", ErrTicketMalformed, len(data), MaxSignedTicketSize)
	}
	env, err := record.UnmarshalEnvelope(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrTicketMalformed, err)
	}
	if t := env.PublicKey.Type(); t != cryptopb.KeyType_Ed25519 && t != cryptopb.KeyType_Secp256k1 && t != cryptopb.KeyType_ECDSA {
		return nil, fmt.Errorf("%w: issuer key type %v not accepted", ErrTicketSignature, t)
	}
	if !bytes.Equal(env.PayloadType, SignedTicketPayloadType) {
		return nil, fmt.Errorf("%w: payload type %s", ErrTicketMalformed, clip(string(env.PayloadType)))
	}
	issuer, err := peer.IDFromPublicKey(env.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("%w: issuer: %v", ErrTicketMalformed, err)
	}
	if trusted != nil && !trusted(issuer) {
		return nil, fmt.Errorf("%w: %s", ErrUntrustedIssuer, issuer)
	}
	var rec ticketRecord
	if _, err := record.ConsumeTypedEnvelope(data, &rec); err != nil {
		if rec.m == nil {
			return nil, fmt.Errorf("%w: %v", ErrTicketSignature, err)
		}
		return nil, fmt.Errorf("%w: %v", ErrTicketMalformed, err)
	}
	subject, err := peer.IDFromBytes(rec.m.GetSubject())
	if err != nil {
		return nil, fmt.Errorf("%w: subject: %v", ErrTicketMalformed, err)
	}
	nw, err := catalog.IDFromBytes(rec.m.GetNetwork())
	if err != nil {
		return nil, fmt.Errorf("%w: network: %v", ErrTicketMalformed, err)
	}
	class, err := catalog.IDFromBytes(rec.m.GetClass())
	if err != nil {
		return nil, fmt.Errorf("%w: class: %v", ErrTicketMalformed, err)
	}
	return &SignedTicket{
		Issuer: issuer, Subject: subject, Network: nw, Class: class,
		NotBefore: fromMS(rec.m.GetNotBeforeMs()), Expires: fromMS(rec.m.GetExpiresMs()), Claims: rec.m.GetClaims(),
	}, nil
}

// DefaultSignedTicketCacheSize is how many verdicts a SignedTicketValidator
// keeps by default. A verdict is under a hundred bytes, so the default
// costs well under a megabyte, and it covers a catalog of a thousand peers
// each carrying a ticket of the class.
const DefaultSignedTicketCacheSize = 1024

// SignedTicketValidator accepts libp2p-signed tickets of its class, for
// its network, issued to the holder by one of its trusted issuers.
//
// Configure it with NewSignedTicketValidator and the builder methods; each
// returns a changed copy with its own verdict cache, so a validator is
// immutable once built and safe for concurrent use.
//
// Streams validate a peer's tickets on connect and on every catalog change,
// mostly with the same ticket bytes, so the validator remembers, per holder
// and ticket (its SHA-256), what does not depend on the time: the outcome
// of the signature, issuer, class, network, subject and claim checks, and
// the ticket's validity window. The window is judged against now on every
// call, so a cached ticket still expires on time; a changed ticket (a new
// entry version carrying other bytes) misses the cache. Keying by the
// ticket's bytes rather than by the entry's version means an entry that
// re-signs the same ticket costs nothing, and a peer that signs two
// different entries under one version cannot reuse a verdict.
type SignedTicketValidator struct {
	class            catalog.TicketClass
	network          catalog.NetworkID
	issuers          []peer.ID
	allowNonExpiring bool
	leeway           time.Duration
	claims           map[string]string
	cacheSize        int
	cache            *verdictCache // nil when cacheSize is 0
}

// NewSignedTicketValidator trusts the given issuers for tickets of network.
func NewSignedTicketValidator(network catalog.NetworkID, issuers ...peer.ID) *SignedTicketValidator {
	v := &SignedTicketValidator{class: SignedTicketClass, network: network, issuers: slices.Clone(issuers), cacheSize: DefaultSignedTicketCacheSize}
	v.cache = newVerdictCache(v.cacheSize)
	return v
}

// derive returns a copy to change, with a fresh cache: verdicts depend on
// the configuration, so a copy must never see its parent's.
func (v *SignedTicketValidator) derive(change func(*SignedTicketValidator)) *SignedTicketValidator {
	n := *v
	n.issuers = slices.Clip(n.issuers)
	change(&n)
	n.cache = newVerdictCache(n.cacheSize)
	return &n
}

// WithClass sets the ticket class (default SignedTicketClass).
func (v *SignedTicketValidator) WithClass(c catalog.TicketClass) *SignedTicketValidator {
	return v.derive(func(n *SignedTicketValidator) { n.class = c })
}

// AllowNonExpiring accepts tickets without an expiry.
func (v *SignedTicketValidator) AllowNonExpiring() *SignedTicketValidator {
	return v.derive(func(n *SignedTicketValidator) { n.allowNonExpiring = true })
}

// WithLeeway tolerates clock skew of d on not-before and expiry (default
// 0). Negative values count as 0.
func (v *SignedTicketValidator) WithLeeway(d time.Duration) *SignedTicketValidator {
	return v.derive(func(n *SignedTicketValidator) { n.leeway = max(d, 0) })
}

// RequireClaim requires the ticket to carry claim name = value.
func (v *SignedTicketValidator) RequireClaim(name, value string) *SignedTicketValidator {
	return v.derive(func(n *SignedTicketValidator) {
		n.claims = maps.Clone(v.claims)
		if n.claims == nil {
			n.claims = map[string]string{}
		}
		n.claims[name] = value
	})
}

// WithCacheSize sets how many verdicts the validator keeps, the least
// recently used going first (default DefaultSignedTicketCacheSize); n <= 0
// turns the cache off.
func (v *SignedTicketValidator) WithCacheSize(n int) *SignedTicketValidator {
	return v.derive(func(c *SignedTicketValidator) { c.cacheSize = max(n, 0) })
}

// Class implements TicketValidator.
func (v *SignedTicketValidator) Class() catalog.TicketClass { return v.class }

// Validate implements TicketValidator. Checks, in order: size and
// structure, trusted issuer (before the signature, so that an untrusted
// ticket costs no verification), signature, class, network, subject,
// not-before, expiry, required claims.
func (v *SignedTicketValidator) Validate(data []byte, holder peer.ID, now time.Time) (time.Time, error) {
	if len(data) > MaxSignedTicketSize {
		return time.Time{}, fmt.Errorf("%w: %d bytes > %d", ErrTicketMalformed, len(data), MaxSignedTicketSize)
	}
	var vd verdict
	if v.cache != nil {
		key := verdictKey{holder: holder, ticket: sha256.Sum256(data)}
		var ok bool
		if vd, ok = v.cache.get(key); !ok {
			vd = v.judge(data, holder)
			v.cache.put(key, vd)
		}
	} else {
		vd = v.judge(data, holder)
	}
	switch {
	case vd.err != nil:
		return time.Time{}, vd.err
	case !vd.notBefore.IsZero() && vd.notBefore.After(now.Add(v.leeway)):
		return time.Time{}, fmt.Errorf("%w: from %v", ErrTicketNotYet, vd.notBefore)
	case vd.expires.IsZero() && !v.allowNonExpiring:
		return time.Time{}, ErrTicketNoExpiry
	case !vd.expires.IsZero() && !vd.expires.Add(v.leeway).After(now):
		return time.Time{}, fmt.Errorf("%w at %v", ErrTicketExpired, vd.expires)
	case vd.claimErr != nil:
		return time.Time{}, vd.claimErr
	}
	if vd.expires.IsZero() {
		return Never, nil
	}
	return vd.expires.Add(v.leeway), nil
}

// judge runs the checks that do not depend on the time.
func (v *SignedTicketValidator) judge(data []byte, holder peer.ID) verdict {
	t, err := openSignedTicket(data, func(id peer.ID) bool { return slices.Contains(v.issuers, id) })
	switch {
	case err != nil:
		return verdict{err: err}
	case t.Class != v.class:
		return verdict{err: fmt.Errorf("%w: %s, want %s", ErrWrongClass, t.Class.Short(), v.class.Short())}
	case t.Network != v.network:
		return verdict{err: fmt.Errorf("%w: %s, want %s", ErrWrongNetwork, t.Network.Short(), v.network.Short())}
	case t.Subject != holder:
		return verdict{err: fmt.Errorf("%w: issued to %s, held by %s", ErrWrongSubject, t.Subject, holder)}
	}
	vd := verdict{notBefore: t.NotBefore, expires: t.Expires}
	for _, name := range slices.Sorted(maps.Keys(v.claims)) {
		if got, ok := t.Claims[name]; !ok || got != v.claims[name] {
			vd.claimErr = fmt.Errorf("%w: %s", ErrTicketClaim, name)
			break
		}
	}
	return vd
}
