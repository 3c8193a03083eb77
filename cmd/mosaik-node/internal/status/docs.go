package status

import (
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/catalog/discovery"
	"github.com/mosaik-go/mosaik/groups"
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
	// Updated is the entry's last update (the version's second half) in
	// RFC 3339, UTC, by the peer's clock.
	Updated string `json:"updated"`
	AgeMS   int64  `json:"age_ms"` // since the entry's last update (by the peer's clock)
	// Connected says whether this node has a connection to the peer now:
	// an entry outlives its peer until a departure notice or the purge.
	Connected bool `json:"connected"`
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
	Updated      string       `json:"updated"`   // the entry's last update, RFC 3339, UTC
	UptimeMS     int64        `json:"uptime_ms"` // since the run began (the entry's start version)
	Peers        int          `json:"peers"`     // remote peers in the catalog
	Discovery    DiscoveryDoc `json:"discovery"`
}

// DiscoveryDoc holds the discovery service's counters (discovery.Stats).
type DiscoveryDoc struct {
	Added      uint64            `json:"added"`
	Updated    uint64            `json:"updated"`
	Ignored    uint64            `json:"ignored"`
	Rejected   uint64            `json:"rejected"`
	RejectedBy map[string]uint64 `json:"rejected_by"` // "rejected/<reason>", "ignored/<reason>"
	Departed   uint64            `json:"departed"`
	Purged     uint64            `json:"purged"`
	// Syncs this node started; each ends in SyncsOK or SyncsFailed.
	SyncsStarted uint64 `json:"syncs_started"`
	SyncsOK      uint64 `json:"syncs_ok"`
	SyncsFailed  uint64 `json:"syncs_failed"`
	// Syncs peers asked of this node.
	SyncsServed    uint64 `json:"syncs_served"`
	SyncsRefused   uint64 `json:"syncs_refused"`
	Announcements  uint64 `json:"announcements"`
	Relayed        uint64 `json:"relayed"`
	DHTPuts        uint64 `json:"dht_puts"`
	DHTPutFailures uint64 `json:"dht_put_failures"`
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
	Online   bool   `json:"online"` // the handle's online condition holds
	// Connected counts the channels in state Connected: a consumer whose
	// producers have all gone may still be online by its condition.
	Connected int `json:"connected"`
	// Totals: for a producer datums and bytes written and datums dropped
	// over all subscriptions; for a consumer what the application took.
	Totals   CountsDoc    `json:"totals"`
	Channels []ChannelDoc `json:"channels"` // consumers of a producer, producers of a consumer
	// Ends counts subscriptions ended, by close code ("10413 TooSlow").
	Ends map[string]uint64 `json:"ends,omitempty"`
	// Replay is a producer's replay window (produce --replay); absent
	// without one.
	Replay *ReplayDoc `json:"replay,omitempty"`
}

