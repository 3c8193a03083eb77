package node_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p/core/protocol"
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

// With only the host borrowed, the gossipsub router and the DHT the node
// built leave no handler on the host after Close; the host's own remain.
func TestPlugin_BorrowedHostAloneLeftClean(t *testing.T) {
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay(), libp2p.DisableMetrics())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	before := slices.Clone(h.Mux().Protocols())
	n, err := node.New("plugin-host", node.WithHost(h), node.WithFastProfile(), node.WithLogger(testutil.Logger()))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(h.Mux().Protocols(), func(p protocol.ID) bool { return strings.HasPrefix(string(p), "/meshsub/") }) {
		t.Fatal("the node built no gossipsub router on the borrowed host")
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	for _, p := range h.Mux().Protocols() {
		if !slices.Contains(before, p) {
			t.Errorf("handler %s left on the borrowed host after Close", p)
		}
	}
	for _, p := range before {
		if !slices.Contains(h.Mux().Protocols(), p) {
			t.Errorf("the host's own handler %s was removed", p)
		}
	}
}

// TestPlugin_FailedNewLeavesNoHandlers: a New that fails after the
// gossipsub router registered its handlers on the borrowed host (here:
// the DHT refuses a prefix without validators) removes them. It left
// /meshsub/ and /floodsub/ behind (found by the node review).
func TestPlugin_FailedNewLeavesNoHandlers(t *testing.T) {
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay(), libp2p.DisableMetrics())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	before := slices.Clone(h.Mux().Protocols())
	if n, err := node.New("plugin-fail", node.WithHost(h), node.WithFastProfile(), node.WithLogger(testutil.Logger()),
		node.WithDHTOptions(dht.ProtocolPrefix("/ipfs"))); err == nil {
		_ = n.Close()
		t.Fatal("New with a DHT prefix lacking validators succeeded")
	}
	if left := slices.DeleteFunc(h.Mux().Protocols(), func(p protocol.ID) bool { return slices.Contains(before, p) }); len(left) > 0 {
		t.Fatalf("the failed New left handlers on the borrowed host: %v", left)
	}
}

// TestPlugin_SecondDHTOnHostRefused: a node that would build its own DHT
// on a host whose DHT protocol another node's DHT serves is refused. Its
// DHT took that handler over, and the first node's Close removed it from
// under the second's (found by the node review). The first node keeps
// its handler until it closes.
func TestPlugin_SecondDHTOnHostRefused(t *testing.T) {
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay(), libp2p.DisableMetrics())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	kad := protocol.ID(discovery.DHTProtocolPrefix + "/kad/1.0.0")
	a, err := node.New("plugin-dht-a", node.WithHost(h), node.WithFastProfile(), node.WithLogger(testutil.Logger()))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if a.DHT() == nil || !slices.Contains(h.Mux().Protocols(), kad) {
		t.Fatalf("node a serves no %s: %v", kad, h.Mux().Protocols())
	}
	b, err := node.New("plugin-dht-b", node.WithHost(h), node.WithFastProfile(), node.WithLogger(testutil.Logger()))
	if err == nil {
		_ = b.Close()
		t.Fatal("a second node building its own DHT on the host was accepted")
	}
	if !strings.Contains(err.Error(), "WithDHT") {
		t.Errorf("New: %v, want the hint to lend the DHT", err)
	}
	if !slices.Contains(h.Mux().Protocols(), kad) {
		t.Fatal("the refused node removed node a's DHT handler")
	}
	_ = a.Close()
	if slices.Contains(h.Mux().Protocols(), kad) {
		t.Error("node a's Close left its DHT handler")
	}
}
