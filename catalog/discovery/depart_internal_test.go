package discovery

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pubsubpb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/catalog/pb"
	"github.com/mosaik-go/mosaik/internal/framer"
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

// loneService runs a discovery service of network nw, with TestParams as
// tune changes them, on a host of its own (127.0.0.1, no peers), for
// tests that call its handlers directly; ctx ends with the test.
func loneService(t *testing.T, nw catalog.NetworkID, tune ...func(*Params)) (*Service, context.Context) {
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
	p := TestParams()
	for _, f := range tune {
		f(&p)
	}
	s, err := New(h, ps, nw, WithParams(p))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, ctx
}

// A hand-off whose departure is written but not yet answered when the
// sender stops waiting (DepartureGrace passed) is not reset: a peer too
// loaded to read it in time still reads it. It was reset, which on a QUIC
// connection discarded the frame at the peer (on yamux a reset after the
// stream's FIN keeps the data, so TCP passed before too).
func TestHandOff_WrittenDepartureSurvivesTheSendersTimeout(t *testing.T) {
	for _, listen := range []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"} {
		t.Run(listen, func(t *testing.T) { testHandOffLateReader(t, listen) })
	}
}

func testHandOffLateReader(t *testing.T, listen string) {
	nw := catalog.IDFromString("discovery-test/depart-late-reader")
	s, ctx := loneService(t, nw)

	peerB, err := libp2p.New(libp2p.ListenAddrStrings(listen))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = peerB.Close() })
	release := make(chan struct{})
	got := make(chan error, 1)
	var frame []byte
	peerB.SetStreamHandler(DepartProtocol(nw), func(st network.Stream) {
		defer func() { _ = st.Close() }()
		<-release // a loaded peer: it reads only after the sender gave up
		var err error
		frame, err = framer.ReadFrame(bufio.NewReader(st), 1<<20)
		got <- err
	})
	if err := s.h.Connect(ctx, peer.AddrInfo{ID: peerB.ID(), Addrs: peerB.Addrs()}); err != nil {
		t.Fatal(err)
	}

	// Bytes the stream does not look into; more than the protocol
	// negotiation reads with its header, so that the handler reads from the
	// stream itself.
	dep := bytes.Repeat([]byte("a departure "), 20_000)
	hctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	err = s.handOffTo(hctx, peerB.ID(), DepartProtocol(nw), dep)
	cancel()
	if err == nil {
		t.Fatal("hand-off answered although the peer read nothing")
	}
	close(release)
	select {
	case err := <-got:
		if err != nil {
			t.Fatalf("the peer could not read the departure written before the sender's timeout: %v", err)
		}
		if !bytes.Equal(frame, dep) {
			t.Fatalf("the peer read %d bytes, want the %d written", len(frame), len(dep))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the peer's read did not end")
	}
}
