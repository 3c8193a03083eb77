package discovery

import (
	"context"
	"errors"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/catalog"
)

// maxAnnouncement caps a gossip message: one entry plus protobuf framing,
// or a relay batch of entries that fits in as many bytes.
func (s *Service) maxAnnouncement() int { return s.params.Catalog.MaxEntrySize + 16 }

func (s *Service) validate(_ context.Context, from peer.ID, msg *pubsub.Message) pubsub.ValidationResult {
	if from == s.h.ID() {
		// Our own publication: the local entry or departure we just signed,
		// or a relay of entries verified when they were merged. Verifying
		// it again would cost a signature check per heartbeat and relay for
		// nothing; readLoop skips our own messages anyway.
		return pubsub.ValidationAccept
	}
	now := s.now()
	es, d, ignored, err := decodeAnnouncement(msg.Data, s.maxAnnouncement(), now, func(data []byte) (*catalog.SignedEntry, error) {
		// Cheap checks first: a copy of a known version is ignored without
		// verifying its signature.
		return s.open(data, now, fromGossip)
	}, s.store)
	for _, err := range ignored {
		// Entries of a batch left out (the message itself goes on, unless
		// err is errCostlyBatch).
		s.stats.refuse(false, catalog.Reason(err))
	}
	if err == nil {
		if es != nil {
			msg.ValidatorData = es
		} else {
			msg.ValidatorData = d
		}
		return pubsub.ValidationAccept
	}
	if heldBack(err) {
		// Not forwarded, but its new entries are good: merged here.
		for _, e := range es {
			s.mergeGossip(e, from)
		}
	}
	rejected := catalog.IsRejected(err)
	s.stats.refuse(rejected, refusalReason(err))
	s.log.Debug("gossip message refused", "from", from, "rejected", rejected, "err", err)
	if rejected {
		return pubsub.ValidationReject
	}
	return pubsub.ValidationIgnore
}

func (s *Service) readLoop() {
	for {
		msg, err := s.sub.Next(s.ctx)
		if err != nil {
			return
		}
		if msg.ReceivedFrom == s.h.ID() {
			continue
		}
		switch v := msg.ValidatorData.(type) {
		case []*catalog.SignedEntry:
			for _, e := range v {
				s.mergeGossip(e, msg.ReceivedFrom)
			}
		case *catalog.Departure:
			s.depart(v)
		}
	}
}

// mergeGossip merges an entry that peer from sent on gossip.
func (s *Service) mergeGossip(e *catalog.SignedEntry, from peer.ID) {
	back := s.store.Snapshot().Purged(e.Entry.PeerID)
	out, err := s.store.Merge(e, s.now())
	s.merged(e, out, err, fromGossip)
	if err == nil && out == catalog.Added {
		// Which gossip path brought a new peer: its own publication
		// (from == peer) or a forward or relay.
		s.log.Debug("peer discovered on gossip", "peer", e.Entry.PeerID, "from", from)
	}
	switch {
	case err != nil || out != catalog.Added || from != e.Entry.PeerID:
	case back:
		// A peer we purged, back: not a newcomer, so no first-hop relay.
		// When heartbeats run late, purges come by the thousand, and a
		// relay of each re-admission (a message to every topic peer) added
		// more gossip than the heartbeats themselves
		// (TestChurn_ThirtyNodes, session 17).
		s.stats.readmitted.Add(1)
	default:
		s.relayFirstHop(e)
	}
}

// relayFirstHop republishes, with a nonce, the entry of a peer new to us
// that we received from the peer itself: its own publication, which
// gossipsub's flood publishing gave only to its topic peers (a newcomer's
// are its bootstrap peer and few others). pubsub forwards what it
// receives only to its mesh, which a newcomer enters at a later gossipsub
// heartbeat, so the peers that joined through us and whose join syncs we
// served before this entry came would not hear it; nor would our join
// repair, for those we served after their subscription came. A relay of
// the same bytes would be dropped as a duplicate (MessageID hashes the
// data), hence the nonce. It costs one publication per new peer at each
// of its first-hop topic peers, as the relay of a sync's new entry does.
func (s *Service) relayFirstHop(e *catalog.SignedEntry) {
	select {
	case s.relayQ <- relay{e: e, nonce: true}:
	default: // relays only speed convergence up; heartbeats heal a drop
		s.log.Debug("relay dropped", "peer", e.Entry.PeerID)
	}
}

// Merge puts a peer's signed entry into the catalog as if a sync had
// brought it: for entries the application holds already (kept from an
// earlier run, handed over by a plugin, or built by a test). It must come
// from [catalog.Seal] or [catalog.OpenEntry] (use OpenEntry on bytes from
// anywhere else: Merge does not verify the signature). The catalog's rules
// apply as to every input ([catalog.Store.Merge]); on success an entry new
// to the catalog is relayed on gossip and may be dialed (the cascade), as
// after a sync. Writes through [Service.Store] do none of
// that. Merge never blocks on the network.
func (s *Service) Merge(e *catalog.SignedEntry) (catalog.Outcome, error) {
	if s.ctx.Err() != nil {
		return 0, ErrClosed
	}
	old, held := s.store.Snapshot().Get(e.Entry.PeerID)
	out, err := s.store.Merge(e, s.now())
	s.merged(e, out, err, fromCaller)
	if err == nil && out == catalog.Updated && held && s.pushEnabled() && sameContent(old, e) {
		// A heartbeat of an entry we hold: pushed on as a bump.
		s.queueBump(e, "")
	}
	return out, err
}