// ReplayDoc is a producer's replay window (streams.ReplayStats).
type ReplayDoc struct {
	Datums   int    `json:"datums"`   // held now
	Bytes    int64  `json:"bytes"`    // held now, payloads plus bookkeeping
	Replayed uint64 `json:"replayed"` // resent to resuming consumers
	Expired  uint64 `json:"expired"`  // asked for after they had left the window
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

// GroupsDoc lists the groups joined on the node, in group id order, and
// the bond layer's refusal and end counts.
type GroupsDoc struct {
	Groups []GroupDoc `json:"groups"`
	// Refusals counts bond handshakes that failed, on either side, and
	// Ends bonds that ended after the handshake, by code ("30403 NotAllowed").
	Refusals map[string]uint64 `json:"refusals"`
	Ends     map[string]uint64 `json:"ends"`
}

// GroupDoc is one group as this node sees it (groups.Status).
type GroupDoc struct {
	GroupID   string    `json:"group_id"` // 64 hex
	Short     string    `json:"short"`    // the id's short hex form, as in logs and metrics
	Role      string    `json:"role"`     // this node's: writer or reader
	Raft      string    `json:"raft"`     // leader, follower, learner, pre-candidate, candidate or non-member
	Leader    string    `json:"leader"`   // the leader's peer ID, "" when none is known
	Online    bool      `json:"online"`
	Term      uint64    `json:"term"`
	Committed uint64    `json:"committed"` // raft's commit index as this node knows it
	Applied   uint64    `json:"applied"`   // applied to the state machine here
	LogTerm   uint64    `json:"log_term"`  // the last entry of the local log
	LogIndex  uint64    `json:"log_index"`
	Voters    int       `json:"voters"`
	Learners  int       `json:"learners"`
	Epoch     string    `json:"epoch"`     // 16 hex (a string: JSON numbers lose 64-bit precision); "" in no cluster
	Discarded uint64    `json:"discarded"` // entries discarded in lost merges since the join
	Error     string    `json:"error,omitempty"`
	Bonds     []BondDoc `json:"bonds"` // in peer ID order
	// Collection is set when the group is a collection (its state machine
	// implements groups.Describer).
	Collection *CollectionDoc `json:"collection,omitempty"`
}

// CollectionDoc is what a collection's group says of its state.
type CollectionDoc struct {
	Type    string `json:"type"` // map, vec, set, ...
	Name    string `json:"name"`
	Size    int    `json:"size"`    // items in the local state
	Version uint64 `json:"version"` // the log index the local state is at
	// Sync is "in sync" (applied everything this node knows committed, a
	// leader known), "catching up" (applying, or fetching a snapshot),
	// "offline" (no leader known), "joining" (waiting to be added to the
	// group) or "ended".
	Sync string `json:"sync"`
}

// CollectionsDoc lists the collections replicated on the node, in group
// id order: the collection rows of GroupsDoc.
type CollectionsDoc struct {
	Collections []CollectionRow `json:"collections"`
}

// CollectionRow is one collection and its group's view of it.
type CollectionRow struct {
	CollectionDoc
	GroupID string `json:"group_id"`
	Role    string `json:"role"`   // this node's: writer or reader
	Raft    string `json:"raft"`   // this node's raft role
	Leader  string `json:"leader"` // "" when none is known
}

// CollectionsJSON builds the document of the collections on n.
func CollectionsJSON(n *node.Node) CollectionsDoc {
	return collectionsDoc(GroupsJSON(n))
}

func collectionsDoc(gd GroupsDoc) CollectionsDoc {
	doc := CollectionsDoc{Collections: []CollectionRow{}}
	for _, g := range gd.Groups {
		if g.Collection != nil {
			doc.Collections = append(doc.Collections, CollectionRow{CollectionDoc: *g.Collection, GroupID: g.GroupID, Role: g.Role, Raft: g.Raft, Leader: g.Leader})
		}
	}
	return doc
}

// syncState is a collection's CollectionDoc.Sync.
func syncState(st groups.Status) string {
	switch {
	case st.Err != nil || st.Ended:
		return "ended"
	case st.Raft == groups.RaftNonMember:
		return "joining"
	case !st.Online:
		return "offline"
	case st.AppliedIndex < st.CommitIndex:
		return "catching up"
	}
	return "in sync"
}

// BondDoc is one bond of a group (groups.BondInfo).
type BondDoc struct {
	PeerID         string `json:"peer_id"`
	Role           string `json:"role"`      // the peer's
	Initiator      bool   `json:"initiator"` // this node opened the bond's stream
	AgeMS          int64  `json:"age_ms"`    // since the handshake
	FramesSent     uint64 `json:"frames_sent"`
	FramesReceived uint64 `json:"frames_received"`
	BytesSent      uint64 `json:"bytes_sent"`
	BytesReceived  uint64 `json:"bytes_received"`
	Dropped        uint64 `json:"dropped"` // frames dropped on a full send queue
	Queued         int    `json:"queued"`  // frames waiting now
}

// GroupsJSON builds the document of the groups joined on n.
func GroupsJSON(n *node.Node) GroupsDoc {
	svc := n.Groups()
	return groupsDoc(svc.Status(), svc.BondStatus(), time.Now())
}

func groupsDoc(sts []groups.Status, bs groups.BondStatus, now time.Time) GroupsDoc {
	doc := GroupsDoc{Groups: make([]GroupDoc, 0, len(sts)), Refusals: codes(bs.Refusals), Ends: codes(bs.Ends)}
	for _, st := range sts {
		g := GroupDoc{
			GroupID: st.ID.String(), Short: st.ID.Short(), Role: st.Role.String(), Raft: st.Raft.String(),
			Online: st.Online, Term: st.Term, Committed: st.CommitIndex, Applied: st.AppliedIndex,
			LogTerm: st.Log.Term, LogIndex: st.Log.Index, Voters: st.Voters, Learners: st.Learners,
			Discarded: st.Discarded, Bonds: make([]BondDoc, len(st.Bonds)),
		}
		if st.Leader != "" {
			g.Leader = st.Leader.String()
		}
		if d := st.Description; d != nil {
			g.Collection = &CollectionDoc{Type: d.Kind, Name: d.Name, Size: d.Items, Version: d.Version, Sync: syncState(st)}
		}
		if st.Epoch != 0 {
			g.Epoch = fmt.Sprintf("%016x", st.Epoch)
		}
		if st.Err != nil {
			g.Error = st.Err.Error()
		} else if st.Ended {
			g.Error = "ended"
		}
		for i, b := range st.Bonds {
			g.Bonds[i] = BondDoc{
				PeerID: b.Peer.String(), Role: b.Role.String(), Initiator: b.Initiator,
				AgeMS: now.Sub(b.Since).Milliseconds(), FramesSent: b.FramesSent, FramesReceived: b.FramesReceived,
				BytesSent: b.BytesSent, BytesReceived: b.BytesReceived, Dropped: b.Dropped, Queued: b.Queued,
			}
		}
		doc.Groups = append(doc.Groups, g)
	}
	return doc
}

// codes keys counts by "<number> <name>"; never nil.
func codes(m map[groups.Code]uint64) map[string]uint64 {
	out := make(map[string]uint64, len(m))
	for c, n := range m {
		out[fmt.Sprintf("%d %s", uint32(c), c)] = n
	}
	return out
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
			PeerID:    e.PeerID.String(),
			Tags:      names(e, e.Tags),
			Streams:   names(e, e.Streams),
			Addrs:     make([]string, len(e.Addrs)),
			Version:   e.Version.String(),
			Updated:   stamp(e.Version.UpdatedAt()),
			AgeMS:     now.Sub(e.Version.UpdatedAt()).Milliseconds(),
			Connected: n.Host().Network().Connectedness(e.PeerID) == network.Connected,
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
		Updated:      stamp(e.Version.UpdatedAt()),
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
		SyncsStarted: s.SyncsStarted, SyncsOK: s.SyncsOK, SyncsFailed: s.SyncsFailed, SyncsServed: s.SyncsServed,
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
		if r := h.Replay; r != nil {
			hd.Replay = &ReplayDoc{Datums: r.Datums, Bytes: r.Bytes, Replayed: r.Replayed, Expired: r.Expired}
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
			if c.State == streams.Connected {
				hd.Connected++
			}
		}
		if h.Role == streams.RoleProducer {
			doc.Producers = append(doc.Producers, hd)
		} else {
			doc.Consumers = append(doc.Consumers, hd)
		}
	}
	return doc
}

// stamp renders t in RFC 3339 with milliseconds, UTC.
func stamp(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z07:00") }

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
