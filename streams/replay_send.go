package streams

import (
	"bufio"
	"time"
)

// startWindow creates the replay window (WithReplay), with the coarse
// clock of an age bound running until the producer's context ends.
func (p *Producer[T]) startWindow() {
	if p.cfg.replay == nil {
		return
	}
	var now func() int64
	if p.cfg.replay.Age > 0 {
		clk := &coarseClock{}
		clk.ns.Store(time.Now().UnixNano())
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			clk.run(p.ctx)
		}()
		now = clk.now
	}
	p.window = newWindow(*p.cfg.replay, now)
}

// replayBatch bounds the datums one read of the window takes: the writer
// holds the window's lock for that long, and Send waits for it.
const replayBatch = 256

// replay resends the window's datums from s.resumeAt on to a resuming
// consumer, then joins the live fan-out. It runs on s's writer, so a slow
// consumer slows only itself: Send never waits for it, since s is left out
// of the fan-out (catching) until it caught up.
//
// The seam: the writer reads the window without the producer's lock until
// it holds no datum past the last one written, then takes the lock, under
// which no datum is sent, reads what arrived meanwhile, puts it in s's
// (empty) queue, and joins the fan-out; every later datum reaches the
// queue. When the rest does not fit the queue, it writes it and tries
// again. Each datum thus reaches the consumer once and in order.
//
// Datums that left the window before the first one was resent are what
// the consumer reports as GapExpired (the jump from what it asked for). A
// writer that falls behind the window later, having resent some, lags: it
// is cut with TooSlow, or in drop mode skips what left (counted as
// dropped). It reports false when the subscription ended (finish done).
func (p *Producer[T]) replay(s *outSub) bool {
	r := &replayer{next: s.resumeAt, buf: make([]winEntry, replayBatch)}
	closing := false
	for {
		select {
		case <-s.gone:
			p.finish(s, true)
			return false
		default:
		}
		batch, _ := p.window.read(r.next, r.buf, maxWriteChunk)
		if len(batch) == 0 {
			if closing { // everything the producer sent is written
				p.finish(s, true)
				return false
			}
			res, tail := p.joinLive(s, r)
			switch res {
			case joinDone:
				return true
			case joinGone:
				p.finish(s, true)
				return false
			case joinBehind:
				p.end(s, CodeTooSlow, "replay fell behind the window", true)
				p.finish(s, true)
				return false
			case joinClosed:
				closing = true
			}
			if batch = tail; len(batch) == 0 {
				continue
			}
		}
		if !p.skip(r, s, batch[0].seq) {
			p.end(s, CodeTooSlow, "replay fell behind the window", true)
			p.finish(s, true)
			return false
		}
		if err := p.writeReplayed(s, batch); err != nil {
			p.failed(s, err)
			return false
		}
		r.started, r.next = true, batch[len(batch)-1].seq+1
	}
}

// replayer is the state of one subscription's replay.
type replayer struct {
	next    uint64 // the next datum to send
	started bool   // a datum was resent
	buf     []winEntry
}

// skip accounts for the datums between r.next and first, the next one
// held, which left the window before they were sent. Before the first
// datum was resent they are expired (the consumer reports the jump as
// GapExpired); after it, the replay lags the window: they count as
// dropped, and skip reports false when s must be cut for it (not in drop
// mode).
func (p *Producer[T]) skip(r *replayer, s *outSub, first uint64) bool {
	if first <= r.next {
		return true
	}
	n := first - r.next
	if !r.started {
		p.expired.Add(n)
		return true
	}
	s.sub.dropped.Add(n)
	p.dropped.Add(n)
	return p.cfg.dropLagging
}

type joinResult int

const (
	joinDone   joinResult = iota // s is in the fan-out
	joinLater                    // write the tail first, then try again
	joinClosed                   // the producer closed: write what is left, then finish
	joinGone                     // s ended
	joinBehind                   // s lags the window: cut it
)

// joinLive tries, under the producer's lock (no datum is sent meanwhile),
// to move s from replaying to the live fan-out: it puts the datums held
// from r.next on in s's queue, which is empty (the fan-out skips s), and
// lets the fan-out take s from the next datum. When they do not fit the
// queue, it returns them to be written first (joinLater).
func (p *Producer[T]) joinLive(s *outSub, r *replayer) (joinResult, []winEntry) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		tail, _ := p.window.read(r.next, r.buf, maxWriteChunk)
		return joinClosed, tail
	}
	select {
	case <-s.gone:
		return joinGone, nil
	default:
	}
	room := cap(s.q) - len(s.q)
	tail, more := p.window.read(r.next, r.buf[:min(room, len(r.buf))], p.svc.params.MaxQueueBytes)
	if more {
		return joinLater, tail
	}
	first := p.seq + 1 // nothing held from r.next on: the live datums follow
	if len(tail) > 0 {
		first = tail[0].seq
	}
	if !p.skip(r, s, first) {
		return joinBehind, nil
	}
	for _, e := range tail {
		s.queued.Add(int64(len(e.payload)))
		s.q <- outItem{payload: e.payload, seq: e.seq} // room checked above; only the fan-out adds, and it skips s
	}
	p.replayed.Add(uint64(len(tail)))
	s.catching = false
	return joinDone, nil
}

// writeReplayed writes a batch of window entries to s and counts them.
func (p *Producer[T]) writeReplayed(s *outSub, batch []winEntry) error {
	bw := writers.Get().(*bufio.Writer)
	defer func() {
		bw.Reset(nil)
		writers.Put(bw)
	}()
	bw.Reset(&deadlineWriter{s: s, d: p.svc.params.WriteTimeout})
	var hdr [16]byte
	var nbytes uint64
	for _, e := range batch {
		if _, err := bw.Write(dataHeader(hdr[:0], e.seq, len(e.payload))); err != nil {
			return err
		}
		if _, err := bw.Write(e.payload); err != nil {
			return err
		}
		nbytes += uint64(len(e.payload))
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	n := uint64(len(batch))
	s.sub.datums.Add(n)
	s.sub.bytes.Add(nbytes)
	p.sent.Add(n)
	p.sentBytes.Add(nbytes)
	p.replayed.Add(n)
	return nil
}

// failed ends s after a failed write, as the writer does.
func (p *Producer[T]) failed(s *outSub, err error) {
	if isTimeout(err) {
		p.end(s, CodeTooSlow, "write blocked for the write timeout", true)
	} else {
		p.end(s, CodeUnexpectedClose, err.Error(), true)
	}
	p.finish(s, false) // a frame may be half written: no Close frame after it
}
