package streams_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/catalog/discovery"
	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/streams"
)

// TestConsumer_LowestRTTPassesOverAFailingProducer: WithLowestRTT(1, h)
// whose lowest-RTT producer refuses it (NoCapacity) subscribes to the next
// one instead of holding the place for the failing one's whole reconnect
// backoff (5 min by default, without data), and moves back to the best
// one, dropping the other, once it accepts.
func TestConsumer_LowestRTTPassesOverAFailingProducer(t *testing.T) {
	const name = "lowest-failing"
	// Heartbeats far apart: the consumer must choose again when A refuses
	// it, not when A's next heartbeat changes the catalog.
	cnode, anode, bnode := rttNodes(t, func(p *discovery.Params) {
		p.AnnounceInterval, p.AnnounceJitter = time.Minute, 0
		p.Catalog.PurgeAfter, p.Catalog.LateGrace = 5*time.Minute, 5*time.Minute
	})
	a, b := anode.ID(), bnode.ID()
	prodA := mustProducer[int](t, anode, name, streams.WithMaxConsumers(1))
	prodB := mustProducer[int](t, bnode, name)
	testutil.Eventually(t, 10*time.Second, func() bool {
		return len(cnode.Catalog().Producers(prodA.StreamID())) == 2
	}, "the consumer node does not see both producers")
	// A's only slot is taken by another consumer (of A only).
	onlyA := streams.WithRequire(func(pi catalog.PeerInfo) bool { return pi.Entry.Entry.PeerID == a })
	holder := mustConsumer[int](t, cnode, name, onlyA)
	testutil.Eventually(t, 10*time.Second, func() bool { return rbAllConnected(prodA.Consumers(), 1) }, "A's slot not taken")
	rbSetRTT(cnode, a, time.Millisecond)
	rbSetRTT(cnode, b, 50*time.Millisecond)
	cons := mustConsumer[int](t, cnode, name, streams.WithLowestRTT(1, 0.2))
	who := func(p peer.ID) string {
		if p == a {
			return "A"
		}
		return "B"
	}
	states := testutil.Lazy(func() string {
		var out []string
		for _, ci := range cons.Producers() {
			out = append(out, fmt.Sprintf("%s:%v err=%v", who(ci.Peer), ci.State, ci.Err))
		}
		return strings.Join(out, " ")
	})
	testutil.Eventually(t, 8*time.Second, func() bool { return rbAllConnected(prodB.Consumers(), 1) },
		"B, which has room, never got the consumer while A refused it: %s", states)
	// A's place frees: the consumer moves to it and leaves B.
	_ = holder.Close()
	testutil.Eventually(t, 30*time.Second, func() bool {
		return rbAllConnected(prodA.Consumers(), 1) && len(prodB.Consumers()) == 0
	}, "the consumer did not move back to A once it had room: %s", states)
}
