package discovery

import (
	"context"
	"encoding/binary"
	"math/rand/v2"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/catalog/pb"
)

// relay is an entry to publish on gossip; nonce makes the publication a
// new gossip message when the entry's bytes were on gossip already.
type relay struct {
	e     *catalog.SignedEntry
	nonce bool
}

// relayLoop publishes entries learned by sync or DHT onto gossip, off the
// merge path: Publish can block while pubsub is busy, and a sync responder
// must not wait on it. An entry waits up to Params.RelayDelay for others to
// share its message (a batch, PROTOCOL.md section 9.6): when nodes join
// together, a bootstrap peer relays each newcomer to every topic peer, and
// a message per newcomer and peer cost more than the entries' own checks.
func (s *Service) relayLoop() {
	batch := relayBatch{max: s.maxAnnouncement()}
	for {
		select {
		case <-s.ctx.Done():
			return
		case r := <-s.relayQ:
			batch.add(r)
		}
		if d := s.params.RelayDelay; d > 0 {
			linger := time.NewTimer(d)
			for open := true; open; {
				select {
				case <-s.ctx.Done():
					linger.Stop()
					return
				case r := <-s.relayQ:
					if !batch.add(r) { // full: r starts the next message
						s.publishRelays(batch.take())
						batch.add(r)
					}
				case <-linger.C:
					open = false
				}
			}
		}
		s.publishRelays(batch.take())
	}
}

// relayBatch gathers the relays of one message: at most MaxBatchEntries
// entries, one per peer (the newest), in at most max bytes.
type relayBatch struct {
	max    int
	size   int
	relays []relay
	byPeer map[peer.ID]int
}

// add puts r into the batch and reports true, or reports false when the
// batch is full: r did not fit.
func (b *relayBatch) add(r relay) bool {
	if i, ok := b.byPeer[r.e.Entry.PeerID]; ok {
		old := b.relays[i].e
		if r.e.Entry.Version.Compare(old.Entry.Version) > 0 {
			b.size += batchSize(r.e) - batchSize(old)
			b.relays[i].e = r.e
		}
		b.relays[i].nonce = b.relays[i].nonce || r.nonce
		return true
	}
	n := batchSize(r.e)
	if len(b.relays) > 0 && (len(b.relays) == MaxBatchEntries || b.size+n > b.max) {
		return false
	}
	if b.byPeer == nil {
		b.byPeer = map[peer.ID]int{}
	}
	b.byPeer[r.e.Entry.PeerID] = len(b.relays)
	b.relays = append(b.relays, r)
	b.size += n
	return true
}

// take returns the batch's relays and empties it.
func (b *relayBatch) take() []relay {
	out := b.relays
	b.relays, b.size = nil, 0
	clear(b.byPeer)
	return out
}

// publishRelays publishes rs as one message: a single entry as the
// announcement of section 9.2 (with a nonce for a first-hop relay, whose
// bytes its owner published), several as a batch.
func (s *Service) publishRelays(rs []relay) {
	if len(rs) == 0 {
		return
	}
	es := make([]*catalog.SignedEntry, len(rs))
	for i, r := range rs {
		es[i] = r.e
	}
	data := appendBatch(nil, es)
	if len(rs) == 1 && rs[0].nonce {
		data = protowire.AppendTag(data, announceNonce, protowire.BytesType)
		data = protowire.AppendBytes(data, newNonce())
	}
	if err := s.publishData(s.ctx, data); err != nil {
		s.log.Debug("relay failed", "entries", len(rs), "err", err)
		return
	}
	s.stats.relayed.Add(uint64(len(rs)))
	s.stats.relayMessages.Add(1)
	s.log.Debug("entries relayed", "entries", len(rs), "first_hop", rs[0].nonce)
}

// newNonce returns the 8 random bytes that make a republication of
// unchanged bytes a new gossip message (PROTOCOL.md sections 9.5, 9.6).
func newNonce() []byte {
	var nonce [8]byte
	binary.LittleEndian.PutUint64(nonce[:], rand.Uint64())
	return nonce[:]
}

