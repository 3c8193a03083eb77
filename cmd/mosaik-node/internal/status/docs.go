package status

import (
	"fmt"
	"time"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/catalog/discovery"
	"github.com/mosaik-go/mosaik/node"
	"github.com/mosaik-go/mosaik/streams"
)

// CatalogDoc is the JSON form of a node's catalog: the remote peers, in
// peer ID order. `mosaik-node catalog --json` prints the same document.
type CatalogDoc struct {
	Network   string    `json:"network"`    // the name the node was started with
	NetworkID string    `json:"network_id"` // its 64-hex ID
	Peers     []PeerDoc `json:"peers"`
}

// PeerDoc is one catalog entry. Tags and streams are given by the names
// the peer announced, or in hex where it announced none.
type PeerDoc struct {
	PeerID  string   `json:"peer_id"`
	Tags    []string `json:"tags"`
	Streams []string `json:"streams"`
	Addrs   []string `json:"addrs"`
	// RTTMS is the smoothed round-trip time in milliseconds, null while
	// no sample exists.
	RTTMS   *float64 `json:"rtt_ms"`
	Version string   `json:"version"` // "start.update", unix milliseconds
	AgeMS   int64    `json:"age_ms"`  // since the entry's last update (by the peer's clock)
}

// NodeDoc describes the local node.
type NodeDoc struct {
	PeerID       string       `json:"peer_id"`
	Network      string       `json:"network"`
	NetworkID    string       `json:"network_id"`
	NetworkShort string       `json:"network_short"`
	Addrs        []string     `json:"addrs"` // full multiaddrs, ending in /p2p/<peer id>
	Tags         []string     `json:"tags"`
	Streams      []string     `json:"streams"`
	Protocol     string       `json:"protocol"`
	Version      string       `json:"version"`
	UptimeMS     int64        `json:"uptime_ms"` // since the run began (the entry's start version)
	Peers        int          `json:"peers"`     // remote peers in the catalog
	Discovery    DiscoveryDoc `json:"discovery"`
}

// DiscoveryDoc holds the discovery service's counters (discovery.Stats).
type DiscoveryDoc struct {
	Added          uint64            `json:"added"`
	Updated        uint64            `json:"updated"`
	Ignored        uint64            `json:"ignored"`
	Rejected       uint64            `json:"rejected"`
	RejectedBy     map[string]uint64 `json:"rejected_by"` // "rejected/<reason>", "ignored/<reason>"
	Departed       uint64            `json:"departed"`
	Purged         uint64            `json:"purged"`
	SyncsStarted   uint64            `json:"syncs_started"`
	SyncsFailed    uint64            `json:"syncs_failed"`
	SyncsServed    uint64            `json:"syncs_served"`
	SyncsRefused   uint64            `json:"syncs_refused"`
	Announcements  uint64            `json:"announcements"`
	Relayed        uint64            `json:"relayed"`
	DHTPuts        uint64            `json:"dht_puts"`
	DHTPutFailures uint64            `json:"dht_put_failures"`
}

// StreamsDoc lists the node's producers and consumers, each group in
// stream order.
type StreamsDoc struct {
	Accepted  uint64      `json:"accepted"` // subscriptions admitted by this node's producers
	Rejected  uint64      `json:"rejected"` // subscriptions refused
	Producers []HandleDoc `json:"producers"`
	Consumers []HandleDoc `json:"consumers"`
}

// HandleDoc is one producer or consumer.
type HandleDoc struct {
	Stream   string `json:"stream"` // the name the handle was created with
	StreamID string `json:"stream_id"`
	Online   bool   `json:"online"`
	// Totals: for a producer datums and bytes written and datums dropped
	// over all subscriptions; for a consumer what the application took.
	Totals   CountsDoc    `json:"totals"`
	Channels []ChannelDoc `json:"channels"` // consumers of a producer, producers of a consumer
	// Ends counts subscriptions ended, by close code ("10413 TooSlow").
	Ends map[string]uint64 `json:"ends,omitempty"`
}

// CountsDoc holds traffic counters (streams.Stats).
type CountsDoc struct {
	Datums     uint64 `json:"datums"`
	Bytes      uint64 `json:"bytes"`
	Dropped    uint64 `json:"dropped"`
	Gaps       uint64 `json:"gaps"`
	Reconnects uint64 `json:"reconnects"`
}

// ChannelDoc is one subscription, seen from this node.
type ChannelDoc struct {
	PeerID string `json:"peer_id"` // the remote end
	State  string `json:"state"`   // Connecting, Connected or Terminated
	CountsDoc
	UptimeMS int64  `json:"uptime_ms"` // of the current connection; 0 when not connected
	Error    string `json:"error,omitempty"`
}

