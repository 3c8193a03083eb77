package node_test

import (
	"context"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	drouting "github.com/libp2p/go-libp2p/p2p/discovery/routing"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/node"
)

// plainDHT starts a libp2p host on 127.0.0.1 with a standard kad-dht in
// the given mode; it knows nothing of mosaik.
func plainDHT(t *testing.T, mode dht.ModeOpt, boot ...peer.AddrInfo) (host.Host, *dht.IpfsDHT) {
	t.Helper()
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay(), libp2p.DisableMetrics())
	if err != nil {
		t.Fatal(err)
	}
	opts := []dht.Option{dht.Mode(mode)}
	if len(boot) > 0 {
		opts = append(opts, dht.BootstrapPeers(boot...))
	}
	d, err := dht.New(h, opts...)
	if err != nil {
		_ = h.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close(); _ = h.Close() })
	return h, d
}

// rendezvousDHT starts n plain DHT servers connected in a star, with
// refreshed routing tables, and returns their addresses.
func rendezvousDHT(t *testing.T, n int) []peer.AddrInfo {
	t.Helper()
	var infos []peer.AddrInfo
	var dhts []*dht.IpfsDHT
	for range n {
		h, d := plainDHT(t, dht.ModeServer)
		infos = append(infos, peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()})
		dhts = append(dhts, d)
		if len(dhts) > 1 {
			ctx, cancel := context.WithTimeout(context.Background(), testutil.Scale(5*time.Second))
			err := h.Connect(ctx, infos[0])
			cancel()
			if err != nil {
				t.Fatalf("connect DHT node: %v", err)
			}
		}
	}
	testutil.Eventually(t, 5*time.Second, func() bool {
		return dhts[0].RoutingTable().Size() == n-1
	}, "the rendezvous DHT hub did not see every node")
	for _, d := range dhts {
		if err := <-d.RefreshRoutingTable(); err != nil {
			t.Logf("refresh: %v", err)
		}
	}
	return infos
}

func TestRendezvous_NodesFindEachOther(t *testing.T) {
	boot := rendezvousDHT(t, 6)

	// A raw host that advertises our rendezvous key but runs no mosaik.
	impostor, impDHT := plainDHT(t, dht.ModeClient, boot...)
	ns := node.RendezvousNamespace(catalog.IDFromString("rv"))
	testutil.Eventually(t, 10*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), testutil.Scale(5*time.Second))
		defer cancel()
		_, err := drouting.NewRoutingDiscovery(impDHT).Advertise(ctx, ns)
		return err == nil
	}, "the impostor could not advertise")

	// A node of another network on the same rendezvous DHT.
	other := startNode(t, "rv-other", node.WithoutDHT(), node.WithRendezvous(boot...))

	start := time.Now()
	var nodes []*node.Node
	for range 4 {
		nodes = append(nodes, startNode(t, "rv", node.WithoutDHT(), node.WithRendezvous(boot...)))
	}
	testutil.Eventually(t, 15*time.Second, func() bool { return allKnowAll(nodes) },
		"the catalogs did not converge through the rendezvous DHT")
	t.Logf("4 nodes converged through the rendezvous DHT in %v", time.Since(start).Round(time.Millisecond))

	// The impostor was found and dialled (it advertises our key) ...
	testutil.Eventually(t, 10*time.Second, func() bool {
		for _, n := range nodes {
			if n.Host().Network().Connectedness(impostor.ID()) == network.Connected {
				return true
			}
		}
		return false
	}, "no node dialled the peer advertising the rendezvous key")

	// ... and for a few more poll rounds (1 s ± 50 % each) we watch that
	// it never enters a catalog, and that the node of the other network is
	// never even connected: mosaik nodes are DHT clients, so no DHT query
	// walks through them, and a different network has a different
	// rendezvous key. The sleep is the observation window itself.
	testutil.Never(t, 3*time.Second, 100*time.Millisecond, func() string {
		for _, n := range nodes {
			if _, ok := n.Catalog().Get(impostor.ID()); ok {
				return "a peer without a signed entry entered the catalog"
			}
			if _, ok := n.Catalog().Get(other.ID()); ok {
				return "a node of another network entered the catalog"
			}
			if c := n.Host().Network().Connectedness(other.ID()); c == network.Connected {
				return "a node of another network was connected"
			}
		}
		return ""
	})
	if other.Catalog().Len() != 0 {
		t.Fatalf("the other network's catalog holds %d peers, want 0", other.Catalog().Len())
	}
}
