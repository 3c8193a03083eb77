package streams

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/mosaik-go/mosaik/catalog"
)

// outItem is one encoded datum queued for one subscription; the payload
// slice is shared by every queue (encoded once, never copied here).
type outItem struct {
	payload []byte
	seq     uint64
}

// writers pools the writers' buffers, so an idle subscription holds none.
var writers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 32<<10) }}

// maxWriteChunk is the most one write to a subscription's stream carries,
// so that Params.WriteTimeout measures a stall (nothing taken for that
// long) rather than the time a large frame needs on a slow link.
const maxWriteChunk = 64 << 10

// outSub is one consumer's subscription at a producer.
type outSub struct {
	sub *subscription
	st  network.Stream
	q   chan outItem
	// queued counts the payload bytes the subscription pins: queued, plus
	// the datum its writer is writing. Only the fan-out adds (under
	// Producer.sendMu), only the writer subtracts.
	queued atomic.Int64
	// room wakes a fan-out waiting for bytes: the writer signals it
	// (capacity 1, never blocking) when it releases a datum while
	// wantRoom is set, so a writer that nobody waits for pays one atomic
	// load per datum rather than a channel operation.
	room      chan struct{}
	wantRoom  atomic.Bool
	fullSince time.Time // when its queue was first found full; guarded by Producer.sendMu
	expiry    *time.Timer
	expiryOf  catalog.Version // the consumer's entry version expiry was armed from (under Producer.mu)
	removed   bool            // end took it out of Producer.subs (under Producer.mu)

	once  sync.Once
	code  Code // why the subscription ended; set once in end
	why   string
	gone  chan struct{} // closed by end
	endBy atomic.Int64  // the write deadline end set (UnixNano), 0 if none

	// inband: the consumer speaks featureCloseFrames, so cuts that would
	// reset (TooSlow, ProtocolViolation) are left to the writer, which
	// sends a Close frame when nothing is half written. Set before the
	// writer starts.
	inband bool
	// peerClosed: the consumer ended it with its own Close frame; nothing
	// is sent back.
	peerClosed atomic.Bool
	// peerReset: the consumer reset the stream with a code, which ends
	// the subscription (PROTOCOL.md 16.3); nothing is sent back.
	peerReset atomic.Bool

	// resumeAt is the first datum to resend from the replay window, 0 for
	// none; set before the writer starts. catching (under Producer.mu)
	// keeps the subscription out of the fan-out until its writer has
	// caught up with the window (see Producer.replay).
	resumeAt uint64
	catching bool
}

func newOutSub(sub *subscription, st network.Stream, queue int) *outSub {
	return &outSub{sub: sub, st: st, q: make(chan outItem, queue), room: make(chan struct{}, 1), gone: make(chan struct{})}
}

// ended reports whether the subscription ended (gone is closed).
func (s *outSub) ended() bool {
	select {
	case <-s.gone:
		return true
	default:
		return false
	}
}

