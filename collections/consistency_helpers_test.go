package collections_test

import (
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/collections"
	"github.com/mosaik-go/mosaik/groups"
	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/node"
)

// fastGroup gives a collection the groups test timings (elections in a
// few hundred milliseconds); every replica of a collection must use it.
var fastGroup = collections.WithGroupOptions(groups.WithParams(groups.TestParams()))

// cuts is a partition made with the bond layer's fault hook: frames
// between cut pairs are dropped (heartbeats too, so those bonds end).
type cuts struct {
	mu  sync.Mutex
	cut map[[2]peer.ID]bool
}

func newCuts() *cuts { return &cuts{cut: map[[2]peer.ID]bool{}} }

func (c *cuts) hook(from, to peer.ID, _ catalog.ID, _ byte) groups.Fault {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cut[[2]peer.ID{from, to}] {
		return groups.Fault{Action: groups.FaultDrop}
	}
	return groups.Fault{}
}

// isolate cuts p off from every peer in rest.
func (c *cuts) isolate(p peer.ID, rest []peer.ID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, q := range rest {
		c.cut[[2]peer.ID{p, q}] = true
		c.cut[[2]peer.ID{q, p}] = true
	}
}

func (c *cuts) heal() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.cut)
}

// mapCluster is one map with a writer replica on each of n nodes.
type mapCluster[V any] struct {
	nodes []*node.Node
	maps  []*collections.Map[string, V]
}

// startMapCluster starts n nodes (with opts), opens the map called name as
// a writer on each, and waits until every replica sees n voters.
func startMapCluster[V any](t *testing.T, n int, name string, opts ...node.Option) *mapCluster[V] {
	t.Helper()
	c := &mapCluster[V]{}
	for i := range n {
		o := append([]node.Option(nil), opts...)
		if i > 0 {
			o = append(o, node.WithBootstrapPeers(c.nodes[0].AddrInfo()))
		}
		nd := startNode(t, o...)
		m, err := collections.NewMap[string, V](nd, name, fastGroup)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = m.Close() })
		c.nodes, c.maps = append(c.nodes, nd), append(c.maps, m)
	}
	testutil.Eventually(t, 30*time.Second, func() bool {
		for i := range c.nodes {
			if c.voters(i) != n {
				return false
			}
		}
		return true
	}, "%d voters on every replica", n)
	return c
}

// voters is the number of voters replica i knows.
func (c *mapCluster[V]) voters(i int) int {
	id := c.maps[i].GroupID()
	for _, s := range c.nodes[i].Groups().Status() {
		if s.ID == id {
			return s.Voters
		}
	}
	return 0
}

// leader returns the index of the replica that leads, or -1.
func (c *mapCluster[V]) leader() int {
	for i, m := range c.maps {
		if p, ok := m.Leader(); ok && p == c.nodes[i].ID() {
			return i
		}
	}
	return -1
}
