package node_test

import (
	"context"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/host"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/catalog/discovery"
	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/node"
)

// plainHost is a libp2p host the test owns, with gossipsub and a mosaik DHT.
type plainHost struct {
	h    host.Host
	ps   *pubsub.PubSub
	dht  *dht.IpfsDHT
	stop context.CancelFunc
}

func newPlainHost(t *testing.T) *plainHost {
	t.Helper()
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay(), libp2p.DisableMetrics())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	gp := pubsub.DefaultGossipSubParams()
	gp.HeartbeatInterval = 100 * time.Millisecond
	ps, err := pubsub.NewGossipSub(ctx, h, append(discovery.GossipSubOptions(), pubsub.WithGossipSubParams(gp))...)
	if err != nil {
		t.Fatal(err)
	}
	d, err := dht.New(h, discovery.DHTOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	p := &plainHost{h: h, ps: ps, dht: d, stop: cancel}
	t.Cleanup(func() { _ = d.Close(); cancel(); _ = h.Close() })
	return p
}

func (p *plainHost) attach(t *testing.T, network string, opts ...node.Option) *node.Node {
	t.Helper()
	n, err := node.New(network, append([]node.Option{node.WithHost(p.h), node.WithPubSub(p.ps), node.WithDHT(p.dht),
		node.WithFastProfile(), node.WithLogger(testutil.Logger())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	return n
}

func TestIsolation_TwoNetworksShareHosts(t *testing.T) {
	hosts := []*plainHost{newPlainHost(t), newPlainHost(t), newPlainHost(t)}
	var netA, netB []*node.Node
	for _, p := range hosts {
		netA = append(netA, p.attach(t, "net-a", node.WithTags("a")))
		netB = append(netB, p.attach(t, "net-b", node.WithTags("b")))
	}
	// A fourth host joins only network A.
	onlyA := startNode(t, "net-a", node.WithTags("a"))
	netA = append(netA, onlyA)
	ctx := context.Background()
	for _, p := range hosts[1:] {
		if err := p.h.Connect(ctx, hosts[0].h.Peerstore().PeerInfo(hosts[0].h.ID())); err != nil {
			t.Fatal(err)
		}
	}
	if err := onlyA.Connect(ctx, hosts[0].h.Peerstore().PeerInfo(hosts[0].h.ID())); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return allKnowAll(netA) && allKnowAll(netB) }, "networks did not converge")

	a, b := catalog.IDFromString("net-a"), catalog.IDFromString("net-b")
	check := func(nodes []*node.Node, nw catalog.NetworkID, tag string, want int) {
		for _, n := range nodes {
			snap := n.Catalog()
			if snap.Len() != want {
				t.Errorf("%s catalog on %s has %d peers, want %d", n.NetworkName(), n.ID(), snap.Len(), want)
			}
			for e := range snap.All() {
				if e.Entry.Network != nw || !e.Entry.HasTag(catalog.IDFromString(tag)) {
					t.Errorf("%s catalog holds a foreign entry of %s (network %s)", n.NetworkName(), e.Entry.PeerID, e.Entry.Network.Short())
				}
			}
		}
	}
	// Hold for a few heartbeats: gossip must not leak entries across.
	deadline := time.Now().Add(testutil.Scale(time.Second))
	for time.Now().Before(deadline) {
		check(netA, a, "a", 3)
		check(netB, b, "b", 2)
		if t.Failed() {
			return
		}
		time.Sleep(100 * time.Millisecond) // sampling interval of a "stays isolated" check
	}
	if _, ok := netB[0].Catalog().Get(onlyA.ID()); ok {
		t.Error("network B knows a node that joined only A")
	}
}
