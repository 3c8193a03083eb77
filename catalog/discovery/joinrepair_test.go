package discovery_test

import (
	"sync"
	"testing"
	"time"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/catalog/discovery"
	"github.com/mosaik-go/mosaik/internal/testutil"
)

// TestJoinRepair_NewcomersConvergeWithoutSettle: newcomers joining one
// bootstrap peer at once learn each other through the bootstrap's join
// syncs, its relays and its join repairs alone. Everything else that
// would heal a missed relay is put off past the test (the repair sync at
// SettleDelay, heartbeats, join announcements, anti-entropy, the
// cascade): an entry the bootstrap merged after a newcomer's join sync
// but before the newcomer's subscription reached it (the gap of
// joinrepair.go) would stay missing without the repair.
func TestJoinRepair_NewcomersConvergeWithoutSettle(t *testing.T) {
	slow := withParams(func(p *discovery.Params) {
		p.Catalog.PurgeAfter = 10 * time.Minute
		p.AnnounceInterval = time.Minute
		p.JoinAnnounceDelay = time.Minute
		p.SettleDelay = time.Minute
		p.AntiEntropyInterval = 0
		p.CascadeBelow = 0
	})
	nw := catalog.IDFromString("discovery-test/join-repair")
	boot := newNode(t, nw, slow)
	const k = 16
	nodes := make([]*testNode, k)
	for i := range nodes {
		nodes[i] = newNode(t, nw, slow)
	}
	// All at once: the bootstrap's relays of some newcomers' entries go
	// out while others are still subscribing. On the build before the
	// repair this test failed in about one run of three (whether a gap
	// opens is a race); with it, a gap is repaired whenever it opens.
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Go(func() { connect(t, n.h, boot.h) })
	}
	wg.Wait()
	all := append([]*testNode{boot}, nodes...)
	testutil.Eventually(t, testutil.Scale(10*time.Second), func() bool {
		for _, n := range all {
			if n.svc.Catalog().Len() != len(all)-1 {
				return false
			}
		}
		return true
	}, "the newcomers did not learn each other without the settle repair")
}
