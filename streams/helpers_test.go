package streams_test

import (
	"context"
	"testing"
	"time"

	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/node"
	"github.com/mosaik-go/mosaik/streams"
)

// Tests that only wait on catalog convergence, subscriptions and condition
// edges, each with nodes of its own (bootstrapped from each other, no
// mDNS), call t.Parallel: two run at a time (go test's -parallel is
// GOMAXPROCS), so one's waiting overlaps the other's. Tests that measure
// time, goroutines, allocations or rates, or count log lines, stay serial.

// startNode starts a test-profile node on 127.0.0.1 (TCP) and closes it at
// the end of the test.
func startNode(t testing.TB, opts ...node.Option) *node.Node {
	t.Helper()
	n, err := node.New("streams-test", append([]node.Option{
		node.WithListenAddrs("/ip4/127.0.0.1/tcp/0"), node.WithFastProfile(), node.WithLogger(testutil.Logger()),
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

// testCtx returns a context that ends after Scale(d) or with the test.
func testCtx(t testing.TB, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Scale(d))
	t.Cleanup(cancel)
	return ctx
}

// mustProducer creates a producer and closes it at the end of the test
// (before the nodes, which were created earlier: cleanups run LIFO).
func mustProducer[T any](t testing.TB, n *node.Node, name string, opts ...streams.ProducerOption) *streams.Producer[T] {
	t.Helper()
	p, err := streams.NewProducer[T](n.Streams(), name, opts...)
	if err != nil {
		t.Fatalf("NewProducer(%q): %v", name, err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// mustConsumer creates a consumer and closes it at the end of the test.
func mustConsumer[T any](t testing.TB, n *node.Node, name string, opts ...streams.ConsumerOption) *streams.Consumer[T] {
	t.Helper()
	c, err := streams.NewConsumer[T](n.Streams(), name, opts...)
	if err != nil {
		t.Fatalf("NewConsumer(%q): %v", name, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}
