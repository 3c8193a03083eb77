package discovery_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
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
	fast, params := purgeNodeOpts()
	a := newNode(t, nw, fast...)
	b := newNode(t, nw, append(fast, withPubSubOpts(pubsub.WithAppSpecificRpcInspector(drop)))...)
	c := newNode(t, nw, fast...)
	d := newNode(t, nw, fast...)
	nodes := []*testNode{a, b, c, d}
	connectAll(t, nodes)
	awaitAllKnow(t, nodes)

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

// TestPurge_LateHeartbeatsKeepPeer: b gets every heartbeat of a, live,
// late: its router drops each gossip message carrying a's entry, from any
// sender, and a raw gossip peer r (connected to b alone) delivers the same
// bytes to b purge_after + 500 ms after b first saw them. A late heartbeat
// is still proof of life (PROTOCOL.md section 6): b may purge a once, when
// the delay sets in (the lateness jumps from nothing to more than
// purge_after), but must take a back at the first late heartbeat and then
// keep it, each heartbeat holding it purge_after from its arrival. Under
// the strict rule (an entry signed purge_after or longer before it
// arrives is stale) every late heartbeat was refused and a stayed out for
// as long as the delay lasted. Anti-entropy and bump push are off, so
// nothing but the late heartbeats can bring a back.
func TestPurge_LateHeartbeatsKeepPeer(t *testing.T) {
	nw := catalog.IDFromString("discovery-test/purge-late")
	var late atomic.Value // the peer whose entries reach b late, or ""
	late.Store(peer.ID(""))
	var r *gossipAttacker
	type held struct {
		data []byte
		due  time.Time
	}
	queue := make(chan held, 1024)
	var delay time.Duration
	var mu sync.Mutex
	seen := map[string]bool{} // held messages, by data
	hold := func(from peer.ID, rpc *pubsub.RPC) error {
		victim := late.Load().(peer.ID)
		if victim == "" || (r != nil && from == r.h.ID()) {
			return nil
		}
		kept := rpc.Publish[:0]
		for _, m := range rpc.Publish {
			if announcedPeer(m.GetData()) != victim {
				kept = append(kept, m)
				continue
			}
			mu.Lock()
			first := !seen[string(m.GetData())]
			seen[string(m.GetData())] = true
			mu.Unlock()
			if first {
				select {
				case queue <- held{data: slices.Clone(m.GetData()), due: time.Now().Add(delay)}:
				default:
					t.Error("the queue of late heartbeats is full")
				}
			}
		}
		rpc.Publish = kept
		return nil
	}
	fast, params := purgeNodeOpts()
	a := newNode(t, nw, fast...)
	b := newNode(t, nw, append(fast, withPubSubOpts(pubsub.WithAppSpecificRpcInspector(hold)))...)
	c := newNode(t, nw, fast...)
	d := newNode(t, nw, fast...)
	r = newGossipAttacker(t, nw)
	delay = params.Catalog.PurgeAfter + 500*time.Millisecond
	if delay >= params.Catalog.MaxAge() {
		t.Fatalf("a delay of %v leaves no room below MaxAge %v", delay, params.Catalog.MaxAge())
	}
	nodes := []*testNode{a, b, c, d}
	connectAll(t, nodes)
	connect(t, r.h, b.h)
	awaitAllKnow(t, nodes)

	// r delivers what b's router held back, each message when it is due.
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var delivered atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			var m held
			select {
			case <-ctx.Done():
				return
			case m = <-queue:
			}
			// The simulated delay: the message waits until it is due.
			tm := time.NewTimer(time.Until(m.due))
			select {
			case <-ctx.Done():
				tm.Stop()
				return
			case <-tm.C:
			}
			if err := r.topic.Publish(ctx, m.data); err != nil && ctx.Err() == nil {
				t.Errorf("late delivery: %v", err)
			}
			delivered.Add(1)
		}
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })

	stale := func() uint64 { return b.svc.Stats().RejectedBy["ignored/stale"] }
	staleBefore, purgedBefore := stale(), b.svc.Stats().Purged
	late.Store(a.h.ID())
	began := time.Now()
	// The first late heartbeat reaches b at most a heartbeat gap plus the
	// delay after the delay set in; a second more for gossip on a loaded
	// machine.
	gap := time.Duration(float64(params.AnnounceInterval) * (1 + params.AnnounceJitter))
	bound := gap + delay + time.Second
	testutil.Eventually(t, bound, func() bool { return delivered.Load() > 0 && knows(b.svc, a.h.ID()) },
		"a, live and heartbeating %v late, is not at b within %v (%v late heartbeats delivered, %v refused as stale by b, %v purges)",
		delay, bound, testutil.Lazy(delivered.Load), testutil.Lazy(func() int64 { return int64(stale() - staleBefore) }),
		testutil.Lazy(func() int64 { return int64(b.svc.Stats().Purged - purgedBefore) }))
	// Once the late heartbeats flow, a stays: observed over three
	// purge_after periods.
	purged := b.svc.Stats().Purged
	testutil.Never(t, 3*params.Catalog.PurgeAfter, 10*time.Millisecond, func() string {
		switch {
		case !knows(b.svc, a.h.ID()):
			return fmt.Sprintf("b lost a again %v after the delay set in, with its heartbeats %v late", time.Since(began).Round(time.Millisecond), delay)
		case b.svc.Stats().Purged != purged:
			return "b purged a again"
		}
		return ""
	})
	t.Logf("%d late heartbeats delivered; b purged a %d time(s) when the delay set in and refused %d entries as stale",
		delivered.Load(), purged-purgedBefore, stale()-staleBefore)
	if got := purged - purgedBefore; got > 1 {
		t.Fatalf("b purged a %d times, want at most once (when the delay set in)", got)
	}
}

// purgeNodeOpts are the purge tests' node options: the fast profile's
// gossipsub mesh, and neither bumps nor anti-entropy, so that nothing but
// gossip brings a purged peer back. *params is the nodes' discovery
// parameters, filled in when a node is built.
func purgeNodeOpts() ([]nodeOpt, *discovery.Params) {
	gp := pubsub.DefaultGossipSubParams() // node.FastGossipSubParams
	gp.HeartbeatInitialDelay = 50 * time.Millisecond
	gp.D, gp.Dlo, gp.Dhi, gp.Dlazy, gp.Dscore, gp.Dout = 3, 2, 6, 3, 2, 0
	params := new(discovery.Params)
	return []nodeOpt{
		withPubSubOpts(pubsub.WithGossipSubParams(gp)),
		withParams(func(p *discovery.Params) {
			p.BumpInterval, p.AntiEntropyInterval = 0, 0
			*params = *p
		}),
	}, params
}

// connectAll connects every pair of nodes.
func connectAll(t *testing.T, nodes []*testNode) {
	t.Helper()
	for i, x := range nodes {
		for _, y := range nodes[i+1:] {
			connect(t, x.h, y.h)
		}
	}
}

// awaitAllKnow waits until every node's catalog holds every other node.
func awaitAllKnow(t *testing.T, nodes []*testNode) {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, func() bool {
		for _, x := range nodes {
			for _, y := range nodes {
				if x != y && !knows(x.svc, y.h.ID()) {
					return false
				}
			}
		}
		return true
	}, "the %d nodes do not know each other", len(nodes))
}
