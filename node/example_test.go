package node_test

import (
	"context"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	pubsub "github.com/libp2p/go-libp2p-pubsub"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/catalog/discovery"
	"github.com/mosaik-go/mosaik/node"
)

// Two nodes of one network on 127.0.0.1: the second bootstraps from the
// first and finds it in its catalog. (No Output line: it uses the network.)
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	loopback := node.WithListenAddrs("/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1")

	first, err := node.New("my-app", loopback, node.WithTags("bootstrap"))
	if err != nil {
		fmt.Println("first node:", err)
		return
	}
	defer first.Close()

	// first.Addrs() are full multiaddrs ending in /p2p/<id>, the form a
	// configuration file would hold.
	second, err := node.New("my-app", loopback, node.WithTags("worker"),
		node.WithBootstrap(first.Addrs()[0].String()))
	if err != nil {
		fmt.Println("second node:", err)
		return
	}
	defer second.Close()

	// The nodes sync their catalogs as soon as they are connected. Wait on
	// catalog changes (no polling) until the first node appears.
	var found *catalog.SignedEntry
	for found == nil {
		snap := second.Catalog()
		if e, ok := snap.Get(first.ID()); ok {
			found = e
			break
		}
		select {
		case <-snap.Changed():
		case <-ctx.Done():
			fmt.Println("first node not discovered:", ctx.Err())
			return
		}
	}
	fmt.Println("discovered", found.PeerID(), "at", found.Entry.Addrs)
	fmt.Println("tagged bootstrap:", found.Entry.HasTag(catalog.IDFromString("bootstrap")))

	// A snapshot is immutable: iterate it without locks.
	for e := range second.Catalog().All() {
		fmt.Println("peer", e.PeerID(), "version", e.Entry.Version)
	}
}

// Plugin mode: mosaik runs on a host, gossipsub router and DHT that the
// application built, owns and keeps using after mosaik has closed.
func ExampleNew_plugin() {
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		fmt.Println("host:", err)
		return
	}
	defer h.Close()

	// The router must sign (or not) like the routers of standalone mosaik
	// nodes: discovery.GossipSubOptions() sets StrictNoSign with a
	// content-based message ID, and a few queue sizes.
	psCtx, stopPubSub := context.WithCancel(context.Background())
	defer stopPubSub()
	ps, err := pubsub.NewGossipSub(psCtx, h, discovery.GossipSubOptions()...)
	if err != nil {
		fmt.Println("pubsub:", err)
		return
	}

	// The DHT needs the mosaik protocol prefix and entry validator.
	d, err := dht.New(h, discovery.DHTOptions()...)
	if err != nil {
		fmt.Println("dht:", err)
		return
	}
	defer d.Close()

	n, err := node.New("my-app",
		node.WithHost(h), node.WithPubSub(ps), node.WithDHT(d),
		node.WithTags("plugin"),
	)
	if err != nil {
		fmt.Println("mosaik:", err)
		return
	}
	// Deferred calls run in reverse: mosaik closes before what it borrowed.
	defer n.Close()

	local := n.Catalog().Local()
	fmt.Println("mosaik runs as", local.PeerID(), "the host's own peer:", local.PeerID() == h.ID())

	// Closing mosaik leaves the borrowed host, router and DHT running.
	if err := n.Close(); err != nil {
		fmt.Println("close:", err)
	}
	if _, err := ps.Join("my-app/chat"); err != nil {
		fmt.Println("join:", err)
	}
	fmt.Println("host still listening on", h.Addrs())
}
