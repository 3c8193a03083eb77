package discovery

import (
	"context"
	"crypto/rand"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pubsubpb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/catalog/pb"
)

// The answers of a hand-off, and what goes on to gossip. A departure of a
// peer this node holds is taken and applied; handed off again, it is
// still taken (applied before). One of a peer it does not hold is not
// taken (the sender must not count on this node to pass it on). And the
// gossip copies of an applied departure are not forwarded: this node
// published the departure itself before it applied it, so the canonical
// copy is a duplicate in its router, and a re-encoded one (a nonce, or
// padding: another message ID) must not travel the network again.
func TestTakeDeparture_AnswersAndNoReforward(t *testing.T) {
	nw := catalog.IDFromString("discovery-test/depart-answers")
	s, ctx := loneService(t, nw)

	now := time.Now()
	peerKey := func() (crypto.PrivKey, peer.ID) {
		sk, _, err := crypto.GenerateEd25519Key(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		id, _ := peer.IDFromPrivateKey(sk)
		return sk, id
	}
	sk, id := peerKey()
	se, err := catalog.Seal(catalog.Entry{PeerID: id, Network: nw, Protocol: catalog.ProtocolVersion, Version: catalog.NewVersion(now)}, sk)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Merge(se); err != nil {
		t.Fatal(err)
	}
	seal := func(sk crypto.PrivKey, id peer.ID, v catalog.Version) []byte {
		dep, err := catalog.SealDeparture(catalog.Departure{PeerID: id, Network: nw, LastVersion: v, Timestamp: now}, sk)
		if err != nil {
			t.Fatal(err)
		}
		return dep
	}
	dep := seal(sk, id, se.Entry.Version)
	if ans, err := s.takeDeparture(id, dep); err != nil || ans != departTaken {
		t.Fatalf("hand-off of a held peer: answer %d, %v; want taken", ans, err)
	}
	if _, ok := s.Catalog().Get(id); ok {
		t.Fatal("the handed-off departure was not applied")
	}
	if ans, err := s.takeDeparture(id, dep); err != nil || ans != departTaken {
		t.Errorf("the same hand-off again: answer %d, %v; want taken (applied before)", ans, err)
	}
	otherKey, other := peerKey()
	if ans, err := s.takeDeparture(other, seal(otherKey, other, catalog.NewVersion(now))); err != nil || ans != departNotHeld {
		t.Errorf("hand-off of a peer not held: answer %d, %v; want not held", ans, err)
	}

	topic := TopicName(nw)
	for _, nonce := range [][]byte{nil, []byte("another message ID")} {
		data, err := proto.Marshal(&pb.Announcement{Kind: &pb.Announcement_Departure{Departure: dep}, Nonce: nonce})
		if err != nil {
			t.Fatal(err)
		}
		msg := &pubsub.Message{Message: &pubsubpb.Message{Data: data, Topic: &topic}, ReceivedFrom: id}
		if got := s.validate(ctx, id, msg); got == pubsub.ValidationAccept {
			t.Errorf("a gossip copy (nonce %q) of the applied departure was accepted: it would travel the network again", nonce)
		}
	}
}

// loneService runs a discovery service of network nw on a host of its own
// (127.0.0.1, no peers), for tests that call its handlers directly; ctx
// ends with the test.
func loneService(t *testing.T, nw catalog.NetworkID) (*Service, context.Context) {
	t.Helper()
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ps, err := pubsub.NewGossipSub(ctx, h, GossipSubOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(h, ps, nw, WithParams(TestParams()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, ctx
}
