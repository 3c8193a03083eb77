package node_test

import (
	"context"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/node"
)

// cluster starts a bootstrap node and n-1 nodes that know only its address,
// and waits until all catalogs are complete.
func cluster(t *testing.T, network string, n int) []*node.Node {
	t.Helper()
	boot := startNode(t, network)
	nodes := []*node.Node{boot}
	for range n - 1 {
		nodes = append(nodes, startNode(t, network, bootstrapOf(boot)))
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return allKnowAll(nodes) }, "cluster of %d did not converge", n)
	return nodes
}

func TestChanges_TagChangeReachesEveryNode(t *testing.T) {
	nodes := cluster(t, "tags", 6)
	changer := nodes[3]
	tag := catalog.IDFromString("validator")
	if err := changer.SetTags("validator", "eu"); err != nil {
		t.Fatal(err)
	}
	took := testutil.Eventually(t, 2*time.Second, func() bool {
		for _, n := range nodes {
			if n == changer {
				continue
			}
			e, ok := n.Catalog().Get(changer.ID())
			if !ok || !e.Entry.HasTag(tag) {
				return false
			}
		}
		return true
	}, "tag change did not reach every node")
	t.Logf("tag change reached %d nodes in %v", len(nodes)-1, took)

	if err := changer.RemoveTags("validator"); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 2*time.Second, func() bool {
		for _, n := range nodes {
			if e, ok := n.Catalog().Get(changer.ID()); !ok || e.Entry.HasTag(tag) || !e.Entry.HasTag(catalog.IDFromString("eu")) {
				return false
			}
		}
		return true
	}, "tag removal did not reach every node")
}

func TestChanges_ClosedNodeLeavesEveryCatalog(t *testing.T) {
	nodes := cluster(t, "depart", 6)
	leaver := nodes[4]
	// Departures travel on gossip, like every announcement; wait until the
	// leaver's gossip reaches everyone (each catalog holds a heartbeat
	// newer than the entry first learned by sync).
	first := map[*node.Node]catalog.Version{}
	for _, n := range nodes {
		if e, ok := n.Catalog().Get(leaver.ID()); ok {
			first[n] = e.Entry.Version
		}
	}
	testutil.Eventually(t, 5*time.Second, func() bool {
		for _, n := range nodes {
			if e, ok := n.Catalog().Get(leaver.ID()); n != leaver && (!ok || e.Entry.Version.Compare(first[n]) <= 0) {
				return false
			}
		}
		return true
	}, "leaver's heartbeats do not reach every node")
	sub := nodes[1].Discovery().Subscribe()
	defer sub.Close()
	if err := leaver.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	rest := append(append([]*node.Node{}, nodes[:4]...), nodes[5:]...)
	took := testutil.Eventually(t, 2*time.Second, func() bool {
		for _, n := range rest {
			if _, ok := n.Catalog().Get(leaver.ID()); ok {
				return false
			}
		}
		return true
	}, "departed node still in some catalog")
	t.Logf("departure reached %d nodes in %v", len(rest), took)
	// The departure was acted on as a notice, well before purge_after.
	if took >= discoveryPurge() {
		t.Errorf("departure took %v, not faster than purge (%v)", took, discoveryPurge())
	}
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Scale(2*time.Second))
	defer cancel()
	for {
		ev, err := sub.Next(ctx)
		if err != nil {
			t.Fatalf("no PeerDeparted event: %v", err)
		}
		if ev.Kind == catalog.PeerDeparted && ev.Peer == leaver.ID() {
			if ev.Purged {
				t.Errorf("departure reported as purge")
			}
			break
		}
	}
}

func discoveryPurge() time.Duration { return catalog.TestParams().PurgeAfter }

func TestChanges_SilentNodeIsPurgedAndReturns(t *testing.T) {
	key, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	boot := startNode(t, "silent")
	other := startNode(t, "silent", bootstrapOf(boot))
	victim := startNode(t, "silent", bootstrapOf(boot), node.WithIdentity(key))
	nodes := []*node.Node{boot, other, victim}
	testutil.Eventually(t, 5*time.Second, func() bool { return allKnowAll(nodes) }, "no convergence")

	// Crash: the host dies without a departure notice.
	crashed := time.Now()
	if err := victim.Host().Close(); err != nil {
		t.Fatal(err)
	}
	gone := func() bool {
		for _, n := range nodes[:2] {
			if _, ok := n.Catalog().Get(victim.ID()); ok {
				return false
			}
		}
		return true
	}
	// It must stay while fresh: check it is still there just after the crash.
	if gone() {
		t.Fatal("silent node vanished at once, before purge_after")
	}
	testutil.Eventually(t, discoveryPurge()+3*time.Second, gone, "silent node not purged")
	if el := time.Since(crashed); el < discoveryPurge()-time.Second {
		t.Errorf("purged after %v, before purge_after %v", el, discoveryPurge())
	}
	if st := boot.Discovery().Stats(); st.Purged == 0 {
		t.Errorf("boot stats count no purge: %+v", st)
	}

	// It comes back when it announces again (a restart with the same key).
	back := startNode(t, "silent", bootstrapOf(boot), node.WithIdentity(key))
	testutil.Eventually(t, 5*time.Second, func() bool { return allKnowAll([]*node.Node{boot, other, back}) }, "restarted node not back")
	e, _ := other.Catalog().Get(back.ID())
	if e.Entry.Version.StartMS < crashed.UnixMilli() {
		t.Errorf("catalog holds the old run's entry %v", e.Entry.Version)
	}
}
