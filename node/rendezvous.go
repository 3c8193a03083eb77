package node

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	dht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	drouting "github.com/libp2p/go-libp2p/p2p/discovery/routing"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/internal/dialer"
)

// Rendezvous timings. The fast interval applies while the catalog is
// empty (the node knows nobody yet), the slow one afterwards; each wait is
// jittered by ±50 % so that nodes started together do not poll in step.
const (
	rendezvousFast        = 5 * time.Second  // default poll while the catalog is empty
	rendezvousFastProfile = 1 * time.Second  // the same under WithFastProfile
	rendezvousSlow        = 60 * time.Second // poll once the catalog holds a peer
	rendezvousFindTime    = 30 * time.Second // bound on one FindPeers round
	rendezvousDialTime    = 10 * time.Second // bound on one dial of a found peer
	rendezvousAdvTime     = 90 * time.Second // bound on one Advertise (RoutingDiscovery caps its lookup at 60 s)
)

// RendezvousNamespace is the RoutingDiscovery namespace under which every
// node of network n advertises itself on a rendezvous DHT:
// "mosaik/rendezvous/<network hex>". RoutingDiscovery provides the CIDv1
// (raw codec) of the SHA2-256 of this string. Anyone who knows the network
// name can compute it; see PROTOCOL.md §18.
func RendezvousNamespace(n catalog.NetworkID) string { return "mosaik/rendezvous/" + n.String() }

// rendezvous is the node's client of a standard (/ipfs/kad/1.0.0) kad-dht,
// used only to find other nodes of the same network.
type rendezvous struct {
	dht  *dht.IpfsDHT
	disc *drouting.RoutingDiscovery
	ns   string
	fast time.Duration
}

// startRendezvous creates the rendezvous DHT on the node's host (owned by
// the node) and starts the advertise and find loops (owned by n.wg, so
// Close stops them before it closes the DHT).
func (n *Node) startRendezvous(cfg *config) error {
	d, err := dht.New(n.h,
		dht.Mode(dht.ModeClient), // a rendezvous client serves no records
		dht.BootstrapPeers(cfg.rendezvous...),
	)
	if err != nil {
		return fmt.Errorf("node: rendezvous DHT: %w", err)
	}
	n.own(d.Close)
	rv := &rendezvous{dht: d, disc: drouting.NewRoutingDiscovery(d), ns: RendezvousNamespace(n.network), fast: rendezvousFast}
	if cfg.rendezvousFast > 0 {
		rv.fast = cfg.rendezvousFast
	}
	n.wg.Add(2)
	go n.rendezvousAdvertise(rv)
	go n.rendezvousFind(rv)
	return nil
}

// rendezvousWait is the next jittered wait: fast while the catalog is
// empty, slow otherwise.
func (n *Node) rendezvousWait(rv *rendezvous) time.Duration {
	d := rv.fast
	if n.disc.Catalog().Len() > 0 {
		d = rendezvousSlow
	}
	return time.Duration(float64(d) * (0.5 + rand.Float64()))
}

// sleep waits d or until the node closes; it reports whether to go on.
func (n *Node) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-n.ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// rendezvousAdvertise keeps a provider record for the namespace on the
// rendezvous DHT: it retries on the poll backoff until it succeeds, then
// re-advertises when the record's TTL (at most 3 h) runs out.
func (n *Node) rendezvousAdvertise(rv *rendezvous) {
	defer n.wg.Done()
	for {
		ctx, cancel := context.WithTimeout(n.ctx, rendezvousAdvTime)
		ttl, err := rv.disc.Advertise(ctx, rv.ns)
		cancel()
		wait := ttl
		if err != nil {
			if n.ctx.Err() != nil {
				return
			}
			n.log.Debug("rendezvous advertise failed", "err", err)
			wait = n.rendezvousWait(rv)
		} else {
			n.log.Debug("rendezvous advertised", "ns", rv.ns, "ttl", ttl)
		}
		if !n.sleep(wait) {
			return
		}
	}
}

// rendezvousFind polls the namespace and dials every provider found that
// is not self and not connected. Connecting is all it does: discovery
// then syncs with the peer if it speaks this network's sync protocol, and
// the peer enters the catalog only through its own signed entry.
func (n *Node) rendezvousFind(rv *rendezvous) {
	defer n.wg.Done()
	for {
		ctx, cancel := context.WithTimeout(n.ctx, rendezvousFindTime)
		ch, err := rv.disc.FindPeers(ctx, rv.ns)
		if err != nil {
			n.log.Debug("rendezvous find failed", "err", err)
		} else {
			for pi := range ch {
				n.dialFound(ctx, "rendezvous", pi)
			}
		}
		cancel()
		if !n.sleep(n.rendezvousWait(rv)) {
			return
		}
	}
}

// dialFound connects to a peer found by rendezvous or mDNS unless it is
// self or already connected. A peer found without addresses is still
// tried: the peerstore may know some.
func (n *Node) dialFound(ctx context.Context, via string, pi peer.AddrInfo) {
	if pi.ID == n.h.ID() {
		return
	}
	// Two nodes that find each other at the same moment (mDNS) would dial
	// each other at once; with TCP port reuse that can become one
	// simultaneous-open connection on which both run the initiator's
	// handshake, and both fail. So the node with the larger peer ID lets the
	// other dial first and dials only if no connection came.
	if via == "mdns" && n.h.ID() > pi.ID && !n.sleep(time.Duration(500+rand.IntN(500))*time.Millisecond) {
		return
	}
	for attempt := 1; ; attempt++ {
		if n.h.Network().Connectedness(pi.ID) == network.Connected {
			return
		}
		if attempt > 1 {
			// The failed attempt put the peer in the swarm's dial backoff.
			dialer.ClearBackoff(n.h, pi.ID)
		}
		dctx, cancel := context.WithTimeout(ctx, rendezvousDialTime)
		err := dialer.Connect(dctx, n.h, pi)
		cancel()
		if err == nil {
			n.log.Debug("connected to a found peer", "via", via, "peer", pi.ID)
			return
		}
		if n.ctx.Err() != nil {
			return
		}
		if attempt == 3 {
			n.log.Debug("dial of a found peer failed", "via", via, "peer", pi.ID, "err", err)
			return
		}
		t := time.NewTimer(time.Duration(100+rand.IntN(400)) * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}
