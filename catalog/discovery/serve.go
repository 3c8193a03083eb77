package discovery

import (
	"bufio"
	"bytes"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/time/rate"

	"github.com/mosaik-go/mosaik/catalog/pb"
	"github.com/mosaik-go/mosaik/internal/framer"
)

// slots admits the syncs this node serves (and, in a table of its own, the
// departure hand-offs, depart.go, whose "request" is the departure frame):
// at most max at once, of which peers without a catalog entry
// ("strangers") hold at most strangerMax and any one peer at most perPeer.
//
// Those caps alone let a few identities starve everyone: each holds
// perPeer slots with requests it never finishes, until SyncTimeout, and
// max/perPeer identities fill every slot. Identities are free, and so is
// membership of an open network (a signed entry), so the caps are not
// where the protection lies. A sync that has not received its whole
// request yet holds a slot for nothing: when no slot is free, a new sync
// takes the slot of the oldest such sync (of a stranger, when the
// strangers' share is what is full), which is reset. An honest initiator
// writes its request at once, so its wait for the request is short and it
// is never the oldest while stalled ones are around; a staller keeps a
// slot only until the next arrival needs one. A new sync is refused only
// when every slot is held by a sync past its request.
//
// slots is safe for concurrent use; its mutex is never held with another.
type slots struct {
	max, strangerMax, perPeer int

	mu        sync.Mutex
	held      map[*slot]struct{}
	perPeerN  map[peer.ID]int // entries > 0 only
	strangers int
	seq       uint64
}

// slot is one sync being served.
type slot struct {
	peer     peer.ID
	st       network.Stream
	stranger bool
	seq      uint64 // admission order: lower is older
	reading  bool   // still waiting for the request
	gone     bool   // released, by its handler or by eviction
}

func newSlots(most, perPeer int) *slots {
	return &slots{max: most, strangerMax: max(1, most/2), perPeer: perPeer, held: map[*slot]struct{}{}, perPeerN: map[peer.ID]int{}}
}

// take admits a sync of p on st. It returns the slot, or nil with the
// reset code and reason of the refusal. evicted, when not nil, is a sync
// that lost its slot to this one: the caller resets its stream.
func (l *slots) take(p peer.ID, st network.Stream, stranger bool) (sl, evicted *slot, code network.StreamErrorCode, why string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.perPeerN[p] >= l.perPeer {
		return nil, nil, network.StreamRateLimited, "too many concurrent syncs from this peer"
	}
	switch {
	case stranger && l.strangers >= l.strangerMax:
		if evicted = l.oldestReading(true); evicted == nil {
			return nil, nil, network.StreamResourceLimitExceeded, "too many concurrent syncs from peers not in the catalog"
		}
	case len(l.held) >= l.max:
		if evicted = l.oldestReading(false); evicted == nil {
			return nil, nil, network.StreamResourceLimitExceeded, "too many concurrent syncs"
		}
	}
	if evicted != nil {
		l.drop(evicted)
	}
	l.seq++
	sl = &slot{peer: p, st: st, stranger: stranger, seq: l.seq, reading: true}
	l.held[sl] = struct{}{}
	l.perPeerN[p]++
	if stranger {
		l.strangers++
	}
	return sl, evicted, 0, ""
}

// oldestReading is the oldest sync still waiting for its request, of a
// stranger when strangersOnly; nil if there is none. The scan is over at
// most max slots.
func (l *slots) oldestReading(strangersOnly bool) *slot {
	var old *slot
	for sl := range l.held {
		if sl.reading && (!strangersOnly || sl.stranger) && (old == nil || sl.seq < old.seq) {
			old = sl
		}
	}
	return old
}

// read marks sl past its request. It reports false when sl was evicted
// meanwhile (its stream is being reset): the sync must end quietly.
func (l *slots) read(sl *slot) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	sl.reading = false
	return !sl.gone
}

// release ends sl, unless eviction did already.
func (l *slots) release(sl *slot) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !sl.gone {
		l.drop(sl)
	}
}

// drop frees sl's slot. Called with l.mu held.
func (l *slots) drop(sl *slot) {
	sl.gone = true
	delete(l.held, sl)
	if l.perPeerN[sl.peer]--; l.perPeerN[sl.peer] <= 0 {
		delete(l.perPeerN, sl.peer)
	}
	if sl.stranger {
		l.strangers--
	}
}

// resetAll resets the stream of every sync being served (the service is
// closing); their handlers then end at once.
func (l *slots) resetAll() {
	l.mu.Lock()
	held := make([]*slot, 0, len(l.held))
	for sl := range l.held {
		held = append(held, sl)
	}
	l.mu.Unlock()
	for _, sl := range held {
		if sl.st != nil {
			_ = sl.st.Reset()
		}
	}
}

