package groups

import (
	"crypto/sha256"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/policy"
)

// jwtFixture is mosaik's JWT test setup: HS256 over H(secret), issuer
// mosaik.test.jwt.issuer.
type jwtFixture struct {
	sk policy.JWTSigningKey
	v  *policy.JWT
}

func newJWTFixture(t testing.TB) jwtFixture {
	t.Helper()
	secret := sha256.Sum256([]byte("mosaik.test.jwt.secret"))
	sk, err := policy.HS256SigningKey(secret[:])
	if err != nil {
		t.Fatal(err)
	}
	return jwtFixture{sk: sk, v: policy.NewJWT(testNetwork, sk.VerifyingKey()).AllowIssuer("mosaik.test.jwt.issuer")}
}

// ticketed returns a key and a ticket for it expiring at exp.
func (f jwtFixture) ticketed(t testing.TB, exp time.Time) (crypto.PrivKey, catalog.Ticket) {
	t.Helper()
	k, id := newKey(t)
	tk, err := policy.NewJWTBuilder(testNetwork, f.sk).Issuer("mosaik.test.jwt.issuer").ExpiresAt(exp).Build(id)
	if err != nil {
		t.Fatal(err)
	}
	return k, tk
}

// Port of mosaik's auth::jwt_authorized_peers_can_bond: n0 and n1 hold
// valid tickets, n2 an expired one, n3 none; only n0 and n1 bond.
func TestBonds_JWTAuthorizedPeersCanBond(t *testing.T) {
	f := newJWTFixture(t)
	k0, t0 := f.ticketed(t, time.Now().Add(time.Hour))
	k1, t1 := f.ticketed(t, time.Now().Add(time.Hour))
	k2, t2 := f.ticketed(t, time.Now().Add(-time.Hour))
	n := []*bondNode{newBondNode(t, withKey(k0), withTickets(t0)), newBondNode(t, withKey(k1), withTickets(t1)),
		newBondNode(t, withKey(k2), withTickets(t2)), newBondNode(t)}
	meshed(t, n...)
	s := testSpec("jwt", RoleWriter, f.v)
	var ins []*recInbox
	for _, x := range n {
		_, in := x.attach(t, s)
		ins = append(ins, in)
	}
	testutil.Eventually(t, 8*time.Second, func() bool {
		return slices.Equal(ins[0].peers(), []peer.ID{n[1].h.ID()}) && slices.Equal(ins[1].peers(), []peer.ID{n[0].h.ID()})
	}, "n0 and n1 did not bond")
	testutil.Never(t, 3*time.Second, 50*time.Millisecond, func() string {
		switch {
		case len(ins[0].peers()) != 1 || len(ins[1].peers()) != 1:
			return "n0 or n1 has a bond besides each other"
		case len(ins[2].peers()) != 0:
			return "the node with an expired ticket bonded"
		case len(ins[3].peers()) != 0:
			return "the node without a ticket bonded"
		}
		return ""
	})
	// n2 and n3 tried (their triggers see n0 and n1 with valid tickets)
	// and were refused at the handshake.
	if r := n[0].svc.BondStatus().Refusals[CodeNotAllowed] + n[1].svc.BondStatus().Refusals[CodeNotAllowed]; r == 0 {
		t.Fatal("no NotAllowed refusal counted at n0 or n1")
	}
}

// Port of mosaik's auth::mismatched_jwt_auth_config_prevents_bonding: one
// side requires tickets, the other does not. The group ids differ (the
// validator is part of the id), so they never bond; and when a node forces
// the same id with a validator the other side fails, the bond is refused
// with NotAllowed at the handshake.
func TestBonds_MismatchedJWTAuthConfigPreventsBonding(t *testing.T) {
	f := newJWTFixture(t)
	a, b := newBondNode(t), newBondNode(t)
	meshed(t, a, b)
	with, without := testSpec("mismatch", RoleWriter, f.v), testSpec("mismatch", RoleWriter)
	if with.ID == without.ID {
		t.Fatal("the validator does not change the group id")
	}
	_, inA := a.attach(t, with)
	_, inB := b.attach(t, without)
	// Same id, validator only on one side: a refuses b (no ticket).
	forced := without
	forced.ID = catalog.IDFromString("forced")
	forcedWith := forced
	forcedWith.Tickets = with.Tickets
	_, inA2 := a.attach(t, forcedWith)
	_, inB2 := b.attach(t, forced)
	testutil.Eventually(t, 5*time.Second, func() bool {
		return a.svc.BondStatus().Refusals[CodeNotAllowed] > 0
	}, "a never refused b with NotAllowed")
	testutil.Never(t, 3*time.Second, 50*time.Millisecond, func() string {
		if len(inA.peers())+len(inB.peers())+len(inA2.peers())+len(inB2.peers()) != 0 {
			return "a and b bonded"
		}
		return ""
	})
}

// A ticket that expires while bonded ends the bond with NotAllowed.
func TestBonds_TicketExpiryEndsBond(t *testing.T) {
	f := newJWTFixture(t)
	k0, t0 := f.ticketed(t, time.Now().Add(time.Hour))
	k1, t1 := f.ticketed(t, time.Now().Add(3*time.Second))
	a, b := newBondNode(t, withKey(k0), withTickets(t0)), newBondNode(t, withKey(k1), withTickets(t1))
	meshed(t, a, b)
	s := testSpec("expiry", RoleWriter, f.v)
	_, inA := a.attach(t, s)
	b.attach(t, s)
	testutil.Eventually(t, 3*time.Second, func() bool { return len(inA.peers()) == 1 }, "no bond")
	testutil.Eventually(t, 6*time.Second, func() bool { return inA.downCount(CodeNotAllowed) == 1 }, "the bond did not end at expiry")
	testutil.Never(t, time.Second, 50*time.Millisecond, func() string {
		if len(inA.peers()) != 0 {
			return "a bonded again with an expired ticket holder"
		}
		return ""
	})
}

// A peer whose new entry drops its ticket loses its bonds at once: the
// entry update arrives on the bond and the tickets are checked again.
func TestBonds_EntryUpdateRechecksTickets(t *testing.T) {
	f := newJWTFixture(t)
	k0, t0 := f.ticketed(t, time.Now().Add(time.Hour))
	k1, t1 := f.ticketed(t, time.Now().Add(time.Hour))
	a, b := newBondNode(t, withKey(k0), withTickets(t0)), newBondNode(t, withKey(k1), withTickets(t1))
	meshed(t, a, b)
	s := testSpec("recheck", RoleWriter, f.v)
	_, inA := a.attach(t, s)
	_, inB := b.attach(t, s)
	testutil.Eventually(t, 5*time.Second, func() bool { return len(inA.peers()) == 1 && len(inB.peers()) == 1 }, "no bond")
	if _, err := b.disc.UpdateLocal(func(e *catalog.Entry) { e.Tickets = nil }); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 3*time.Second, func() bool { return inA.downCount(CodeNotAllowed) == 1 }, "a kept the bond to a peer without a ticket")
	testutil.Never(t, time.Second, 50*time.Millisecond, func() string {
		if len(inA.peers()) != 0 {
			return "a bonded again with a peer without a ticket"
		}
		return ""
	})
}
