package discovery

// The receiving side of bump push (PROTOCOL.md section 10.9): reading a
// peer's push stream, admitting its frames, scoring bad bumps, and
// applying what a frame carries. push.go is the sending side.

import (
	"bufio"
	"errors"
	"io"
	"math"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"golang.org/x/time/rate"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/internal/framer"
)

// pushIdle is how long a receiver waits for the next frame on a push
// stream before closing it (the sender opens a new one when it has
// something to send again).
func (s *Service) pushIdle() time.Duration { return s.params.SyncTimeout + 4*s.params.BumpInterval }

// handleBumps reads the frames of one push stream until the peer closes
// it, goes idle for pushIdle, or misbehaves.
func (s *Service) handleBumps(st network.Stream) {
	if !s.enter() {
		_ = st.Reset()
		return
	}
	defer s.wg.Done()
	from := st.Conn().RemotePeer()
	if s.penalized(from, time.Now()) {
		s.stats.pushFailed("in/penalized")
		_ = st.ResetWithError(CodeProtocolViolation)
		return
	}
	p := s.push
	_, member := s.store.Snapshot().Get(from)
	p.mu.Lock()
	in, old, evicted := p.inbound.admit(from, st, !member)
	p.mu.Unlock()
	if in == nil {
		s.stats.pushFailed("in/busy")
		_ = st.ResetWithError(network.StreamResourceLimitExceeded)
		return
	}
	if old != nil {
		_ = old.Reset()
	}
	if evicted != nil {
		s.stats.pushFailed("in/evicted")
		_ = evicted.ResetWithError(network.StreamResourceLimitExceeded)
	}
	if s.ctx.Err() != nil { // closing: resetPushStreams may have run before we registered
		_ = st.Reset()
		return
	}
	defer func() {
		p.mu.Lock()
		p.inbound.release(in)
		p.mu.Unlock()
	}()
	r := bufio.NewReaderSize(st, 4096)
	for {
		_ = st.SetReadDeadline(time.Now().Add(s.pushIdle()))
		frame, err := framer.ReadFrame(r, MaxBumpFrame)
		if err != nil {
			if errors.Is(err, io.EOF) {
				_ = st.Close()
				return
			}
			cause := "read"
			if errors.Is(err, framer.ErrTooLarge) {
				cause = "oversize"
				s.penalize(from, pushMalformedPenalty)
			}
			s.stats.pushFailed("in/" + cause)
			_ = st.ResetWithError(CodeProtocolViolation)
			return
		}
		if cause := s.admitFrame(from); cause != "" {
			s.stats.pushFailed("in/" + cause)
			if cause == "penalized" {
				_ = st.ResetWithError(CodeProtocolViolation)
				return
			}
			continue // dropped; the stream stays
		}
		bumps, err := decodeBumpFrame(frame)
		if err != nil {
			s.stats.pushFailed("in/malformed")
			s.penalize(from, pushMalformedPenalty)
			s.log.Debug("bump frame refused", "peer", from, "err", err)
			_ = st.ResetWithError(CodeProtocolViolation)
			return
		}
		s.stats.bumpFramesIn.Add(1)
		p.mu.Lock()
		p.pushers[from] = time.Now()
		p.mu.Unlock()
		if _, member := s.store.Snapshot().Get(from); !member {
			// A peer we do not hold (new, or purged while its heartbeats
			// went astray) pushes to us: its frame is still worth reading
			// (every bump is verified against entries we hold), and a
			// sync brings its entry; its own heartbeats now come only
			// by push.
			s.stats.pushFailed("in/stranger")
			s.startSync(from)
		}
		s.applyPushed(from, bumps)
	}
}

// inboundPushes is the table of push streams being read, one per peer.
// Peers not in the catalog ("strangers": new, or identities made up to
// take the table) hold at most half of it, and a member's stream that
// finds it full takes the slot of the oldest stranger's: strangers that
// keep streams open cannot shut the members' heartbeats out (review
// probe: 64 made-up peers sending empty frames held every slot, and a
// member's heartbeats, refused, never arrived; it was purged). Members
// alone can fill it, as many as 64 of them. Its owner's lock guards it.
type inboundPushes struct {
	streams   map[peer.ID]*inboundPush
	strangers int
	seq       uint64
}

type inboundPush struct {
	peer     peer.ID
	st       network.Stream
	stranger bool
	seq      uint64 // admission order: lower is older
}

// admit registers st, from, a stranger or not. It returns the slot (nil:
// refused, the table is full for it), the peer's older stream, replaced,
// and the stream of a stranger that lost its slot to this one; the caller
// resets those two.
func (t *inboundPushes) admit(from peer.ID, st network.Stream, stranger bool) (in *inboundPush, old, evicted network.Stream) {
	prev := t.streams[from]
	if prev == nil {
		switch {
		case stranger && (t.strangers >= maxPushStreams/2 || len(t.streams) >= maxPushStreams):
			return nil, nil, nil
		case len(t.streams) >= maxPushStreams:
			var oldest *inboundPush
			for _, x := range t.streams {
				if x.stranger && (oldest == nil || x.seq < oldest.seq) {
					oldest = x
				}
			}
			if oldest == nil {
				return nil, nil, nil
			}
			t.drop(oldest)
			evicted = oldest.st
		}
	} else {
		t.drop(prev)
		old = prev.st
	}
	t.seq++
	in = &inboundPush{peer: from, st: st, stranger: stranger, seq: t.seq}
	t.streams[from] = in
	if stranger {
		t.strangers++
	}
	return in, old, evicted
}

