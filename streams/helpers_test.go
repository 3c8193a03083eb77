package streams_test

import (
	"testing"
	"time"

	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/node"
)

// startNode starts a test-profile node on 127.0.0.1 (TCP) and closes it at
// the end of the test.
func startNode(t testing.TB, opts ...node.Option) *node.Node {
	t.Helper()
	n, err := node.New("streams-test", append([]node.Option{
		node.WithListenAddrs("/ip4/127.0.0.1/tcp/0"), node.WithTestProfile(), node.WithLogger(testutil.Logger()),
	}, opts...)...)
	if err != nil {
		t.Fatalf("node.New: %v", err)
	}
	t.Cleanup(func() { _ = n.Close() })
	return n
}

// connected starts n nodes, all bootstrapped from the first, and waits
// until every catalog holds every node.
func connected(t testing.TB, n int, opts ...node.Option) []*node.Node {
	t.Helper()
	nodes := []*node.Node{startNode(t, opts...)}
	for range n - 1 {
		nodes = append(nodes, startNode(t, append(opts, node.WithBootstrapPeers(nodes[0].AddrInfo()))...))
	}
	testutil.Eventually(t, 5*time.Second, func() bool {
		for _, a := range nodes {
			for _, b := range nodes {
				if _, ok := a.Catalog().Get(b.ID()); !ok {
					return false
				}
			}
		}
		return true
	}, "nodes did not converge")
	return nodes
}
