package groups_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/groups"
	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/node"
)

// These tests run the consensus core over real bonds: node-built hosts on
// 127.0.0.1 with the test profile, the groups service the node wires, and
// TestParams timers.

const realNetwork = "groups-realnet-test"

var loopback = node.WithListenAddrs("/ip4/127.0.0.1/tcp/0")

// startNode starts a test-profile node on 127.0.0.1, closed at test end
// (Close is idempotent, so a test may close it earlier).
func startNode(t testing.TB, opts ...node.Option) *node.Node {
	t.Helper()
	n, err := node.New(realNetwork, append([]node.Option{loopback, node.WithFastProfile(), node.WithLogger(testutil.Logger())}, opts...)...)
	if err != nil {
		t.Fatalf("node.New: %v", err)
	}
	t.Cleanup(func() { _ = n.Close() })
	return n
}

func bootstrapOf(n *node.Node) node.Option { return node.WithBootstrapPeers(n.AddrInfo()) }

func tctx(t testing.TB, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Scale(d))
	t.Cleanup(cancel)
	return ctx
}

// Port of mosaik's feed smoke test over real bonds: a lone node elects
// itself; a second node joins, follows it, and feeds from the follower get
// increasing indexes that commit on both.
func TestRealNet_FeedSmoke(t *testing.T) {
	n0 := startNode(t)
	g0 := groups.JoinCounter(t, n0.Groups())
	if err := g0.When().IsLeader(tctx(t, 10*time.Second)); err != nil {
		t.Fatal("n0 alone did not elect itself:", err)
	}
	if err := g0.When().Online(tctx(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	bonds := g0.Bonds()
	n1 := startNode(t, bootstrapOf(n0))
	g1 := groups.JoinCounter(t, n1.Groups())
	select {
	case <-bonds.Changed:
	case <-tctx(t, 10*time.Second).Done():
		t.Fatal("no bond change notified")
	}
	if b := g0.Bonds().Peers; len(b) != 1 || b[0] != n1.ID() {
		t.Fatalf("bonds %v, want n1", b)
	}
	if err := g1.When().LeaderIs(tctx(t, 10*time.Second), n0.ID()); err != nil {
		t.Fatal("n1 does not follow n0:", err)
	}
	if g1.IsLeader() {
		t.Fatal("n1 is leader")
	}
	i1, err := g1.Feed(tctx(t, 5*time.Second), 1)
	if err != nil {
		t.Fatal(err)
	}
	i2, err := g1.Feed(tctx(t, 5*time.Second), 2)
	if err != nil {
		t.Fatal(err)
	}
	r, err := g1.FeedMany(tctx(t, 5*time.Second), []int64{3, 4, 5})
	if err != nil {
		t.Fatal(err)
	}
	// mosaik's log holds only commands (1, 2, 3..5); ours also holds the
	// epoch entry and configuration changes, so only the order is fixed.
	if !(i1 < i2 && i2 < r.First && r.Last == r.First+2) {
		t.Fatalf("indexes not increasing: %d %d %v", i1, i2, r)
	}
	for _, g := range []*groups.CounterGroup{g0, g1} {
		if err := g.When().Committed(tctx(t, 10*time.Second), r.Last); err != nil {
			t.Fatal(err)
		}
		if g.Committed() < r.Last {
			t.Fatalf("committed %d < %d", g.Committed(), r.Last)
		}
		if v := groups.WeakSum(t, g); v != 15 {
			t.Fatalf("weak query = %d, want 15", v)
		}
	}
}

// startCluster starts n nodes bootstrapped from the first and joins the
// counter group on each, the first alone until it leads; it returns once
// the group has its voters (an odd number, at most 5).
func startCluster(t *testing.T, n int, opts func(i int) []node.Option) ([]*node.Node, []*groups.CounterGroup) {
	t.Helper()
	var nodes []*node.Node
	var gs []*groups.CounterGroup
	for i := range n {
		var o []node.Option
		if opts != nil {
			o = opts(i)
		}
		if i > 0 {
			o = append(o, bootstrapOf(nodes[0]))
		}
		nd := startNode(t, o...)
		g := groups.JoinCounter(t, nd.Groups())
		if i == 0 {
			if err := g.When().IsLeader(tctx(t, 10*time.Second)); err != nil {
				t.Fatal(err)
			}
		}
		nodes, gs = append(nodes, nd), append(gs, g)
	}
	want := min(n, 5)
	if want%2 == 0 {
		want--
	}
	// Every member has left the joint configuration of the last promotion
	// (groups.SettledVoters): the tests cut the leader off next.
	testutil.Eventually(t, 20*time.Second, func() bool {
		for _, g := range gs {
			if groups.SettledVoters(g) != want {
				return false
			}
		}
		return true
	}, "%d voters on every member", want)
	// Every member knows the leader: the first member counts the voters,
	// and the last to join may not have heard from the leader yet (a strong
	// read there fails at once with "no leader").
	for i, g := range gs {
		if err := g.When().Online(tctx(t, 10*time.Second)); err != nil {
			t.Fatalf("member %d never knew a leader: %v", i, err)
		}
	}
	return nodes, gs
}

func leaderOf(gs []*groups.CounterGroup) int {
	for i, g := range gs {
		if g.IsLeader() {
			return i
		}
	}
	return -1
}

// Execute with weak and strong queries on three nodes; closing the leader's
// node elects another, and Execute works from a survivor.
func TestRealNet_ExecuteFailover(t *testing.T) {
	nodes, gs := startCluster(t, 3, nil)
	want := int64(0)
	for i, g := range gs {
		idx, err := g.Execute(tctx(t, 5*time.Second), int64(i+1))
		if err != nil {
			t.Fatalf("execute on n%d: %v", i, err)
		}
		want += int64(i + 1)
		// Execute returns once applied here: a weak read sees it at once.
		if v, at, err := g.Query(tctx(t, 5*time.Second), struct{}{}, groups.Weak); err != nil || v != want || at < idx {
			t.Fatalf("weak on n%d: %d at %d (%v), want %d at >= %d", i, v, at, err, want, idx)
		}
		for j, h := range gs {
			if v, _, err := h.Query(tctx(t, 5*time.Second), struct{}{}, groups.Strong); err != nil || v != want {
				t.Fatalf("strong on n%d: %d (%v), want %d", j, v, err, want)
			}
		}
	}
	l := leaderOf(gs)
	if l < 0 {
		t.Fatal("no leader")
	}
	old := nodes[l].ID()
	if err := nodes[l].Close(); err != nil {
		t.Fatal(err)
	}
	var rest []*groups.CounterGroup
	for i, g := range gs {
		if i != l {
			rest = append(rest, g)
		}
	}
	testutil.Eventually(t, 15*time.Second, func() bool {
		p, ok := rest[0].Leader()
		q, ok1 := rest[1].Leader()
		return ok && ok1 && p == q && p != old
	}, "no new leader after the leader closed")
	for i, g := range rest {
		if _, err := g.Execute(tctx(t, 10*time.Second), 10); err != nil {
			t.Fatalf("execute on survivor %d: %v", i, err)
		}
		want += 10
	}
	for i, g := range rest {
		if v, _, err := g.Query(tctx(t, 5*time.Second), struct{}{}, groups.Strong); err != nil || v != want {
			t.Fatalf("strong on survivor %d: %d (%v), want %d", i, v, err, want)
		}
	}
}

// cuts is a partition made with the bond layer's fault hook: frames
// between cut pairs are dropped (heartbeats too, so those bonds end).
type cuts struct {
	mu  sync.Mutex
	cut map[[2]peer.ID]bool
}

func (c *cuts) hook(from, to peer.ID, _ catalog.ID, _ byte) groups.Fault {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cut[[2]peer.ID{from, to}] {
		return groups.Fault{Action: groups.FaultDrop}
	}
	return groups.Fault{}
}

func (c *cuts) partition(a, b []peer.ID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, x := range a {
		for _, y := range b {
			c.cut[[2]peer.ID{x, y}] = true
			c.cut[[2]peer.ID{y, x}] = true
		}
	}
}

func (c *cuts) heal() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.cut)
}

// The porcupine check of the in-memory tests, on three real nodes, with
// the leader isolated by dropping its frames at the bond layer.
func TestRealNet_LinearizableIsolatedLeader(t *testing.T) {
	c := &cuts{cut: map[[2]peer.ID]bool{}}
	var svcs []*groups.Service
	var first *node.Node
	for i := range 3 {
		o := []node.Option{node.WithGroupsOptions(groups.WithFaultHook(c.hook))}
		if i > 0 {
			o = append(o, bootstrapOf(first))
		}
		nd := startNode(t, o...)
		if i == 0 {
			first = nd
		}
		svcs = append(svcs, nd.Groups())
	}
	groups.RunLinearizableIsolatedLeader(t, svcs, c.partition, c.heal)
}
