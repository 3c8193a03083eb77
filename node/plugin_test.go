package node_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/p2p/protocol/ping"

	"github.com/mosaik-go/mosaik/catalog/discovery"
	"github.com/mosaik-go/mosaik/groups"
	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/node"
)

func TestPlugin_BorrowedHostSurvivesClose(t *testing.T) {
	p := newPlainHost(t)
	n := p.attach(t, "plugin")
	other := startNode(t, "plugin", node.WithBootstrapPeers(n.AddrInfo()))
	testutil.Eventually(t, 5*time.Second, func() bool { return allKnowAll([]*node.Node{n, other}) }, "no convergence")

	if n.Host() != p.h || n.PubSub() != p.ps || n.DHT() != p.dht {
		t.Fatal("node did not use the borrowed components")
	}
	if err := n.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// The host still works: it pings a peer and its own protocols remain.
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Scale(5*time.Second))
	defer cancel()
	res := <-ping.Ping(ctx, p.h, other.ID())
	if res.Error != nil {
		t.Fatalf("borrowed host cannot ping after mosaik closed: %v", res.Error)
	}
	if slices.Contains(p.h.Mux().Protocols(), discovery.SyncProtocol(n.Network())) {
		t.Error("sync handler still registered after Close")
	}
	if slices.Contains(p.h.Mux().Protocols(), groups.ProtocolID(n.Network())) {
		t.Error("groups handler still registered after Close")
	}
	// pubsub and the DHT are still usable.
	if _, err := p.ps.Join("after-mosaik"); err != nil {
		t.Errorf("borrowed pubsub unusable: %v", err)
	}
	if _, err := p.dht.FindPeer(ctx, other.ID()); err != nil {
		t.Errorf("borrowed DHT unusable: %v", err)
	}
	// Mosaik can attach again to the same host.
	again := p.attach(t, "plugin")
	testutil.Eventually(t, 5*time.Second, func() bool { return allKnowAll([]*node.Node{again, other}) }, "re-attached node did not converge")
}
