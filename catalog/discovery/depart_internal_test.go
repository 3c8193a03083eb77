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

// A departure this node applied from its peer's hand-off can reach it again
// on gossip (the peer published it too). The gossip copy is forwarded, not
// ignored: when it comes before this node's own publication of the handed
// off departure, that publication is a duplicate pubsub drops, and without
// the forward the nodes behind this one would never hear of it. A copy of
// another version is not a departure this node applied, and is ignored.
func TestValidate_ForwardsTheGossipCopyOfAHandedOffDeparture(t *testing.T) {
	nw := catalog.IDFromString("discovery-test/depart-forward")
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = h.Close() }()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ps, err := pubsub.NewGossipSub(ctx, h, GossipSubOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(h, ps, nw, WithParams(TestParams()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()

	sk, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := peer.IDFromPrivateKey(sk)
	now := time.Now()
	se, err := catalog.Seal(catalog.Entry{PeerID: id, Network: nw, Protocol: catalog.ProtocolVersion, Version: catalog.NewVersion(now)}, sk)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Merge(se); err != nil {
		t.Fatal(err)
	}
	seal := func(v catalog.Version) []byte {
		dep, err := catalog.SealDeparture(catalog.Departure{PeerID: id, Network: nw, LastVersion: v, Timestamp: now}, sk)
		if err != nil {
			t.Fatal(err)
		}
		return dep
	}
	dep := seal(se.Entry.Version)
	if news, err := s.takeDeparture(id, dep); err != nil || !news {
		t.Fatalf("hand-off: news %v, %v", news, err)
	}
	if _, ok := s.Catalog().Get(id); ok {
		t.Fatal("the handed-off departure was not applied")
	}
	topic := TopicName(nw)
	copyOf := func(dep []byte) *pubsub.Message {
		data, err := proto.Marshal(&pb.Announcement{Kind: &pb.Announcement_Departure{Departure: dep}})
		if err != nil {
			t.Fatal(err)
		}
		return &pubsub.Message{Message: &pubsubpb.Message{Data: data, Topic: &topic}, ReceivedFrom: id}
	}
	if got := s.validate(ctx, id, copyOf(dep)); got != pubsub.ValidationAccept {
		t.Errorf("the gossip copy of the applied departure: %v, want accept (forwarded)", got)
	}
	other := seal(catalog.NewVersion(now.Add(-time.Second)))
	if got := s.validate(ctx, id, copyOf(other)); got != pubsub.ValidationIgnore {
		t.Errorf("a departure of another version: %v, want ignore", got)
	}
}
