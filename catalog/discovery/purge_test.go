package discovery_test

import (
	"sync/atomic"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/catalog/discovery"
	"github.com/mosaik-go/mosaik/catalog/pb"
	"github.com/mosaik-go/mosaik/internal/testutil"
)

// TestPurge_LivePeerBackOnNextHeartbeat: b stops hearing a (its router
// drops every gossip message carrying a's entry, from any sender) until it
// purges a, which keeps heartbeating. Once delivery resumes, a must be back
// in b's catalog at its next heartbeat: a purge leaves no tombstone, and
// nothing of a (a high-water mark of its versions, a seen gossip message
// ID, a penalty, a disconnect) may keep its new versions out. Twice, so a
// second purge of the same peer is covered too. The nodes run the fast
// profile's discovery parameters (heartbeats on gossip, bump push off) and
// a gossipsub mesh of its degree; anti-entropy is off, or a sync would
// bring a back before the purge.
func TestPurge_LivePeerBackOnNextHeartbeat(t *testing.T) {
	nw := catalog.IDFromString("discovery-test/purge-readmit")
	var deaf atomic.Value // the peer whose entries b's router drops, or ""
	deaf.Store(peer.ID(""))
	var dropped atomic.Int64
	drop := func(_ peer.ID, rpc *pubsub.RPC) error {
		victim := deaf.Load().(peer.ID)
		if victim == "" {
			return nil
		}
		kept := rpc.Publish[:0]
		for _, m := range rpc.Publish {
			if announcedPeer(m.GetData()) == victim {
				dropped.Add(1)
				continue
			}
			kept = append(kept, m)
		}
		rpc.Publish = kept
		return nil
	}
	gp := pubsub.DefaultGossipSubParams() // node.FastGossipSubParams
	gp.HeartbeatInitialDelay = 50 * time.Millisecond
	gp.D, gp.Dlo, gp.Dhi, gp.Dlazy, gp.Dscore, gp.Dout = 3, 2, 6, 3, 2, 0
	var params discovery.Params
	fast := []nodeOpt{
		withPubSubOpts(pubsub.WithGossipSubParams(gp)),
		withParams(func(p *discovery.Params) {
			p.BumpInterval, p.AntiEntropyInterval = 0, 0
			params = *p
		}),
	}
	a := newNode(t, nw, fast...)
	b := newNode(t, nw, append(fast, withPubSubOpts(pubsub.WithAppSpecificRpcInspector(drop)))...)
	c := newNode(t, nw, fast...)
	d := newNode(t, nw, fast...)
	nodes := []*testNode{a, b, c, d}
	for i, x := range nodes {
		for _, y := range nodes[i+1:] {
			connect(t, x.h, y.h)
		}
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		for _, x := range nodes {
			for _, y := range nodes {
				if x != y && !knows(x.svc, y.h.ID()) {
					return false
				}
			}
		}
		return true
	}, "the four nodes do not know each other")

	// The longest heartbeat gap, plus a second for gossip on a loaded
	// machine: what the design promises after delivery resumes.
	promise := time.Duration(float64(params.AnnounceInterval)*(1+params.AnnounceJitter)) + time.Second
	for round := 1; round <= 2; round++ {
		purged := b.svc.Stats().Purged
		deaf.Store(a.h.ID())
		// The purge loop counts a purge once the snapshot without a is out.
		testutil.Eventually(t, 3*params.Catalog.PurgeAfter, func() bool {
			return !knows(b.svc, a.h.ID()) && b.svc.Stats().Purged > purged
		}, "round %d: b did not purge a while deaf to it", round)
		if got := b.svc.Stats().Purged; got != purged+1 {
			t.Fatalf("round %d: b purged %d entries, want 1 (a)", round, got-purged)
		}
		if !knows(c.svc, a.h.ID()) || !knows(d.svc, a.h.ID()) {
			t.Fatalf("round %d: c or d lost a too: a stopped heartbeating", round)
		}
		deaf.Store(peer.ID(""))
		took := testutil.Eventually(t, promise, func() bool { return knows(b.svc, a.h.ID()) },
			"round %d: a, live and heartbeating, was not back at b within %v of delivery resuming", round, promise)
		t.Logf("round %d: a back at b %v after delivery resumed (%d of its messages dropped so far)",
			round, took.Round(time.Millisecond), dropped.Load())
	}
	if dropped.Load() == 0 {
		t.Fatal("b's router dropped nothing: the purge had another cause")
	}
}

// announcedPeer returns the peer whose entry a catalog gossip message
// carries, or "" for anything else.
func announcedPeer(data []byte) peer.ID {
	var ann pb.Announcement
	if proto.Unmarshal(data, &ann) != nil || ann.GetEntry() == nil {
		return ""
	}
	e, err := catalog.OpenEntry(ann.GetEntry(), catalog.DefaultMaxEntrySize)
	if err != nil {
		return ""
	}
	return e.Entry.PeerID
}
