package node_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/internal/testutil"
)

// timeoutErr is what identify reports when its exchange hits its deadline
// (yamux's "i/o deadline reached" is such a net.Error).
type timeoutErr struct{}

func (timeoutErr) Error() string { return "i/o deadline reached" }
func (timeoutErr) Timeout() bool { return true }

// TestMuteLink_IdentifyTimeoutClosesAMuteLink: identify runs once per
// connection, and gossipsub and the catalog sync start on a connection
// only once it completed, so a connection whose identify timed out (a
// loaded host) carried nothing for as long as it lasted: a newcomer whose
// only connection it was stayed cut off (TestChurn_ThirtyNodes, under
// load, had a node connected to a live peer for 82 s with an empty
// catalog). Now such a connection is closed, and the bootstrap loop or the
// top-up dials again. Identify's failures are emitted on the host's bus
// here, as the identify service emits them. Left open: a link on which
// this node's gossip stream runs (another connection identified the peer
// meanwhile), and a failure that is no timeout (a connection closed under
// identify while another is healthy).
func TestMuteLink_IdentifyTimeoutClosesAMuteLink(t *testing.T) {
	const nw = "mute-link"
	a := startNode(t, nw)
	b := startNode(t, nw, bootstrapOf(a))
	testutil.Eventually(t, 10*time.Second, func() bool {
		_, ok := b.Catalog().Get(a.ID())
		return ok
	}, "b never learned a")
	// a's link carries b's gossip stream once pubsub has opened it.
	testutil.Eventually(t, 10*time.Second, func() bool {
		for _, c := range b.Host().Network().ConnsToPeer(a.ID()) {
			for _, st := range c.GetStreams() {
				if st.Stat().Direction == network.DirOutbound && strings.HasPrefix(string(st.Protocol()), "/meshsub/") {
					return true
				}
			}
		}
		return false
	}, "b has no gossip stream to a")
	// Two bare hosts connected to b: no gossip, no sync on their links.
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Scale(10*time.Second))
	defer cancel()
	bare := func() peer.ID {
		h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = h.Close() })
		if err := h.Connect(ctx, b.AddrInfo()); err != nil {
			t.Fatal(err)
		}
		return h.ID()
	}
	r1, r2 := bare(), bare()
	em, err := b.Host().EventBus().Emitter(new(event.EvtPeerIdentificationFailed))
	if err != nil {
		t.Fatal(err)
	}
	defer em.Close()
	conns := func(p peer.ID) []network.Conn { return b.Host().Network().ConnsToPeer(p) }
	toA, toR1, toR2 := conns(a.ID()), conns(r1), conns(r2)
	if len(toR1) == 0 || len(toR2) == 0 {
		t.Fatal("the bare hosts are not connected to b")
	}
	timeout := fmt.Errorf("identify: %w", timeoutErr{})
	for _, ev := range []event.EvtPeerIdentificationFailed{
		{Peer: r1, Reason: errors.New("connection closed")}, // no timeout
		{Peer: a.ID(), Reason: timeout},                     // b's gossip runs on the link
		{Peer: r2, Reason: timeout},                         // mute
	} {
		if err := em.Emit(ev); err != nil {
			t.Fatal(err)
		}
	}
	// The service takes events in order: once r2's is counted, all were seen.
	testutil.Eventually(t, 5*time.Second, func() bool { return b.Discovery().Stats().MuteLinksClosed == 1 },
		"the mute link was not closed: stats %+v", testutil.Lazy(func() any { return b.Discovery().Stats() }))
	for _, c := range toR2 {
		if !c.IsClosed() {
			t.Errorf("the mute connection %s is still open", c.ID())
		}
	}
	for name, cs := range map[string][]network.Conn{"a's (gossip on it)": toA, "r1's (no timeout)": toR1} {
		for _, c := range cs {
			if c.IsClosed() {
				t.Errorf("%s connection %s was closed", name, c.ID())
			}
		}
	}
	if n := b.Discovery().Stats().MuteLinksClosed; n != 1 {
		t.Errorf("%d links closed, want 1", n)
	}
}
