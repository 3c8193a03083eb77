package node_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"

	"github.com/mosaik-go/mosaik/catalog/discovery"
	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/node"
	"github.com/mosaik-go/mosaik/streams"
)

// TestConnManager_TrimKeepsSubscriptions: a trim of the connection manager
// (low water 1, no grace period, on a real host lent to node a) closes
// connections by value, lowest first, but never the connection to b,
// which consumes a stream a produces: the node protects the peers of live
// subscriptions. b runs without gossip, so gossipsub's own protection of
// mesh peers is not what keeps it; a plain libp2p host (no tags) is the
// first to go, and a decoy tagged far above a catalog peer is the one
// left at low water, so without the protection b (a catalog peer, tagged
// CatalogPeerValue) would be closed.
func TestConnManager_TrimKeepsSubscriptions(t *testing.T) {
	// High water far above the test's connections: the manager's own
	// background trim stays out; TrimOpenConns trims down to low water.
	cm, err := connmgr.NewConnManager(1, 100, connmgr.WithGracePeriod(0))
	if err != nil {
		t.Fatal(err)
	}
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay(), libp2p.DisableMetrics(),
		libp2p.ConnectionManager(cm))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close(); _ = cm.Close() })
	// Nothing re-announces b's entry to a (no gossip): keep it fresh.
	params := discovery.TestParams()
	params.Catalog.PurgeAfter = time.Minute
	a, err := node.New("trim", node.WithHost(h), node.WithoutDHT(), node.WithFastProfile(), node.WithDiscoveryParams(params),
		node.WithLogger(testutil.Logger()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	// b learns a's entry by sync only: the producer is declared first.
	prod, err := streams.NewProducer[int](a.Streams(), "trim-ticks")
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	params.DisableGossip = true
	b := startNode(t, "trim", node.WithoutDHT(), node.WithDiscoveryParams(params), bootstrapOf(a))
	plain, decoy := newPlainHost(t).h, newPlainHost(t).h
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Scale(20*time.Second))
	defer cancel()
	for _, x := range []host.Host{plain, decoy} {
		if err := x.Connect(ctx, peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()}); err != nil {
			t.Fatal(err)
		}
	}
	cm.TagPeer(decoy.ID(), "test-decoy", 1000)
	testutil.Eventually(t, 10*time.Second, func() bool { return allKnowAll([]*node.Node{a, b}) }, "a and b do not meet")
	catalogTag := "mosaik-catalog/" + a.Network().Short()
	if ti := cm.GetTagInfo(b.ID()); ti == nil || ti.Tags[catalogTag] != discovery.CatalogPeerValue {
		t.Fatalf("b's tags at a: %+v, want %s = %d", ti, catalogTag, discovery.CatalogPeerValue)
	}
	if cm.IsProtected(b.ID(), "") {
		t.Fatal("b is protected before any subscription")
	}

	cons, err := streams.NewConsumer[int](b.Streams(), "trim-ticks")
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	// Send waits for the subscription.
	if err := prod.Send(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := cons.Recv(ctx); err != nil {
		t.Fatal(err)
	}
	if !cm.IsProtected(b.ID(), a.ProtectTag()) {
		t.Fatal("the consumer's peer is not protected while subscribed")
	}

	sub, plainConns := h.Network().ConnsToPeer(b.ID()), h.Network().ConnsToPeer(plain.ID())
	if len(sub) == 0 || len(plainConns) == 0 {
		t.Fatalf("connections before the trim: %d to b, %d to the plain host", len(sub), len(plainConns))
	}
	cm.TrimOpenConns(ctx)
	closed := func(cs []network.Conn) bool { return slices.ContainsFunc(cs, network.Conn.IsClosed) }
	testutil.Eventually(t, 5*time.Second, func() bool { return closed(plainConns) }, "the trim did not close the plain host's connection")
	if closed(sub) {
		t.Fatal("the trim closed the connection of a live subscription")
	}
	if err := prod.Send(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if v, err := cons.Recv(ctx); err != nil || v != 2 {
		t.Fatalf("after the trim: Recv = %v, %v", v, err)
	}

	// The protection ends with the subscription.
	_ = cons.Close()
	testutil.Eventually(t, 10*time.Second, func() bool { return !cm.IsProtected(b.ID(), a.ProtectTag()) },
		"the peer stays protected after its subscription ended")
}

// TestNode_ProtectCounts: Protect and Unprotect are counted per peer, so
// two subscriptions with one peer keep it protected until both end.
func TestNode_ProtectCounts(t *testing.T) {
	n := startNode(t, "protect-counts", node.WithoutDHT())
	cm := n.Host().ConnManager()
	p := newPlainHost(t).h.ID()
	n.Protect(p)
	n.Protect(p)
	n.Unprotect(p)
	if !cm.IsProtected(p, n.ProtectTag()) {
		t.Fatal("one Unprotect of two Protects ended the protection")
	}
	n.Unprotect(p)
	if cm.IsProtected(p, n.ProtectTag()) {
		t.Fatal("still protected after every Protect had its Unprotect")
	}
	n.Unprotect(p) // unbalanced: ignored
	if cm.IsProtected(p, n.ProtectTag()) {
		t.Fatal("an extra Unprotect changed the protection")
	}
}

// TestNode_ProtectPerNetwork: nodes of two networks on one host protect
// under tags of their own, so one's Unprotect leaves the other's
// protection of the same peer. They shared one tag, and the first to end
// its subscriptions with a peer let the connection manager trim the
// other's (found by the node review).
func TestNode_ProtectPerNetwork(t *testing.T) {
	host := newPlainHost(t)
	a, b := host.attach(t, "protect-net-a"), host.attach(t, "protect-net-b")
	if a.ProtectTag() == b.ProtectTag() {
		t.Fatalf("both networks protect under %q", a.ProtectTag())
	}
	cm := host.h.ConnManager()
	p := newPlainHost(t).h.ID()
	a.Protect(p)
	b.Protect(p)
	a.Unprotect(p)
	if !cm.IsProtected(p, b.ProtectTag()) {
		t.Fatal("node a's Unprotect ended node b's protection")
	}
	b.Unprotect(p)
	if cm.IsProtected(p, "") {
		t.Fatal("p is still protected after both nodes unprotected it")
	}
}
