package discovery_test

import (
	"crypto/rand"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/catalog/discovery"
	"github.com/mosaik-go/mosaik/internal/testutil"
)

// TestConnect_RedialsCatalogPeersWhenConnectionsClose checks that a node
// keeps CascadeBelow peers of its catalog connected: when its connections
// to two known peers close, it dials them again. With CascadeBelow 0 the
// same closed connections stay closed, so the redial is the service's
// doing (nothing else in this test dials: no DHT, no bootstrap loop).
func TestConnect_RedialsCatalogPeersWhenConnectionsClose(t *testing.T) {
	for _, tc := range []struct {
		name   string
		below  int
		redial bool
	}{{"CascadeBelow 8", 8, true}, {"CascadeBelow 0", 0, false}} {
		t.Run(tc.name, func(t *testing.T) {
			nw := catalog.IDFromString("discovery-test/connect/" + tc.name)
			nodes := make([]*testNode, 4)
			for i := range nodes {
				nodes[i] = newNode(t, nw, withParams(func(p *discovery.Params) { p.CascadeBelow = tc.below }))
			}
			for i, a := range nodes {
				for _, b := range nodes[i+1:] {
					connect(t, a.h, b.h)
				}
			}
			testutil.Eventually(t, 10*time.Second, func() bool {
				for _, a := range nodes {
					for _, b := range nodes {
						if a != b && !knows(a.svc, b.h.ID()) {
							return false
						}
					}
				}
				return true
			}, "the 4 nodes did not converge")

			a := nodes[0]
			cut := nodes[1:3]
			for _, b := range cut {
				if err := a.h.Network().ClosePeer(b.h.ID()); err != nil {
					t.Fatalf("ClosePeer: %v", err)
				}
			}
			reconnected := func() bool {
				for _, b := range cut {
					if a.h.Network().Connectedness(b.h.ID()) != network.Connected {
						return false
					}
				}
				return true
			}
			if tc.redial {
				took := testutil.Eventually(t, 5*time.Second, reconnected, "A did not reconnect to the two peers it was cut from")
				t.Logf("reconnected after %v", took.Round(time.Millisecond))
				return
			}
			// Two announce intervals (each within ±50 % of 1 s) give the
			// periodic check at least one chance to run.
			testutil.Never(t, 2*discovery.TestParams().AnnounceInterval, 50*time.Millisecond, func() string {
				for _, b := range cut {
					if a.h.Network().Connectedness(b.h.ID()) == network.Connected {
						return fmt.Sprintf("A reconnected to %s with CascadeBelow 0", b.h.ID())
					}
				}
				return ""
			})
		})
	}
}

// TestConnect_JoinCascadeWaitsForSettle checks that a new node does not
// dial the peers its join sync brought until SettleDelay after its start,
// and dials them then. Heartbeats, and so the periodic top-up, are a
// minute apart, and the old nodes never dial: only the settle step can.
func TestConnect_JoinCascadeWaitsForSettle(t *testing.T) {
	slow := func(p *discovery.Params) {
		p.Catalog.PurgeAfter = 10 * time.Minute
		p.AnnounceInterval = time.Minute
		p.AntiEntropyInterval = 0
	}
	for _, tc := range []struct {
		name   string
		settle time.Duration
	}{{"settle in 1 min", time.Minute}, {"settle in 300 ms", 300 * time.Millisecond}} {
		t.Run(tc.name, func(t *testing.T) {
			nw := catalog.IDFromString("discovery-test/settle/" + tc.name)
			old := withParams(func(p *discovery.Params) { slow(p); p.CascadeBelow = 0 })
			a, b := newNode(t, nw, old), newNode(t, nw, old)
			connect(t, a.h, b.h)
			testutil.Eventually(t, 10*time.Second, func() bool { return knows(a.svc, b.h.ID()) }, "A does not know B")

			c := newNode(t, nw, withParams(func(p *discovery.Params) { slow(p); p.SettleDelay = tc.settle }))
			connect(t, c.h, a.h)
			testutil.Eventually(t, 10*time.Second, func() bool { return knows(c.svc, b.h.ID()) }, "C's join sync did not bring B")
			dialed := func() bool { return c.h.Network().Connectedness(b.h.ID()) == network.Connected }
			if tc.settle > time.Second {
				testutil.Never(t, time.Second, 20*time.Millisecond, func() string {
					if dialed() {
						return "C dialed B, a peer of its join sync, before the join settled"
					}
					return ""
				})
				return
			}
			testutil.Eventually(t, 5*time.Second, dialed, "C did not dial B once the join settled")
		})
	}
}