// release frees in's slot unless it was taken over (replaced or evicted).
func (t *inboundPushes) release(in *inboundPush) {
	if t.streams[in.peer] == in {
		t.drop(in)
	}
}

func (t *inboundPushes) drop(in *inboundPush) {
	delete(t.streams, in.peer)
	if in.stranger {
		t.strangers--
	}
}

// admitFrame returns why a frame from p is dropped, or "".
func (s *Service) admitFrame(p peer.ID) string {
	now := time.Now()
	if s.penalized(p, now) {
		return "penalized"
	}
	ps := s.push
	ps.mu.Lock()
	l, ok := ps.limiters.Get(p)
	if !ok {
		l = rate.NewLimiter(rate.Every(s.params.BumpInterval/pushFramesPerInterval), pushFrameBurst)
		ps.limiters.Add(p, l)
	}
	allowed := l.AllowN(now, 1)
	ps.mu.Unlock()
	if !allowed {
		return "rate_limited"
	}
	return ""
}

// penalize adds n to p's decayed count of bad bumps.
func (s *Service) penalize(p peer.ID, n float64) {
	now := time.Now()
	ps := s.push
	ps.mu.Lock()
	defer ps.mu.Unlock()
	pen, ok := ps.penalties.Get(p)
	if !ok {
		pen = &penalty{at: now}
		ps.penalties.Add(p, pen)
	}
	pen.score = pen.score*math.Exp(-now.Sub(pen.at).Seconds()/pushPenaltyDecay.Seconds()) + n
	pen.at = now
}

// penalized reports whether p's bad bumps exceed pushPenaltyLimit.
func (s *Service) penalized(p peer.ID, now time.Time) bool {
	ps := s.push
	ps.mu.Lock()
	defer ps.mu.Unlock()
	pen, ok := ps.penalties.Get(p)
	return ok && pen.score*math.Exp(-now.Sub(pen.at).Seconds()/pushPenaltyDecay.Seconds()) > pushPenaltyLimit
}

// BumpPenalty is p's decayed count of bad bumps and malformed bump
// frames (a malformed frame counts 8): over 16, its frames are refused.
// A router's application-specific score may use it.
func (s *Service) BumpPenalty(p peer.ID) float64 {
	ps := s.push
	ps.mu.Lock()
	defer ps.mu.Unlock()
	pen, ok := ps.penalties.Get(p)
	if !ok {
		return 0
	}
	return pen.score * math.Exp(-time.Since(pen.at).Seconds()/pushPenaltyDecay.Seconds())
}

// BumpPenaltyScore is the gossipsub application score of a peer with
// bump penalty pen ([Service.BumpPenalty]): InvalidMessageWeight × pen²,
// as a rejected gossip message counts (P4), so a peer whose frames are
// refused (penalty over 16) is also below GraylistScoreThreshold. Package
// node sets it as its router's AppSpecificScore (weight 1).
func BumpPenaltyScore(pen float64) float64 { return InvalidMessageWeight * pen * pen }

// applyPushed applies the bumps of a frame from a push peer. A bump for a
// version we hold (or an older one) is dropped after a lookup. One for a
// peer we do not know, or whose content hash is not our entry's (a change
// that has not reached us), makes us sync with the sender, which holds
// the entry. The others are spliced into our entries and opened and
// merged in one batch: each one's signature is verified, and every
// catalog check runs. A rejected bump (bad signature and the like)
// counts against the sender; an honest sender verified it before
// pushing it on.
func (s *Service) applyPushed(from peer.ID, bumps []pushedBump) {
	s.stats.bumpsIn.Add(uint64(len(bumps)))
	snap := s.store.Snapshot()
	self := s.h.ID()
	raws := make([][]byte, 0, len(bumps))
	var pulled []pushedBump
	var known uint64
	for _, b := range bumps {
		if b.id == self {
			known++
			continue
		}
		held, ok := snap.Get(b.id)
		if !ok {
			pulled = append(pulled, b)
			continue
		}
		if b.v.Compare(held.Entry.Version) <= 0 {
			known++
			continue
		}
		if h, ok := held.ContentHash(); !ok || h != b.hash {
			pulled = append(pulled, b)
			continue
		}
		raw, err := held.ApplyBump(b.v, b.sig)
		if err != nil { // cannot be: the signature's length is fixed by the frame
			s.stats.refuse(true, catalog.Reason(err))
			s.stats.bumpsRefused.Add(1)
			continue
		}
		raws = append(raws, raw)
	}
	s.stats.bumpsKnown.Add(known)
	s.stats.bumpsPulled.Add(uint64(len(pulled)))
	if len(raws) > 0 {
		opened, errs := s.mergeAllOpened(raws, fromPush)
		bad := 0
		for i, err := range errs {
			switch {
			case err == nil:
				s.stats.bumpsMerged.Add(1)
				s.queueBump(opened[i], from)
				if s.bridges() {
					// An older topic peer learns heartbeats only on gossip.
					select {
					case s.relayQ <- relay{e: opened[i]}:
					default: // the next heartbeat heals a drop
					}
				}
			case catalog.IsRejected(err):
				bad++
				s.stats.bumpsRefused.Add(1)
			default:
				s.stats.bumpsRefused.Add(1)
			}
		}
		if bad > 0 {
			s.penalize(from, float64(bad))
		}
	}
	if len(pulled) > 0 {
		s.notePulls(from, pulled, time.Now())
		s.startSync(from)
	}
}
