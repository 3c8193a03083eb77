package collections_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/node"
)

const testNetwork = "collections-test"

var loopback = node.WithListenAddrs("/ip4/127.0.0.1/tcp/0")

// startNode starts a fast-profile node on 127.0.0.1, closed at test end.
func startNode(t testing.TB, opts ...node.Option) *node.Node {
	t.Helper()
	n, err := node.New(testNetwork, append([]node.Option{loopback, node.WithFastProfile(), node.WithLogger(testutil.Logger())}, opts...)...)
	if err != nil {
		t.Fatalf("node.New: %v", err)
	}
	t.Cleanup(func() { _ = n.Close() })
	return n
}

// startNodes starts n nodes, each bootstrapping from the first.
func startNodes(t testing.TB, n int) []*node.Node {
	t.Helper()
	first := startNode(t)
	out := []*node.Node{first}
	for range n - 1 {
		out = append(out, startNode(t, node.WithBootstrapPeers(first.AddrInfo())))
	}
	return out
}

func tctx(t testing.TB, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Scale(d))
	t.Cleanup(cancel)
	return ctx
}

var storeSeq atomic.Uint64

// freshName returns a collection name no other test uses, so subtests can
// share running nodes.
func freshName(t testing.TB) string {
	return fmt.Sprintf("%s-%d", t.Name(), storeSeq.Add(1))
}