// publish puts ann on the topic, giving up after SyncTimeout or when ctx
// ends (the service's own: Close does not wait for a busy pubsub).
func (s *Service) publish(ctx context.Context, ann *pb.Announcement) error {
	data, err := proto.Marshal(ann)
	if err != nil {
		return err
	}
	return s.publishData(ctx, data)
}

// publishData publishes an encoded announcement, as publish does.
func (s *Service) publishData(ctx context.Context, data []byte) error {
	if s.topic == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.params.SyncTimeout)
	defer cancel()
	return s.topic.Publish(ctx, data)
}

func (s *Service) announce(se *catalog.SignedEntry) { s.announceWith(se, nil) }

// announceWith publishes se; a nonce makes the message new to gossipsub
// when se's bytes were published before.
func (s *Service) announceWith(se *catalog.SignedEntry, nonce []byte) {
	if !s.ownAdmitted(se) {
		return
	}
	if err := s.publish(s.ctx, &pb.Announcement{Kind: &pb.Announcement_Entry{Entry: se.Bytes()}, Nonce: nonce}); err != nil {
		s.log.Debug("announce failed", "err", err)
		return
	}
	s.stats.announcements.Add(1)
}

// announceLoop publishes the local entry at start, after every change, on a
// jittered heartbeat, and shortly after a new gossip peer appears.
// Heartbeats carry a new version: they are what keeps the entry fresh at
// every peer. The join announcement does not: it republishes the current
// entry so the new topic peer hears it at once, and a version bump would
// make every peer of the network take it as an update (PeerUpdated) after
// any join. Its random nonce makes it a new gossip message, which pubsub
// would otherwise drop as a duplicate of the last publication; peers that
// hold the entry already ignore it and do not forward it.
func (s *Service) announceLoop() {
	beat := time.NewTimer(0) // the first heartbeat fires at once
	defer beat.Stop()
	var join, flush <-chan time.Time
	armFlush := func(due time.Time) {
		if flush == nil {
			flush = time.After(max(due.Sub(s.now()), 0) + time.Millisecond)
		}
	}
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.announceNow:
			s.announce(s.Local())
		case <-s.flushNow:
			s.localMu.Lock()
			due, held := s.local.Pending()
			s.localMu.Unlock()
			if held {
				armFlush(due)
			}
		case <-flush:
			// Changes held for Catalog.MinUpdateInterval, coalesced.
			flush = nil
			se, due, held := s.flushLocal()
			if se != nil {
				s.announce(se)
				signal(s.dhtNow)
			}
			if held {
				armFlush(due)
			}
		case <-s.peerJoined:
			if join == nil {
				join = time.After(s.params.JoinAnnounceDelay)
			}
		case <-join:
			// Joins during the delay are coalesced into this one.
			join = nil
			s.announceWith(s.Local(), newNonce())
		case <-beat.C:
			if se, err := s.refresh(); err == nil {
				s.heartbeat(se)
			}
			beat.Reset(jitter(s.params.AnnounceInterval, s.params.AnnounceJitter))
		}
	}
}

// heartbeat sends our new version se: as a bump to the push peers when
// any serves the bump protocol, and on gossip when none does or some
// topic peer does not (an older node, PROTOCOL.md section 10.9).
func (s *Service) heartbeat(se *catalog.SignedEntry) {
	if !s.ownAdmitted(se) {
		return
	}
	push, gossip := s.pushesHeartbeats()
	if push && s.queueBump(se, "") {
		s.stats.bumpHeartbeats.Add(1)
	} else {
		gossip = true
	}
	if gossip {
		s.announce(se)
	}
}

// jitter returns a uniform duration in [d·(1−j), d·(1+j)].
func jitter(d time.Duration, j float64) time.Duration {
	return time.Duration(float64(d) * (1 - j + 2*j*rand.Float64()))
}
