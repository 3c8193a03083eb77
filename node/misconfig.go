package node

import (
	"slices"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/catalog/discovery"
)

// Defaults of the no-peers warning (WithNoPeersWarning): long enough for a
// bootstrap peer or mDNS to answer on a real network, short enough that an
// operator who mistyped the network name hears of it before giving up.
const (
	defaultNoPeersWarning = 30 * time.Second
	fastNoPeersWarning    = 10 * time.Second
)

// warnIfAlone waits d and warns once if the catalog then holds no other
// peer and never held one: nobody else uses this network name, or nobody
// can be reached. Peers that came and went (short-lived produce, consume
// or catalog commands at a bootstrap node) prove the name and the reach
// right.
func (n *Node) warnIfAlone(d time.Duration) {
	defer n.wg.Done()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-n.ctx.Done():
		return
	case <-t.C:
	}
	if n.disc.Catalog().Len() > 0 || n.disc.Stats().Added > 0 {
		return
	}
	connected, others := 0, n.otherNetworks()
	for _, p := range n.h.Network().Peers() {
		if p != n.h.ID() {
			connected++
		}
	}
	hint := "check that every node uses the same --network (names are case-sensitive), that --bootstrap names a running node of this network, and that the nodes can reach each other (firewall, mDNS)"
	if connected > 0 {
		hint = "this node is connected to peers, but none of them is in this network: they most likely use another --network name (other_networks lists the IDs they serve); check that every node uses the same one (names are case-sensitive)"
	}
	n.log.Warn("no other node of this network found", "network_name", n.name, "network_id", n.network.Short(), "after", d,
		"connected_peers", connected, "other_networks", others, "bootstrap_peers", len(n.bootstrap), "hint", hint)
}

// otherNetworks lists the short IDs of the networks whose catalog the
// connected peers serve, other than ours (identify tells their protocols),
// under any sync version (an older node may serve only an older one).
func (n *Node) otherNetworks() []string {
	var prefixes []string
	for _, id := range discovery.SyncProtocols(n.network) {
		prefixes = append(prefixes, strings.TrimSuffix(string(id), n.network.String()))
	}
	var out []string
	for _, p := range n.h.Network().Peers() {
		protos, err := n.h.Peerstore().GetProtocols(p)
		if err != nil {
			continue
		}
		for _, id := range protos {
			var hex string
			for _, prefix := range prefixes {
				if h, ok := strings.CutPrefix(string(id), prefix); ok {
					hex = h
				}
			}
			if len(hex) != 64 || hex == n.network.String() {
				continue
			}
			if s := catalog.IDFromString(hex).Short(); !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
	}
	return out
}

// bootstrapFailed logs a failed dial of bootstrap peer pi: at Warn the
// first time (warned false), at Debug for the retries after it.
func (n *Node) bootstrapFailed(pi peer.AddrInfo, err error, warned bool) {
	if warned {
		n.log.Debug("bootstrap dial failed", "peer", pi.ID, "err", err)
		return
	}
	n.log.Warn("bootstrap peer unreachable; retrying with backoff", "peer", pi.ID, "addrs", pi.Addrs, "err", err,
		"hint", "check the --bootstrap address (host, port and the /p2p/ peer ID of a running node) and that the node is up and reachable from here")
}