// sameContent reports whether a and b differ only in version and
// signature (PROTOCOL.md section 10.8).
func sameContent(a, b *catalog.SignedEntry) bool {
	ha, ok := a.ContentHash()
	if !ok {
		return false
	}
	hb, ok := b.ContentHash()
	return ok && ha == hb
}

// merge applies an entry learned from src and reacts to the outcome.
func (s *Service) merge(e *catalog.SignedEntry, src source) {
	out, err := s.store.Merge(e, s.now())
	s.merged(e, out, err, src)
}

// merged reacts to the outcome of merging e learned from src.
func (s *Service) merged(e *catalog.SignedEntry, out catalog.Outcome, err error, src source) {
	if err != nil {
		if !errors.Is(err, catalog.ErrLocal) {
			s.stats.refuse(catalog.IsRejected(err), catalog.Reason(err))
		}
		return
	}
	// The entry's addresses stay in the catalog: copying them into the
	// host's peerstore cost about 1 KB per peer at 10 000 peers, for peers
	// we mostly never dial. Whoever dials a catalog peer passes the
	// entry's addresses (host.Connect keeps them for a dial's while).
	// Only connected peers are tagged: the connection manager keeps a
	// record per tagged peer, and drops it with the last connection (the
	// tag comes back on reconnecting, see tagIfConnected).
	s.tagIfConnected(e.Entry.PeerID)
	if src.isSync() {
		s.pushPulled(e) // a bump this sync was pulled for goes on
	}
	if out == catalog.Updated {
		s.stats.updated.Add(1)
		return
	}
	s.stats.added.Add(1)
	s.lastAdded.Store(int64(time.Since(s.born)))
	s.log.Debug("peer discovered", "peer", e.Entry.PeerID, "via", src)
	if src != fromGossip {
		// Peers that learned of us only by sync or DHT have not seen this
		// entry on gossip: relay it (pubsub deduplicates identical bytes).
		// Not the entries of a joining node's first sync: they come from
		// the catalog of a peer of the same network, which holds them
		// because gossip brought them, so the network has them. Relaying
		// them made every join publish the whole catalog (up to the relay
		// queue, 256 entries) onto gossip: O(N) messages per join, O(N²)
		// for N nodes starting together, which at N = 50 was most of the
		// gossip traffic of the start (1 288 relays for 49 joins) and
		// slowed convergence. The responder still relays the newcomer's
		// own entry (merged from its hello, fromServed), and a node that
		// rejoins with entries of its own after a partition still relays
		// what it learns.
		if s.topic != nil && src != fromJoinSync {
			select {
			case s.relayQ <- relay{e: e}:
			default: // relays only speed convergence up; heartbeats heal a drop
				s.log.Debug("relay dropped", "peer", e.Entry.PeerID)
			}
		}
		if src.cascadesAt(s.isSettled()) {
			s.cascade(e.Entry.PeerID)
		}
	}
}

// tagIfConnected gives p the catalog's connection-manager tag while we are
// connected to it. Called on every merge and when a connection to a
// catalog peer opens: the connection manager forgets a peer's tags when
// its last connection closes.
func (s *Service) tagIfConnected(p peer.ID) {
	if s.h.Network().Connectedness(p) == network.Connected {
		s.h.ConnManager().TagPeer(p, s.cmTag, CatalogPeerValue)
	}
}

// depart applies d, and reports whether it removed the peer's entry.
func (s *Service) depart(d *catalog.Departure) bool {
	ok, err := s.store.Depart(d, s.now())
	if !ok {
		if err != nil && !errors.Is(err, catalog.ErrUnknown) {
			s.stats.refuse(catalog.IsRejected(err), catalog.Reason(err))
		}
		return false
	}
	s.rtt.Remove(d.PeerID)
	s.h.ConnManager().UntagPeer(d.PeerID, s.cmTag)
	s.stats.departed.Add(1)
	s.log.Debug("peer departed", "peer", d.PeerID)
	return true
}

// cascadesAt reports whether a new peer learned from src is dialed at once
// (see Service.cascade), settled telling whether the join settled.
//
// The entries of a join sync are not dialed one by one while the join
// settles: at start every new node dialed the first CascadeBelow of them
// at once, each dial a handshake, identify and gossip set-up on both ends
// competing with the joins themselves. settle dials random peers instead,
// once. The same holds for the entries a joining node learns by serving a
// sync: its bootstrap peer's join repair (joinrepair.go) sends it what its
// join sync missed, and dialing those at once made 25 to 45 extra
// connections by the time 99 % of pairs were known in the N = 100
// convergence row (BENCHMARKS.md), for nothing gossip did not bring.
func (src source) cascadesAt(settled bool) bool {
	return settled || (src != fromJoinSync && src != fromServed)
}