// fanout encodes v once and queues it for every subscription. Queues with
// room take it at once. When some are full and wait is set, it waits for
// room in all of them against one deadline per consumer, each at most the
// lag grace from now, so the grace periods of several lagging consumers run
// concurrently and one call waits at most one grace whatever their number
// (a consumer whose writer was merely not scheduled yet is not a lagging
// one). A consumer still full after that is cut with TooSlow, or the datum
// is dropped for it in drop mode. The grace is per consumer and counts from
// when its queue was first found full: when ctx ends first, or wait is not
// set, the datum is dropped for a consumer still within its grace, which
// is cut only by a later call that finds the grace spent.
//
// sendMu is held throughout, so datums enter every queue in sequence
// order; p.mu only while the subscriptions are walked, so accepts, ends and
// the catalog watcher never wait for a lagging consumer.
func (p *Producer[T]) fanout(ctx context.Context, v T, wait bool) error {
	payload, err := p.codec.Encode(v)
	if err != nil {
		return err
	}
	if max := p.svc.params.MaxFrameSize - maxDataHeader; len(payload) > max {
		// Sent, it cut every consumer that reads under the same cap (a
		// protocol violation), and from a replay window it was served
		// first to every resubscription, which failed again.
		return fmt.Errorf("%w: %d bytes encoded, at most %d (Params.MaxFrameSize %d less the frame header)",
			ErrTooLarge, len(payload), max, p.svc.params.MaxFrameSize)
	}
	p.sendMu.Lock()
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		p.sendMu.Unlock()
		return ErrClosed
	}
	// One sequence number per datum for every subscription: a consumer
	// that misses datums (dropped for it, or sent while it was not
	// subscribed) sees exactly how many by the jump.
	p.seq++
	it := outItem{payload: payload, seq: p.seq}
	if p.window != nil {
		p.window.add(p.seq, payload)
	}
	n, delivered := len(p.subs), 0
	var full []*outSub
	for _, s := range p.subs {
		if s.catching { // replaying from the window: it joins the fan-out later (replay.go)
			delivered++ // and receives this datum from the window
			continue
		}
		if p.push(s, it) {
			delivered++
			s.fullSince = time.Time{} // it has room: not lagging
			continue
		}
		full = append(full, s)
	}
	p.mu.Unlock()
	var cut []*outSub
	if len(full) > 0 {
		// The grace is per consumer and cumulative from the first time its
		// queue was found full until it next has room at once, so a
		// consumer that frees a slot now and then cannot hold Send back
		// forever: it is cut (or dropped for) once the grace is spent.
		now := time.Now()
		var t *time.Timer
		for _, s := range full {
			if s.fullSince.IsZero() {
				s.fullSince = now
			}
			deadline := s.fullSince.Add(p.cfg.lagGrace)
			if wait {
				queued, ended := p.await(ctx, s, it, deadline, &t)
				if queued {
					delivered++
					continue
				}
				if ended {
					continue // gone meanwhile, for another reason: nothing to cut
				}
			}
			s.sub.dropped.Add(1)
			p.dropped.Add(1)
			// Only a consumer whose grace is spent is cut: one still within
			// it, whose datum is dropped because the caller's ctx ended or
			// the caller (TrySend) does not wait, is not lagging yet.
			if !p.cfg.dropLagging && !time.Now().Before(deadline) {
				cut = append(cut, s)
			}
		}
		if t != nil {
			t.Stop()
		}
	}
	p.sendMu.Unlock()
	for _, s := range cut {
		p.end(s, CodeTooSlow, "consumer queue full", true)
	}
	if delivered == 0 {
		if p.undelivered != nil {
			p.undelivered(v)
		}
		if n > 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
			return ErrFull
		}
	}
	return nil
}

// fits reports whether n more payload bytes stay within s's byte budget.
// A subscription that pins nothing takes any one datum, so the bound is
// max(MaxQueueBytes, one datum). Only the fan-out adds to s.queued, so the
// answer holds until it queues.
func (p *Producer[T]) fits(s *outSub, n int64) bool {
	q := s.queued.Load()
	return q <= 0 || q+n <= int64(p.svc.params.MaxQueueBytes)
}

// enqueued records it entering s's queue. The writer may already have taken
// and released it, making s.queued negative for a moment; it is exact again
// here.
func (p *Producer[T]) enqueued(s *outSub, it outItem) {
	if q := s.queued.Add(int64(len(it.payload))); q > p.peakQueued.Load() {
		p.peakQueued.Store(q) // only under sendMu: no lost update
	}
}

// push queues it for s if the queue has a slot and the byte budget room.
func (p *Producer[T]) push(s *outSub, it outItem) bool {
	if !p.fits(s, int64(len(it.payload))) {
		return false
	}
	select {
	case s.q <- it:
		p.enqueued(s, it)
		return true
	default:
		return false
	}
}

// await waits until s takes it or deadline passes (or ctx ends). It
// reports whether it was queued, and whether the subscription ended
// meanwhile. *t is the caller's timer, reused across consumers.
func (p *Producer[T]) await(ctx context.Context, s *outSub, it outItem, deadline time.Time, t **time.Timer) (queued, ended bool) {
	d := time.Until(deadline)
	if d <= 0 || ctx.Err() != nil {
		return false, false
	}
	if *t == nil {
		*t = time.NewTimer(d)
	} else {
		(*t).Reset(d)
	}
	// Set before fits reads s.queued: a writer that releases bytes after
	// that read sees the flag and signals room (both sequentially
	// consistent), so no release goes unnoticed.
	s.wantRoom.Store(true)
	defer s.wantRoom.Store(false)
	for {
		// A slot frees as the writer takes a datum, bytes once it has
		// written it: wait on the slot only when the bytes fit.
		var qc chan<- outItem
		if p.fits(s, int64(len(it.payload))) {
			qc = s.q
		}
		select {
		case qc <- it:
			p.enqueued(s, it)
			return true, false
		case <-s.room:
		case <-s.gone:
			return false, true
		case <-(*t).C:
			return false, false
		case <-ctx.Done():
			return false, false
		}
	}
}

