package policy

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/catalog"
)

// JWTBuilder issues JWT tickets, the counterpart of mosaik's
// JwtTicketBuilder. Each method returns a changed copy, so a builder can be
// shared as a template; it is safe for concurrent use.
//
// The header is {"alg":"<ALG>","typ":"JWT"}. By default a token has only
// "sub" (Subject of the holder), the binding claims JWTNetworkClaim and
// JWTClassClaim (the builder's network and class, as 64 hex characters) and
// no "exp": set an expiry with ExpiresAt or ExpiresIn, since validators
// refuse non-expiring tokens by default.
// Times are written as whole unix seconds (fractions are dropped).
type JWTBuilder struct {
	key       JWTSigningKey
	network   catalog.NetworkID
	class     catalog.TicketClass
	iss, sub  string
	jti       string
	aud       []string
	exp, nbf  time.Time
	iat       time.Time
	claims    map[string]any
	setIssued bool
}

// NewJWTBuilder returns a builder of tickets of class JWTClass for network,
// signed with key.
func NewJWTBuilder(network catalog.NetworkID, key JWTSigningKey) *JWTBuilder {
	return &JWTBuilder{key: key, network: network, class: JWTClass}
}

func (b *JWTBuilder) clone() *JWTBuilder {
	n := *b
	n.aud = slices.Clip(n.aud)
	n.claims = maps.Clone(n.claims)
	return &n
}

// WithClass sets the class of the tickets built, and the class they are
// bound to (default JWTClass).
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
// with its own method (Issuer, Subject, Audience, ExpiresAt, …) and the
// binding claims override a Claim of the same name.
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
	m[JWTNetworkClaim] = b.network.String()
	m[JWTClassClaim] = b.class.String()
	s, err := jwt.NewWithClaims(b.key.method, m).SignedString(b.key.key)
	if err != nil {
		return catalog.Ticket{}, fmt.Errorf("policy: sign JWT: %w", err)
	}
	if len(s) > MaxJWTSize {
		return catalog.Ticket{}, fmt.Errorf("policy: JWT is %d bytes, the limit is %d", len(s), MaxJWTSize)
	}
	return catalog.Ticket{Class: b.class, Data: []byte(s)}, nil
}