// TestConnect_SettleWaitsWhileTheCatalogGrows checks that a new node puts
// its settle step off while peers new to its catalog keep coming (a join
// wave): with SettleDelay 2 s and a new peer every 100 ms, C has not dialed
// B, a peer of its join sync, at 3 s; once the peers stop coming it
// settles (half of SettleDelay later) and dials B.
func TestConnect_SettleWaitsWhileTheCatalogGrows(t *testing.T) {
	t.Parallel()
	slow := func(p *discovery.Params) {
		p.Catalog.PurgeAfter = 10 * time.Minute
		p.AnnounceInterval = time.Minute
		p.AntiEntropyInterval = 0
	}
	nw := catalog.IDFromString("discovery-test/settle-grows")
	old := withParams(func(p *discovery.Params) { slow(p); p.CascadeBelow = 0 })
	a, b := newNode(t, nw, old), newNode(t, nw, old)
	connect(t, a.h, b.h)
	testutil.Eventually(t, 10*time.Second, func() bool { return knows(a.svc, b.h.ID()) }, "A does not know B")

	const settle = 2 * time.Second
	c := newNode(t, nw, withParams(func(p *discovery.Params) { slow(p); p.SettleDelay = settle }))
	start := time.Now()
	connect(t, c.h, a.h)
	// Before any other peer: a sync with an empty catalog is a join sync,
	// whose peers wait for settle.
	testutil.Eventually(t, 10*time.Second, func() bool { return knows(c.svc, b.h.ID()) }, "C's join sync did not bring B")
	// New peers, without addresses (never dialed), every 100 ms: a
	// half of SettleDelay never passes without one.
	stop, fed := make(chan struct{}), make(chan struct{})
	var once sync.Once
	halt := func() { once.Do(func() { close(stop); <-fed }) }
	t.Cleanup(halt)
	go func() {
		defer close(fed)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			sk, _, err := crypto.GenerateEd25519Key(rand.Reader)
			if err != nil {
				t.Error(err)
				return
			}
			if _, err := c.svc.Merge(sealEntry(t, sk, nw, catalog.NewVersion(time.Now()))); err != nil {
				t.Error("Merge:", err)
				return
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	dialed := func() bool { return c.h.Network().Connectedness(b.h.ID()) == network.Connected }
	if until := 3*time.Second - time.Since(start); until > 0 {
		testutil.Never(t, until, 20*time.Millisecond, func() string {
			if dialed() {
				return "C dialed B, a peer of its join sync, while new peers kept coming"
			}
			return ""
		})
	}
	halt()
	testutil.Eventually(t, 5*time.Second, dialed, "C did not dial B once no new peer came")
}

// TestConnect_ClosedConnectionRedialedOnce checks that when a connection
// between two nodes closes, they get one connection back, not two: both
// see the close at once and top up, and without a rule both would dial
// the other (each dial then succeeds, as libp2p keeps a connection per
// direction). Two nodes, so that each is the other's only candidate.
func TestConnect_ClosedConnectionRedialedOnce(t *testing.T) {
	nw := catalog.IDFromString("discovery-test/connect/redial-once")
	a, b := newNode(t, nw), newNode(t, nw)
	connect(t, a.h, b.h)
	testutil.Eventually(t, 10*time.Second, func() bool { return knows(a.svc, b.h.ID()) && knows(b.svc, a.h.ID()) }, "the two nodes did not learn each other")
	conns := func() int { return len(a.h.Network().ConnsToPeer(b.h.ID())) }
	for round := range 4 {
		// Close from either side in turn: the rule must not depend on who
		// saw the close first.
		closer, peer := a, b
		if round%2 == 1 {
			closer, peer = b, a
		}
		if err := closer.h.Network().ClosePeer(peer.h.ID()); err != nil {
			t.Fatalf("ClosePeer: %v", err)
		}
		testutil.Eventually(t, 5*time.Second, func() bool { return conns() > 0 }, "round %d: no connection came back", round)
		// Both dials, if both sides dial, complete within a few ms of each
		// other on loopback; half a second covers a loaded machine.
		testutil.Never(t, 500*time.Millisecond, 10*time.Millisecond, func() string {
			if n := conns(); n > 1 {
				return fmt.Sprintf("round %d: %d connections between the two nodes", round, n)
			}
			return ""
		})
	}
}
