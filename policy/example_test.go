package policy_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/policy"
)

func newPeer() (crypto.PrivKey, peer.ID) {
	sk, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		panic(err)
	}
	id, err := peer.IDFromPrivateKey(sk)
	if err != nil {
		panic(err)
	}
	return sk, id
}

// An authority issues an ES256 JWT ticket to a consumer; a producer that
// trusts the authority's public key validates it from the consumer's
// catalog entry.
func ExampleJWT() {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC) // the caller's clock
	_, consumer := newPeer()

	// The authority's side: a P-256 key; it publishes the public half.
	authority, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	signer, err := policy.ES256SigningKey(authority)
	if err != nil {
		panic(err)
	}
	network := catalog.IDFromString("my-app")
	// The builder binds the token to the network and the ticket class.
	ticket, err := policy.NewJWTBuilder(network, signer).
		Issuer("auth.example").
		Audience("orders").
		Claim("tier", "gold").
		ExpiresIn(time.Hour, now). // also sets iat = now
		Build(consumer)            // sub = policy.Subject(consumer)
	if err != nil {
		panic(err)
	}
	// The consumer adds it to its entry (node.AddTicket); it travels there.
	entry := &catalog.Entry{PeerID: consumer, Tickets: []catalog.Ticket{ticket}}

	// The producer's side.
	v := policy.NewJWT(network, signer.VerifyingKey()).
		AllowIssuer("auth.example").
		AllowAudience("orders").
		RequireClaim("tier", "gold").
		MaxLifetime(24 * time.Hour)
	exp, err := policy.ValidateTicket(entry, v, now)
	fmt.Println("valid until:", exp.UTC(), err)

	_, err = policy.ValidateTicket(entry, v, now.Add(2*time.Hour))
	fmt.Println("two hours later, expired:", errors.Is(err, policy.ErrTicketExpired))

	_, err = policy.ValidateTicket(entry, v.RequireClaim("tier", "platinum"), now)
	fmt.Println("platinum required:", errors.Is(err, policy.ErrTicketClaim))

	// The same authority key trusted in another network does not accept it.
	_, err = policy.ValidateTicket(entry, policy.NewJWT(catalog.IDFromString("staging"), signer.VerifyingKey()), now)
	fmt.Println("other network:", errors.Is(err, policy.ErrWrongNetwork))
	// Output:
	// valid until: 2025-06-01 13:00:00 +0000 UTC <nil>
	// two hours later, expired: true
	// platinum required: true
	// other network: true
}

// A shared HMAC secret (32 bytes for HS256) signs and verifies.
func ExampleHS256Key() {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	_, holder := newPeer()
	secret := catalog.HashID([]byte("a 32-byte secret, e.g. from a vault"))

	signer, err := policy.HS256SigningKey(secret[:])
	if err != nil {
		panic(err)
	}
	network := catalog.IDFromString("my-app")
	ticket, err := policy.NewJWTBuilder(network, signer).ExpiresAt(now.Add(30 * time.Minute)).Build(holder)
	if err != nil {
		panic(err)
	}
	key, err := policy.HS256Key(secret[:])
	if err != nil {
		panic(err)
	}
	exp, err := policy.NewJWT(network, key).Validate(ticket.Data, holder, now)
	fmt.Println(exp.UTC(), err)

	_, err = policy.HS256Key(secret[:16])
	fmt.Println(err)
	// Output:
	// 2025-06-01 12:30:00 +0000 UTC <nil>
	// policy: an HS256 secret is 32 bytes, got 16
}

// An issuer seals a ticket with its libp2p key; validators trust the
// issuer's peer ID, so no secret is shared.
func ExampleIssueSignedTicket() {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	network := catalog.IDFromString("my-app")
	issuerKey, issuer := newPeer()
	_, holder := newPeer()

	ticket, err := policy.IssueSignedTicket(issuerKey, policy.SignedTicket{
		Subject: holder,
		Network: network,
		Expires: now.Add(24 * time.Hour),
		Claims:  map[string]string{"role": "producer"},
	})
	if err != nil {
		panic(err)
	}
	entry := &catalog.Entry{PeerID: holder, Tickets: []catalog.Ticket{ticket}}

	req := policy.Require(policy.NewSignedTicketValidator(network, issuer).RequireClaim("role", "producer"))
	exp, err := req.Check(entry, now)
	fmt.Println("valid until:", exp.UTC(), err)

	// Another peer cannot use a copy of the ticket.
	_, thief := newPeer()
	stolen := &catalog.Entry{PeerID: thief, Tickets: []catalog.Ticket{ticket}}
	_, err = req.Check(stolen, now)
	fmt.Println("stolen:", errors.Is(err, policy.ErrWrongSubject))
	// Output:
	// valid until: 2025-06-02 12:00:00 +0000 UTC <nil>
	// stolen: true
}
