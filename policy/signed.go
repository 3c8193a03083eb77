package policy

import (
	"bytes"
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

// Errors of ticket validation.
var (
	ErrTicketMalformed  = errors.New("policy: malformed ticket")
	ErrTicketSignature  = errors.New("policy: ticket signature invalid")
	ErrUntrustedIssuer  = errors.New("policy: ticket issuer is not trusted")
	ErrWrongSubject     = errors.New("policy: ticket issued for another peer")
	ErrWrongNetwork     = errors.New("policy: ticket issued for another network")
	ErrWrongClass       = errors.New("policy: ticket of another class")
	ErrTicketNotYet     = errors.New("policy: ticket not valid yet")
	ErrTicketExpired    = errors.New("policy: ticket expired")
	ErrTicketNoExpiry   = errors.New("policy: ticket never expires and non-expiring tickets are not allowed")
	ErrTicketTooLong    = errors.New("policy: ticket lifetime exceeds the maximum")
	ErrTicketClaim      = errors.New("policy: required claim missing or different")
	ErrTicketTooOld     = errors.New("policy: ticket issued too long ago")
	ErrTicketAudience   = errors.New("policy: ticket audience not allowed")
	ErrTicketAlgorithm  = errors.New("policy: ticket algorithm or key not accepted")
	ErrTicketIssuerName = errors.New("policy: ticket issuer not allowed")
)

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
		return nil, fmt.Errorf("%w: payload type %q", ErrTicketMalformed, env.PayloadType)
	}
	var rec ticketRecord
	if _, err := record.ConsumeTypedEnvelope(data, &rec); err != nil {
		if rec.m == nil {
			return nil, fmt.Errorf("%w: %v", ErrTicketSignature, err)
		}
		return nil, fmt.Errorf("%w: %v", ErrTicketMalformed, err)
	}
	issuer, err := peer.IDFromPublicKey(env.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("%w: issuer: %v", ErrTicketMalformed, err)
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

// SignedTicketValidator accepts libp2p-signed tickets of its class, for
// its network, issued to the holder by one of its trusted issuers.
type SignedTicketValidator struct {
	class            catalog.TicketClass
	network          catalog.NetworkID
	issuers          []peer.ID
	allowNonExpiring bool
	leeway           time.Duration
	claims           map[string]string
}

// NewSignedTicketValidator trusts the given issuers for tickets of network.
func NewSignedTicketValidator(network catalog.NetworkID, issuers ...peer.ID) *SignedTicketValidator {
	return &SignedTicketValidator{class: SignedTicketClass, network: network, issuers: slices.Clone(issuers)}
}

// WithClass sets the ticket class (default SignedTicketClass).
func (v *SignedTicketValidator) WithClass(c catalog.TicketClass) *SignedTicketValidator {
	n := *v
	n.class = c
	return &n
}

// AllowNonExpiring accepts tickets without an expiry.
func (v *SignedTicketValidator) AllowNonExpiring() *SignedTicketValidator {
	n := *v
	n.allowNonExpiring = true
	return &n
}

// WithLeeway tolerates clock skew of d on not-before and expiry (default 0).
func (v *SignedTicketValidator) WithLeeway(d time.Duration) *SignedTicketValidator {
	n := *v
	n.leeway = d
	return &n
}

// RequireClaim requires the ticket to carry claim name = value.
func (v *SignedTicketValidator) RequireClaim(name, value string) *SignedTicketValidator {
	n := *v
	n.claims = maps.Clone(v.claims)
	if n.claims == nil {
		n.claims = map[string]string{}
	}
	n.claims[name] = value
	return &n
}

// Class implements TicketValidator.
func (v *SignedTicketValidator) Class() catalog.TicketClass { return v.class }

// Validate implements TicketValidator. Checks, in order: signature and
// structure, trusted issuer, class, network, subject, not-before, expiry,
// required claims.
func (v *SignedTicketValidator) Validate(data []byte, holder peer.ID, now time.Time) (time.Time, error) {
	t, err := OpenSignedTicket(data)
	if err != nil {
		return time.Time{}, err
	}
	switch {
	case !slices.Contains(v.issuers, t.Issuer):
		return time.Time{}, fmt.Errorf("%w: %s", ErrUntrustedIssuer, t.Issuer)
	case t.Class != v.class:
		return time.Time{}, ErrWrongClass
	case t.Network != v.network:
		return time.Time{}, fmt.Errorf("%w: %s", ErrWrongNetwork, t.Network.Short())
	case t.Subject != holder:
		return time.Time{}, fmt.Errorf("%w: issued to %s, held by %s", ErrWrongSubject, t.Subject, holder)
	case !t.NotBefore.IsZero() && t.NotBefore.After(now.Add(v.leeway)):
		return time.Time{}, fmt.Errorf("%w: from %v", ErrTicketNotYet, t.NotBefore)
	case t.Expires.IsZero() && !v.allowNonExpiring:
		return time.Time{}, ErrTicketNoExpiry
	case !t.Expires.IsZero() && !t.Expires.Add(v.leeway).After(now):
		return time.Time{}, fmt.Errorf("%w at %v", ErrTicketExpired, t.Expires)
	}
	for name, want := range v.claims {
		if got, ok := t.Claims[name]; !ok || got != want {
			return time.Time{}, fmt.Errorf("%w: %s", ErrTicketClaim, name)
		}
	}
	if t.Expires.IsZero() {
		return Never, nil
	}
	return t.Expires.Add(v.leeway), nil
}