// allowSync takes a token of p's inbound bucket (one per SyncMinInterval,
// burst SyncBurst).
func (s *Service) allowSync(p peer.ID) bool {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	l, ok := s.limiters.Get(p)
	if !ok {
		l = rate.NewLimiter(rate.Every(s.params.SyncMinInterval), s.params.SyncBurst)
		s.limiters.Add(p, l)
	}
	return l.Allow()
}

// admitSync applies the admission rules common to every sync version:
// per peer, at most SyncBurst syncs are admitted per SyncMinInterval and
// SyncBurst at once (refused with libp2p's rate-limit code); then a
// serving slot is needed (see slots: refused, or taken from a sync still
// waiting for its request, with libp2p's resource code). On success the
// caller owns the slot and releases it.
func (s *Service) admitSync(st network.Stream) *slot {
	p := st.Conn().RemotePeer()
	if !s.allowSync(p) {
		s.refuseSync(st, network.StreamRateLimited, "rate_limited", "rate limited")
		return nil
	}
	_, member := s.store.Snapshot().Get(p)
	sl, evicted, code, why := s.serving.take(p, st, !member)
	if evicted != nil {
		s.refuseSync(evicted.st, network.StreamResourceLimitExceeded, "evicted", "slot taken by a newer sync while waiting for the request", "evicted", evicted.peer)
	}
	if sl == nil {
		s.refuseSync(st, code, "busy", why)
		return nil
	}
	_ = st.SetDeadline(time.Now().Add(s.params.SyncTimeout))
	return sl
}

// refuseSync resets a sync being served with code and counts it as
// refused for cause.
func (s *Service) refuseSync(st network.Stream, code network.StreamErrorCode, cause, why string, args ...any) {
	s.stats.syncsRefused.Add(1)
	s.stats.syncFailed("in", cause)
	s.log.Debug("sync refused", append([]any{"peer", st.Conn().RemotePeer(), "cause", cause, "why", why}, args...)...)
	_ = st.ResetWithError(code)
}

// handleSyncV1 serves one sync of protocol 1.0.0: it reads the
// initiator's whole catalog and answers with its own, one frame each.
func (s *Service) handleSyncV1(st network.Stream) {
	if !s.enter() {
		_ = st.Reset()
		return
	}
	defer s.wg.Done()
	sl := s.admitSync(st)
	if sl == nil {
		return
	}
	defer s.serving.release(sl)
	p := st.Conn().RemotePeer()
	var req pb.SyncRequest
	err := readMessage(bufio.NewReader(countReader{st, &s.stats.syncBytesIn}), s.params.MaxSyncMessage, &req)
	if !s.serving.read(sl) {
		return // evicted: already reset and counted
	}
	if err != nil {
		s.stats.refuse(true, "malformed")
		s.refuseSync(st, CodeProtocolViolation, causeOf(err), "bad request", "err", err)
		return
	}
	if !bytes.Equal(req.Network, s.network[:]) {
		s.refuseSync(st, CodeDifferentNetwork, "other_network", "other network")
		return
	}
	_, span := s.tracer.Start(s.ctx, "mosaik.discovery.sync.serve", trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("peer", p.String()), attribute.String("protocol", "1.0.0"), attribute.Int("entries", len(req.Entries))))
	defer span.End()
	if len(req.Entries) > maxSyncEntries {
		s.refuseSync(st, CodeProtocolViolation, "too_many_entries", "too many entries", "n", len(req.Entries))
		return
	}
	s.stats.syncEntriesIn.Add(uint64(len(req.Entries)))
	// Answer with the catalog as it was before merging the request, but
	// merge first, so the initiator's SyncWith returns after both merged.
	snap := s.store.Snapshot()
	s.mergeAll(req.Entries, fromServed)
	if s.store.Admission() != nil && !s.member(p) {
		// A closed network answers only its members: an initiator whose
		// own entry (in its request) was not admitted learns nothing.
		s.refuseSync(st, CodeUnknownPeer, "unadmitted", "initiator not admitted")
		return
	}
	resp := &pb.SyncResponse{Entries: s.entries(snap)}
	if err := framer.WriteProto(countWriter{st, &s.stats.syncBytesOut}, resp); err != nil {
		s.stats.syncFailed("in", causeOf(err))
		_ = st.Reset()
		return
	}
	s.stats.syncEntriesOut.Add(uint64(len(resp.Entries)))
	s.stats.syncsServed.Add(1)
	_ = st.Close()
}

// countReader counts the bytes read through it into n.
type countReader struct {
	r io.Reader
	n *atomic.Uint64
}

func (c countReader) Read(b []byte) (int, error) {
	k, err := c.r.Read(b)
	c.n.Add(uint64(k))
	return k, err
}

// countWriter counts the bytes written through it into n.
type countWriter struct {
	w io.Writer
	n *atomic.Uint64
}

func (c countWriter) Write(b []byte) (int, error) {
	k, err := c.w.Write(b)
	c.n.Add(uint64(k))
	return k, err
}