// CatalogJSON builds the catalog document of n from its current snapshot,
// with RTTs from its discovery service.
func CatalogJSON(n *node.Node) CatalogDoc { return catalogDoc(n, time.Now()) }

func catalogDoc(n *node.Node, now time.Time) CatalogDoc {
	snap := n.Catalog()
	doc := CatalogDoc{Network: n.NetworkName(), NetworkID: n.Network().String(), Peers: make([]PeerDoc, 0, snap.Len())}
	for se := range snap.All() {
		e := &se.Entry
		p := PeerDoc{
			PeerID:  e.PeerID.String(),
			Tags:    names(e, e.Tags),
			Streams: names(e, e.Streams),
			Addrs:   make([]string, len(e.Addrs)),
			Version: e.Version.String(),
			AgeMS:   now.Sub(e.Version.UpdatedAt()).Milliseconds(),
		}
		for i, a := range e.Addrs {
			p.Addrs[i] = a.String()
		}
		if info, ok := n.Discovery().PeerInfo(e.PeerID); ok && info.RTTKnown {
			ms := float64(info.RTT) / float64(time.Millisecond)
			p.RTTMS = &ms
		}
		doc.Peers = append(doc.Peers, p)
	}
	return doc
}

// NodeJSON builds the document of the local node n.
func NodeJSON(n *node.Node) NodeDoc { return nodeDoc(n, time.Now()) }

func nodeDoc(n *node.Node, now time.Time) NodeDoc {
	snap := n.Catalog()
	e := &snap.Local().Entry
	doc := NodeDoc{
		PeerID:       n.ID().String(),
		Network:      n.NetworkName(),
		NetworkID:    n.Network().String(),
		NetworkShort: n.Network().Short(),
		Addrs:        []string{},
		Tags:         names(e, e.Tags),
		Streams:      names(e, e.Streams),
		Protocol:     e.Protocol,
		Version:      e.Version.String(),
		UptimeMS:     now.Sub(e.Version.StartedAt()).Milliseconds(),
		Peers:        snap.Len(),
		Discovery:    discoveryDoc(n.Discovery().Stats()),
	}
	for _, a := range n.Addrs() {
		doc.Addrs = append(doc.Addrs, a.String())
	}
	return doc
}

func discoveryDoc(s discovery.Stats) DiscoveryDoc {
	d := DiscoveryDoc{
		Added: s.Added, Updated: s.Updated, Ignored: s.Ignored, Rejected: s.Rejected,
		RejectedBy: s.RejectedBy, Departed: s.Departed, Purged: s.Purged,
		SyncsStarted: s.SyncsStarted, SyncsFailed: s.SyncsFailed, SyncsServed: s.SyncsServed,
		SyncsRefused: s.SyncsRefused, Announcements: s.Announcements, Relayed: s.Relayed,
		DHTPuts: s.DHTPuts, DHTPutFailures: s.DHTPutFailures,
	}
	if d.RejectedBy == nil {
		d.RejectedBy = map[string]uint64{}
	}
	return d
}

// StreamsJSON builds the document of n's producers and consumers.
func StreamsJSON(n *node.Node) StreamsDoc {
	svc := n.Streams()
	st := svc.Stats()
	doc := StreamsDoc{
		Accepted: st.Accepted, Rejected: st.Rejected,
		Producers: []HandleDoc{}, Consumers: []HandleDoc{},
	}
	for _, h := range svc.Handles() {
		hd := HandleDoc{
			Stream: h.Name, StreamID: h.Stream.String(), Online: h.Online,
			Totals: counts(h.Totals), Channels: make([]ChannelDoc, len(h.Subscriptions)),
		}
		for code, n := range h.Ends {
			if hd.Ends == nil {
				hd.Ends = map[string]uint64{}
			}
			hd.Ends[fmt.Sprintf("%d %s", uint32(code), code)] = n
		}
		for i, c := range h.Subscriptions {
			cd := ChannelDoc{
				PeerID: c.Peer.String(), State: c.State.String(), CountsDoc: counts(c.Stats),
				UptimeMS: c.Stats.Uptime().Milliseconds(),
			}
			if c.Err != nil {
				cd.Error = c.Err.Error()
			}
			hd.Channels[i] = cd
		}
		if h.Role == streams.RoleProducer {
			doc.Producers = append(doc.Producers, hd)
		} else {
			doc.Consumers = append(doc.Consumers, hd)
		}
	}
	return doc
}

func counts(s streams.Stats) CountsDoc {
	return CountsDoc{Datums: s.Datums, Bytes: s.Bytes, Dropped: s.Dropped, Gaps: s.Gaps, Reconnects: s.Reconnects}
}

// names gives ids by the names e announced, hex for the others; never nil.
func names(e *catalog.Entry, ids []catalog.ID) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = e.NameOf(id)
	}
	return out
}
