package discovery

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"golang.org/x/time/rate"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/internal/framer"
)

// Heartbeats travel as batched bump pushes (PROTOCOL.md section 10.9):
// every Params.BumpInterval a node sends each of its push peers one frame
// with the bumps it accepted (and its own heartbeat) since the last frame
// to that peer, but not those that peer sent it. The push peers are up to
// Params.BumpPeers connected peers that serve the bump protocol, and every
// peer that pushed to us lately (so the push graph is symmetric and
// connected wherever the connections are). A receiver opens every bump
// like any entry (the catalog's checks, the signature, admission) and
// merges a frame's bumps in one batch; one for a version it holds costs a
// map lookup. Content changes, new peers and departures stay on gossip.

// Push state limits. Each is a bound on memory or on work per peer.
const (
	// maxPushLog is the most bumps held for the push peers: a peer whose
	// cursor falls behind it loses the oldest (heartbeats heal).
	maxPushLog = 16384
	// maxPushersFactor: the push set holds at most this many times
	// BumpPeers peers, those we chose and those that push to us.
	maxPushersFactor = 2
	// maxPushStreams caps the inbound push streams open at once (one per
	// peer: a new stream from a peer replaces its old one), of which
	// peers not in the catalog hold at most half (inboundPushes.admit).
	maxPushStreams = 64
	// pushFramesPerInterval and pushFrameBurst: per-peer inbound frames.
	pushFramesPerInterval = 4
	pushFrameBurst        = 8
	// pushFramesPerRound is the most frames a round sends one peer: a
	// frame holds about 500 bumps (MaxBumpFrame), so one frame a second
	// would carry the heartbeats of at most about 15 000 peers at the
	// default 30 s; four (what a receiver accepts per interval) carry
	// about 60 000. Past that the push log drops the oldest.
	pushFramesPerRound = pushFramesPerInterval
	// pushPenaltyLimit: a peer whose decayed count of rejected bumps (a
	// malformed frame counts pushMalformedPenalty) exceeds it has its
	// frames refused and is no longer pushed to, until the count decays
	// (pushPenaltyDecay, the time to fall to 1/e).
	pushPenaltyLimit     = 16
	pushMalformedPenalty = 8
	pushPenaltyDecay     = 10 * time.Minute
	// maxPendingPulls bounds the bumps held while their pulls run
	// (pendingPull): past it a pulled bump is not pushed on (the next
	// heartbeat is).
	maxPendingPulls = 4096
)

// pendingPull is a bump we could not splice (its peer unknown to us, or
// its content not the one we hold) and pulled from its sender instead.
// When a sync merges that version of the entry, or a later one, its bump
// goes on to our push peers like a spliced one: a node that had to pull
// does not end the heartbeat's way through the push graph.
type pendingPull struct {
	v    catalog.Version
	from peer.ID
	at   time.Time
}

// pushRec is one bump held for the push peers: what it is about, who
// brought it (empty for our own) and its encoded record.
type pushRec struct {
	from, subject peer.ID
	rec           []byte
}

type pushPeer struct {
	next    uint64 // sequence number of the next record to send
	sending bool   // a goroutine owns st and is writing a frame
	chosen  bool   // chosen by us (else kept as an inbound pusher)
	removed bool   // out of the push set: the sender closes st
	st      network.Stream
	wrote   time.Time // when the last frame was written on st
}

type penalty struct {
	score float64
	at    time.Time
}

// pusher is the push state of a service.
type pusher struct {
	mu      sync.Mutex
	log     []pushRec
	base    uint64 // sequence number of log[0]
	peers   map[peer.ID]*pushPeer
	pushers map[peer.ID]time.Time // peers that pushed to us, when last
	legacy  bool                  // a topic peer does not serve the bump protocol
	pulls   map[peer.ID]pendingPull
	npulls  atomic.Int64 // len(pulls), read without the lock by every sync merge

	limiters  *lru.Cache[peer.ID, *rate.Limiter]
	penalties *lru.Cache[peer.ID, *penalty]
	inbound   inboundPushes
}

