package node_test

import (
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/node"
)

var loopback = node.WithListenAddrs("/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1")

// startNode starts a fast-profile node on 127.0.0.1 and closes it at the
// end of the test.
func startNode(t testing.TB, network string, opts ...node.Option) *node.Node {
	t.Helper()
	n, err := node.New(network, append([]node.Option{loopback, node.WithFastProfile(), node.WithLogger(testutil.Logger())}, opts...)...)
	if err != nil {
		t.Fatalf("node.New: %v", err)
	}
	t.Cleanup(func() { _ = n.Close() })
	return n
}

func bootstrapOf(n *node.Node) node.Option { return node.WithBootstrapPeers(n.AddrInfo()) }

// knows reports whether every node's catalog holds every other node.
func allKnowAll(nodes []*node.Node) bool {
	for _, a := range nodes {
		for _, b := range nodes {
			if a == b {
				continue
			}
			if _, ok := a.Catalog().Get(b.ID()); !ok {
				return false
			}
		}
	}
	return true
}

func ids(nodes []*node.Node) []peer.ID {
	out := make([]peer.ID, len(nodes))
	for i, n := range nodes {
		out[i] = n.ID()
	}
	return out
}