// deadlineWriter writes to a subscription's stream in chunks of at most
// maxWriteChunk, each bounded by the write timeout: a consumer that takes
// nothing for that long fails the write, whatever the lagging mode.
type deadlineWriter struct {
	s *outSub
	d time.Duration
}

func (w *deadlineWriter) Write(b []byte) (n int, err error) {
	for len(b) > 0 && err == nil {
		select {
		case <-w.s.gone:
			// end bounded the stream by CloseTimeout: keep that bound.
		default:
			_ = w.s.st.SetWriteDeadline(time.Now().Add(w.d))
			if by := w.s.endBy.Load(); by != 0 {
				// end ran between the check and the deadline, which
				// replaced its bound: put it back.
				_ = w.s.st.SetWriteDeadline(time.Unix(0, by))
			}
		}
		var m int
		m, err = w.s.st.Write(b[:min(len(b), maxWriteChunk)])
		n, b = n+m, b[m:]
	}
	return n, err
}

// isTimeout reports a write that failed on its deadline.
func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

// writer sends one subscription's queue in order, batching whatever is
// queued into one flush.
func (p *Producer[T]) writer(s *outSub) {
	defer p.subWG.Done()
	if s.resumeAt != 0 && !p.replay(s) {
		return
	}
	var hdr [32]byte
	var bw *bufio.Writer // held only while a batch is being written
	dw := &deadlineWriter{s: s, d: p.svc.params.WriteTimeout}
	var lastStamp time.Time
	stamp := false       // stamp the next datum with its write time (latency samples)
	var n, nbytes uint64 // written in this batch, counted once it is flushed
	// released: whatever happened, the datum no longer pins memory here:
	// a bufio.Writer copies it or has written it through when Write
	// returns.
	released := func(it outItem) {
		s.queued.Add(-int64(len(it.payload)))
		if s.wantRoom.Load() {
			select {
			case s.room <- struct{}{}:
			default:
			}
		}
	}
	write := func(it outItem) error {
		defer released(it)
		h := hdr[:0]
		if stamp {
			now := time.Now()
			h, stamp, lastStamp = timedHeader(h, it.seq, uint64(now.UnixMicro()), len(it.payload)), false, now
		} else {
			h = dataHeader(h, it.seq, len(it.payload))
		}
		if _, err := bw.Write(h); err != nil {
			return err
		}
		_, err := bw.Write(it.payload)
		if err == nil {
			n++
			nbytes += uint64(len(it.payload))
		}
		return err
	}
	release := func() {
		bw.Reset(nil)
		writers.Put(bw)
		bw = nil
	}
	for {
		var (
			it  outItem
			ok  bool
			err error
		)
		select {
		case <-s.gone: // a cut skips what is still queued
			p.finish(s, true)
			return
		default:
		}
		select {
		case it, ok = <-s.q:
		case <-s.gone:
			p.finish(s, true)
			return
		}
		if !ok { // Close: the queue is drained
			p.finish(s, true)
			return
		}
		bw = writers.Get().(*bufio.Writer)
		bw.Reset(dw)
		// At most one latency sample per subscription every 100 ms, taken
		// at the start of a batch (one clock read per batch otherwise).
		stamp = time.Since(lastStamp) >= 100*time.Millisecond
		if err = write(it); err == nil {
			// Two single-channel polls rather than one select over both:
			// each is a lock-free check when it finds nothing, where a
			// select locks both channels for every datum.
		drain:
			for !s.ended() {
				select {
				case it, ok = <-s.q:
					if !ok {
						break drain
					}
					if err = write(it); err != nil {
						break drain
					}
				default:
					break drain
				}
			}
		}
		if err == nil {
			err = bw.Flush()
		}
		if err == nil {
			s.sub.datums.Add(n)
			s.sub.bytes.Add(nbytes)
			p.sent.Add(n)
			p.sentBytes.Add(nbytes)
		}
		n, nbytes = 0, 0
		release()
		if err != nil {
			if code, ok := resetCode(err); ok {
				s.peerReset.Store(true)
				p.end(s, code, "consumer reset the stream: "+err.Error(), true)
			} else if isTimeout(err) {
				p.end(s, CodeTooSlow, "write blocked for the write timeout", true)
			} else {
				p.end(s, CodeUnexpectedClose, err.Error(), true)
			}
			p.finish(s, false) // a frame may be half written: no Close frame after it
			return
		}
		if !ok {
			p.finish(s, true)
			return
		}
	}
}