func newPusher() *pusher {
	limiters, _ := lru.New[peer.ID, *rate.Limiter](4096)
	penalties, _ := lru.New[peer.ID, *penalty](4096)
	return &pusher{peers: map[peer.ID]*pushPeer{}, pushers: map[peer.ID]time.Time{}, pulls: map[peer.ID]pendingPull{},
		limiters: limiters, penalties: penalties, inbound: inboundPushes{streams: map[peer.ID]*inboundPush{}}}
}

func (s *Service) pushEnabled() bool { return s.params.BumpInterval > 0 }

// queueBump holds se's bump record for the push peers; from is the peer
// that brought it ("" for our own heartbeat or a caller's Merge). It
// reports false when se has no bump form (not canonical).
func (s *Service) queueBump(se *catalog.SignedEntry, from peer.ID) bool {
	rec, ok := AppendBumpRecord(nil, se)
	if !ok {
		return false
	}
	p := s.push
	p.mu.Lock()
	defer p.mu.Unlock()
	p.log = append(p.log, pushRec{from: from, subject: se.Entry.PeerID, rec: rec})
	if over := len(p.log) - maxPushLog; over > 0 {
		clear(p.log[:over])
		p.log = p.log[over:]
		p.base += uint64(over)
		s.stats.bumpsDropped.Add(uint64(over))
	}
	return true
}

// notePulls records the bumps of a frame from `from` that are pulled
// (pendingPull). A bump already pending for a later version keeps it.
func (s *Service) notePulls(from peer.ID, bumps []pushedBump, now time.Time) {
	p := s.push
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.pulls)+len(bumps) > maxPendingPulls {
		for id, pp := range p.pulls {
			if now.Sub(pp.at) > s.pullTTL() {
				delete(p.pulls, id)
			}
		}
	}
	for _, b := range bumps {
		if pp, ok := p.pulls[b.id]; ok && pp.v.Compare(b.v) >= 0 {
			continue
		}
		if _, ok := p.pulls[b.id]; !ok && len(p.pulls) >= maxPendingPulls {
			s.stats.bumpsDropped.Add(1)
			continue
		}
		p.pulls[b.id] = pendingPull{v: b.v, from: from, at: now}
	}
	p.npulls.Store(int64(len(p.pulls)))
}

// pullTTL is how long a pulled bump waits for its pull: a sync's timeout
// and a push round on either side.
func (s *Service) pullTTL() time.Duration { return s.params.SyncTimeout + 2*s.params.BumpInterval }

// pushPulled pushes on the bump of se, just merged by a sync, when a bump
// of that version (or an earlier one) was pulled and is still pending.
func (s *Service) pushPulled(se *catalog.SignedEntry) {
	p := s.push
	if p.npulls.Load() == 0 {
		return
	}
	p.mu.Lock()
	pp, ok := p.pulls[se.Entry.PeerID]
	if ok && se.Entry.Version.Compare(pp.v) >= 0 {
		delete(p.pulls, se.Entry.PeerID)
		p.npulls.Store(int64(len(p.pulls)))
	} else {
		ok = false
	}
	p.mu.Unlock()
	if ok && time.Since(pp.at) <= s.pullTTL() {
		s.queueBump(se, pp.from)
	}
}

// bridges reports whether a topic peer does not serve the bump protocol:
// then what we accept by push is also published on gossip.
func (s *Service) bridges() bool {
	p := s.push
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.legacy
}

// pushesHeartbeats reports whether our heartbeat se can go by push alone:
// push is on, a push peer takes it, and no topic peer lacks the protocol
// (then gossip carries it too, so that older nodes keep us fresh).
func (s *Service) pushesHeartbeats() (push, gossip bool) {
	if !s.pushEnabled() {
		return false, true
	}
	p := s.push
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.peers) > 0, len(p.peers) == 0 || p.legacy
}

