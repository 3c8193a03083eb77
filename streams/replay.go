package streams

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Replay bounds a producer's replay window (WithReplay): the last datums it
// sent, kept encoded so that a consumer that resubscribes after a short
// outage (a partition, a TooSlow cut, its own restart with WithResumeFrom)
// receives what it missed, in order, before the live datums.
//
// A zero field sets no bound in that dimension, but Datums or Bytes must
// be above 0 so that memory is bounded. Datums older than Age leave the
// window even when the other bounds leave room (0: no age bound).
type Replay struct {
	// Datums is the most datums held.
	Datums int
	// Bytes is the most bytes held: each datum's encoded payload plus
	// winEntryOverhead (40 bytes) of bookkeeping, so that empty datums are
	// bounded too. A datum larger than Bytes is not held.
	Bytes int64
	// Age is how long a datum stays replayable after it was sent.
	Age time.Duration
}

// ErrReplayUnbounded is returned by NewProducer for a Replay whose Datums and
// Bytes are both 0, or that has a negative field.
var ErrReplayUnbounded = errors.New("streams: a replay window needs Datums or Bytes above 0 and no negative bound")

func (r Replay) validate() error {
	if r.Datums < 0 || r.Bytes < 0 || r.Age < 0 || (r.Datums == 0 && r.Bytes == 0) {
		return fmt.Errorf("%w: got %+v", ErrReplayUnbounded, r)
	}
	return nil
}

// Position is where a consumer stands in one producer's datums: the
// producer's epoch (its run) and the sequence number of the last datum
// held. Consumer.Positions returns it; WithResumeFrom takes it back after
// a restart.
type Position struct {
	Producer peer.ID
	Epoch    uint64
	Seq      uint64
}

// ReplayStats describes a producer's replay window (HandleInfo.Replay).
type ReplayStats struct {
	Datums   int    // datums held now
	Bytes    int64  // bytes held now (as bounded by Replay.Bytes)
	Replayed uint64 // datums resent from the window to resuming consumers
	// Expired counts datums that resuming consumers asked for but that had
	// already left the window (each consumer's share counted).
	Expired uint64
}

// winEntryOverhead is what one held datum costs besides its payload: its
// slot in the ring (payload slice header, sequence number, time).
const winEntryOverhead = 40

// winEntry is one datum held in the window. The payload is the encoded
// datum shared with the live queues: the window adds a reference, never a
// copy, and nothing ever writes to it.
type winEntry struct {
	payload []byte
	seq     uint64
	at      int64 // unix nanoseconds when sent; 0 without an age bound
}

// window is a producer's replay window: a ring of the last datums sent, in
// sequence order with no holes (every datum the producer numbers is
// added), bounded by count, bytes and age. The producer adds under its own
// lock, once per datum; each resuming consumer's writer reads it. Safe for
// concurrent use.
type window struct {
	lim Replay
	now func() int64 // unix nanoseconds; only called with an age bound (see coarseClock)

	mu    sync.Mutex
	buf   []winEntry // ring; len(buf) is its capacity
	head  int        // index of the oldest entry
	n     int
	bytes int64
}

func newWindow(lim Replay, now func() int64) *window {
	return &window{lim: lim, now: now}
}

// add appends the datum numbered seq; seq must follow the last one added.
func (w *window) add(seq uint64, payload []byte) {
	var at int64
	if w.lim.Age > 0 {
		at = w.now()
	}
	w.mu.Lock()
	if w.n == len(w.buf) {
		w.grow()
	}
	w.buf[w.slot(w.n)] = winEntry{payload: payload, seq: seq, at: at}
	w.n++
	w.bytes += int64(len(payload)) + winEntryOverhead
	for w.n > 0 && ((w.lim.Datums > 0 && w.n > w.lim.Datums) || (w.lim.Bytes > 0 && w.bytes > w.lim.Bytes)) {
		w.dropOldest()
	}
	if at != 0 {
		w.expire(at)
	}
	w.mu.Unlock()
}

// slot returns the ring index of the i-th entry from the oldest (i <= n).
func (w *window) slot(i int) int {
	if j := w.head + i; j < len(w.buf) {
		return j
	}
	return w.head + i - len(w.buf)
}

// grow doubles the ring, up to the count bound.
func (w *window) grow() {
	size := max(2*len(w.buf), 64)
	if w.lim.Datums > 0 {
		size = min(size, w.lim.Datums+1) // +1: add evicts after appending
	}
	buf := make([]winEntry, size)
	for i := range w.n {
		buf[i] = w.buf[w.slot(i)]
	}
	w.buf, w.head = buf, 0
}

func (w *window) dropOldest() {
	e := &w.buf[w.head]
	w.bytes -= int64(len(e.payload)) + winEntryOverhead
	*e = winEntry{} // release the payload
	if w.head++; w.head == len(w.buf) {
		w.head = 0
	}
	w.n--
}

// expire drops the entries sent before now minus the age bound.
func (w *window) expire(now int64) {
	limit := now - int64(w.lim.Age)
	for w.n > 0 && w.buf[w.head].at < limit {
		w.dropOldest()
	}
}

// read copies into dst the held entries numbered from on, oldest first, at
// most len(dst) of them and at most maxBytes payload bytes (but at least
// one). Entries numbered below from are skipped; when the entry numbered
// from already left the window, the first one returned is numbered above
// from. more reports that entries past the last returned one are held.
func (w *window) read(from uint64, dst []winEntry, maxBytes int) (out []winEntry, more bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.lim.Age > 0 {
		w.expire(w.now())
	}
	if w.n == 0 {
		return dst[:0], false
	}
	first := w.buf[w.head].seq
	last := first + uint64(w.n) - 1
	if from > last {
		return dst[:0], false
	}
	i := 0
	if from > first {
		i = int(from - first)
	}
	k, b := 0, 0
	for ; i < w.n && k < len(dst); i++ {
		e := w.buf[w.slot(i)]
		if k > 0 && b+len(e.payload) > maxBytes {
			break
		}
		dst[k] = e
		k++
		b += len(e.payload)
	}
	return dst[:k], i < w.n
}

// stats returns the datums and bytes held.
func (w *window) stats() (int, int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n, w.bytes
}

// coarseClock is a clock read once per datum by a window with an age
// bound: a goroutine stores the time every coarseTick, since reading the
// system clock costs up to a few hundred nanoseconds on some virtual
// machines, more than the rest of Send's bookkeeping. Datums are timed to
// within coarseTick.
type coarseClock struct {
	ns atomic.Int64
}

const coarseTick = 10 * time.Millisecond

// run keeps the clock until ctx ends.
func (c *coarseClock) run(ctx context.Context) {
	t := time.NewTicker(coarseTick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			c.ns.Store(now.UnixNano())
		}
	}
}

func (c *coarseClock) now() int64 { return c.ns.Load() }
