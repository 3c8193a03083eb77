package node_test

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/catalog/discovery"
	"github.com/mosaik-go/mosaik/groups"
	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/node"
)

func TestDHT_FindProducerWithoutGossipOrSync(t *testing.T) {
	stream := catalog.IDFromString("prices")
	boot := startNode(t, "dht")
	producer := startNode(t, "dht", bootstrapOf(boot), node.WithEntry(func(e *catalog.Entry) {
		e.Streams = append(e.Streams, stream)
	}))
	// The seeker hears neither gossip nor catalog syncs: only the DHT.
	p := discovery.TestParams()
	p.DisableGossip, p.DisableSync = true, true
	seeker := startNode(t, "dht", bootstrapOf(boot), node.WithDiscoveryParams(p))

	if seeker.Catalog().Len() != 0 {
		t.Fatalf("seeker catalog not empty before lookup: %d", seeker.Catalog().Len())
	}
	var found []*catalog.SignedEntry
	testutil.Eventually(t, 10*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		found, _ = seeker.FindProducers(ctx, "prices")
		return len(found) == 1
	}, "producer not found through the DHT")
	e := found[0]
	if e.Entry.PeerID != producer.ID() || !e.Entry.Produces(stream) {
		t.Fatalf("found %s producing %v, want %s", e.Entry.PeerID, e.Entry.Streams, producer.ID())
	}
	// The entry is the producer's own signed entry, verifiable by anyone.
	if _, err := catalog.OpenEntry(e.Bytes(), 0); err != nil {
		t.Fatalf("entry from the DHT does not verify: %v", err)
	}
	if _, ok := seeker.Catalog().Get(producer.ID()); !ok {
		t.Error("DHT-found producer not merged into the catalog")
	}
	if _, ok := seeker.Catalog().Get(boot.ID()); ok {
		t.Error("seeker learned the bootstrap node, but it has no gossip or sync")
	}
}

// dialRecorder is a connection gater that records, for every peer dial of
// its host, whether the host served want at that moment.
type dialRecorder struct {
	h     atomic.Pointer[host.Host]
	want  protocol.ID
	mu    sync.Mutex
	early int // dials before the host served want
	dials int
}

func (g *dialRecorder) InterceptPeerDial(peer.ID) bool {
	h := g.h.Load()
	g.mu.Lock()
	defer g.mu.Unlock()
	g.dials++
	if h == nil || !slices.Contains((*h).Mux().Protocols(), g.want) {
		g.early++
	}
	return true
}
func (g *dialRecorder) InterceptAddrDial(peer.ID, ma.Multiaddr) bool { return true }
func (g *dialRecorder) InterceptAccept(network.ConnMultiaddrs) bool  { return true }
func (g *dialRecorder) InterceptSecured(network.Direction, peer.ID, network.ConnMultiaddrs) bool {
	return true
}
func (g *dialRecorder) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) {
	return true, 0
}

// TestDHT_BootstrapDialedOnceNodeIsComplete pins that a node dials its
// bootstrap peers (the DHT's first fix of an empty routing table
// included) only after New has registered every protocol: a connection
// made earlier makes identify push the record again for every handler
// registered after it, a stream and a signed peer record for the
// bootstrap peer to verify per joining node.
func TestDHT_BootstrapDialedOnceNodeIsComplete(t *testing.T) {
	boot := startNode(t, "dht-dial")
	g := &dialRecorder{want: groups.ProtocolID(catalog.IDFromString("dht-dial"))}
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay(), libp2p.DisableMetrics(),
		libp2p.ConnectionGater(g))
	if err != nil {
		t.Fatal(err)
	}
	g.h.Store(&h)
	n := startNode(t, "dht-dial", node.WithHost(h), bootstrapOf(boot))
	t.Cleanup(func() { _ = h.Close() }) // after the node's Close (cleanups run in reverse)
	if n.DHT() == nil {
		t.Fatal("the node runs no DHT: the test needs one")
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		return h.Network().Connectedness(boot.ID()) == network.Connected
	}, "not connected to the bootstrap peer")
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.early > 0 {
		t.Errorf("%d of %d dials started before the node served %s", g.early, g.dials, g.want)
	}
}
