package node

import (
	"fmt"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/discovery/mdns"

	"github.com/mosaik-go/mosaik/catalog"
)

// mdnsQueue bounds the peers found by mDNS and not yet dialled; more are
// dropped (and logged): mDNS repeats its answers, so a dropped peer is
// found again.
const mdnsQueue = 64

// MDNSServiceName is the DNS-SD service type under which nodes of network
// n announce themselves on the local link: "_mosaik-<8 hex>._udp", the
// first 4 bytes of the network ID in hex. zeroconf accepts any label (it
// only splits subtypes at commas), but RFC 6335 caps a service name at 15
// characters, which "mosaik-" plus 8 hex digits fills exactly. Networks
// whose IDs share those 4 bytes would connect to each other on the link
// but never mix catalogs: sync and gossip are keyed by the full ID.
func MDNSServiceName(n catalog.NetworkID) string { return "_mosaik-" + n.String()[:8] + "._udp" }

// mdnsNotifee hands found peers to the node's dialler without blocking
// (the mdns package calls HandlePeerFound on goroutines it does not own).
type mdnsNotifee struct {
	n     *Node
	found chan peer.AddrInfo
}

func (m *mdnsNotifee) HandlePeerFound(pi peer.AddrInfo) {
	select {
	case m.found <- pi:
	default:
		m.n.log.Debug("mdns: dial queue full; peer dropped until announced again", "peer", pi.ID)
	}
}

// startMDNS starts the mDNS service (owned by the node) and the goroutine
// that dials what it finds (owned by n.wg, stopped before the service is
// closed).
func (n *Node) startMDNS() error {
	nf := &mdnsNotifee{n: n, found: make(chan peer.AddrInfo, mdnsQueue)}
	svc := mdns.NewMdnsService(n.h, MDNSServiceName(n.network), nf)
	if err := svc.Start(); err != nil {
		_ = svc.Close()
		return fmt.Errorf("node: mDNS: %w", err)
	}
	n.own(svc.Close)
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		for {
			select {
			case <-n.ctx.Done():
				return
			case pi := <-nf.found:
				n.dialFound(n.ctx, "mdns", pi)
			}
		}
	}()
	return nil
}