// pushLoop sends a frame to each push peer every BumpInterval.
func (s *Service) pushLoop() {
	t := time.NewTicker(s.params.BumpInterval)
	defer t.Stop()
	defer s.closePushStreams()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
			s.pushRound()
		}
	}
}

// closePushStreams closes the outbound push streams that no sender holds
// (a sender closes its own once it sees the service closing).
func (s *Service) closePushStreams() {
	p := s.push
	p.mu.Lock()
	var sts []network.Stream
	for id, pp := range p.peers {
		pp.removed = true
		if !pp.sending && pp.st != nil {
			sts = append(sts, pp.st)
			pp.st = nil
		}
		delete(p.peers, id)
	}
	p.mu.Unlock()
	for _, st := range sts {
		_ = st.Close()
	}
}

// resetPushStreams resets the inbound push streams, whose readers wait on
// their streams, not on the service's context.
func (s *Service) resetPushStreams() {
	p := s.push
	p.mu.Lock()
	sts := make([]network.Stream, 0, len(p.inbound.streams))
	for _, in := range p.inbound.streams {
		sts = append(sts, in.st)
	}
	p.mu.Unlock()
	for _, st := range sts {
		_ = st.Reset()
	}
}

// pushRound refreshes the push set and sends every push peer what it has
// not had yet.
func (s *Service) pushRound() {
	now := time.Now()
	proto := BumpProtocol(s.network)
	speaks := func(id peer.ID) bool {
		ok, _ := s.h.Peerstore().SupportsProtocols(id, proto)
		return len(ok) > 0
	}
	legacy := false
	if s.topic != nil {
		for _, id := range s.topic.ListPeers() {
			if !speaks(id) {
				legacy = true
				break
			}
		}
	}
	var candidates []peer.ID
	for _, id := range s.h.Network().Peers() {
		if speaks(id) && !s.penalized(id, now) {
			candidates = append(candidates, id)
		}
	}
	p := s.push
	p.mu.Lock()
	p.legacy = legacy
	live := make(map[peer.ID]bool, len(candidates))
	for _, id := range candidates {
		live[id] = true
	}
	for id, at := range p.pushers {
		if now.Sub(at) > 4*s.params.BumpInterval {
			delete(p.pushers, id)
		}
	}
	chosen := 0
	var stale []network.Stream
	for id, pp := range p.peers {
		_, pushes := p.pushers[id]
		if !live[id] || (!pp.chosen && !pushes) {
			pp.removed = true
			if !pp.sending && pp.st != nil {
				stale = append(stale, pp.st)
			}
			delete(p.peers, id)
			continue
		}
		if pp.chosen {
			chosen++
		}
	}
	// A receiver closes a stream idle for pushIdle; one idle for
	// SyncTimeout is closed here first, and this round's frame (if any)
	// goes on a new stream, rather than on one the receiver reset.
	for _, pp := range p.peers {
		if !pp.sending && pp.st != nil && now.Sub(pp.wrote) >= s.params.SyncTimeout {
			stale = append(stale, pp.st)
			pp.st = nil
		}
	}
	end := p.base + uint64(len(p.log))
	limit := maxPushersFactor * s.params.BumpPeers
	for id := range p.pushers {
		if live[id] && p.peers[id] == nil && len(p.peers) < limit {
			p.peers[id] = &pushPeer{next: end}
		}
	}
	rand.Shuffle(len(candidates), func(i, j int) { candidates[i], candidates[j] = candidates[j], candidates[i] })
	for _, id := range candidates {
		if chosen >= s.params.BumpPeers {
			break
		}
		if pp := p.peers[id]; pp != nil {
			if !pp.chosen {
				pp.chosen = true
				chosen++
			}
			continue
		}
		p.peers[id] = &pushPeer{next: end, chosen: true}
		chosen++
	}
	type send struct {
		id     peer.ID
		pp     *pushPeer
		frames [][]byte
		n      int
	}
	var sends []send
	low := end
	for id, pp := range p.peers {
		if pp.next < p.base {
			pp.next = p.base // fell behind maxPushLog
		}
		if !pp.sending && pp.next < end {
			var frames [][]byte
			var frame []byte
			n := 0
			i := pp.next
			for ; i < end; i++ {
				r := p.log[i-p.base]
				if r.from == id || r.subject == id {
					continue
				}
				if len(frame)+len(r.rec) > MaxBumpFrame {
					frames = append(frames, frame)
					frame = nil
					if len(frames) == pushFramesPerRound {
						break
					}
				}
				frame = append(frame, r.rec...)
				n++
			}
			if len(frame) > 0 {
				frames = append(frames, frame)
			}
			pp.next = i
			if n > 0 {
				pp.sending = true
				sends = append(sends, send{id, pp, frames, n})
			}
		}
		low = min(low, pp.next)
	}
	if len(p.peers) == 0 {
		low = end
	}
	if drop := int(low - p.base); drop > 0 {
		clear(p.log[:drop])
		p.log = p.log[drop:]
		p.base = low
	}
	p.mu.Unlock()
	for _, st := range stale {
		_ = st.Close()
	}
	for _, sd := range sends {
		if !s.spawn(func() {
			// sending gives this goroutine sd.pp.st.
			st, sent, err := sd.pp.st, 0, error(nil)
			for _, f := range sd.frames {
				reused := st != nil
				st, err = s.sendBumps(st, sd.id, f)
				if err != nil && reused && s.ctx.Err() == nil {
					// The receiver may have reset the stream (idle, or
					// replaced): once more on a new one.
					st, err = s.sendBumps(nil, sd.id, f)
				}
				if err != nil {
					break
				}
				sent++
			}
			p.mu.Lock()
			sd.pp.sending = false
			if sent > 0 {
				sd.pp.wrote = time.Now()
			}
			if errors.Is(err, errNoBumpProtocol) && !sd.pp.removed {
				sd.pp.removed = true
				delete(p.peers, sd.id)
			}
			if sd.pp.removed || s.ctx.Err() != nil {
				if st != nil {
					_ = st.Close()
				}
				st = nil
			}
			sd.pp.st = st
			p.mu.Unlock()
			if err != nil {
				s.stats.pushFailed("out/" + pushCause(err))
				s.log.Debug("bump push failed", "peer", sd.id, "err", err)
				return
			}
			s.stats.bumpsPushed.Add(uint64(sd.n))
			s.stats.bumpFramesOut.Add(uint64(sent))
		}) {
			p.mu.Lock()
			sd.pp.sending = false
			p.mu.Unlock()
		}
	}
}

var errNoBumpProtocol = errors.New("discovery: peer does not serve the bump protocol")

func pushCause(err error) string {
	switch {
	case errors.Is(err, errNoBumpProtocol):
		return "protocol"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	}
	return "stream"
}

// sendBumps writes one frame to p on st, the push stream to p, opening
// one when st is nil. It returns the stream to write the next frame on
// (nil after an error: the next frame opens a new one).
func (s *Service) sendBumps(st network.Stream, p peer.ID, frame []byte) (network.Stream, error) {
	if st == nil {
		ctx, cancel := context.WithTimeout(s.ctx, s.params.SyncTimeout)
		defer cancel()
		var err error
		st, err = s.h.NewStream(network.WithNoDial(ctx, "bump push"), p, BumpProtocol(s.network))
		if err != nil {
			if ok, _ := s.h.Peerstore().SupportsProtocols(p, BumpProtocol(s.network)); len(ok) == 0 {
				return nil, errNoBumpProtocol
			}
			return nil, err
		}
	}
	_ = st.SetWriteDeadline(time.Now().Add(s.params.SyncTimeout))
	// Close resets a write blocked on a peer that does not read, rather
	// than wait for the deadline.
	stop := context.AfterFunc(s.ctx, func() { _ = st.Reset() })
	err := framer.WriteFrame(st, frame)
	stop()
	if err != nil {
		_ = st.Reset()
		return nil, err
	}
	return st, nil
}
