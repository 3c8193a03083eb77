package groups

import (
	"sync"
	"unsafe"

	"google.golang.org/protobuf/encoding/protowire"
)

// Staged restore (StagedRestorer): a fetched snapshot's state is decoded
// by the machine's stage while its chunks arrive, so the install finds
// the new state built instead of decoding megabytes on the group
// goroutine after the last chunk. The stage is fed unverified bytes; only
// a transfer whose hash matched reaches Commit, and Commit runs only on
// exactly the bytes that were fed (stagedRestore.matches), so a bad chunk
// costs a stage that is dropped, never a state that readers see.

// snapshotStagedPrealloc bounds the buffer allocated at once for a staged
// fetch: staging needs the bytes to stay where they were fed, so the
// buffer must not grow. Larger snapshots are fetched as before (into a
// buffer that grows) and restored whole.
const snapshotStagedPrealloc = 256 << 20

// stagedWriter is the buffer a fetch writes a snapshot into. Once the
// framing is here it feeds the stage, on a goroutine of its own, the
// state bytes received so far: the items are decoded while the fetch
// goes on receiving, copying and hashing the next chunks.
type stagedWriter struct {
	buf   []byte
	total uint64
	stage RestoreStage // nil: not staging (none, or abandoned)
	state int          // offset of the state in buf; -1 until the framing is read

	started, finished bool // the feeder (fetch goroutine's view)
	relocated         bool // place gives nothing (chunkPlacer)
	wake              chan struct{}
	done              chan struct{} // closed when the feeder returned

	mu         sync.Mutex
	n          int  // buf[:n] is written, for the feeder
	end, abort bool // no more writes; stop without feeding the rest

	// The feeder's outcome, read after done.
	fed    int // bytes of buf fed
	failed bool
}

func newStagedWriter(total uint64, stage RestoreStage) *stagedWriter {
	pre := min(total, snapshotPrealloc)
	if stage != nil && total <= snapshotStagedPrealloc {
		pre = total
	} else {
		stage = nil
	}
	buf := make([]byte, 0, pre)
	adviseHugePages(buf[:pre])
	return &stagedWriter{buf: buf, total: total, stage: stage, state: -1}
}

func (w *stagedWriter) Write(p []byte) (int, error) {
	if n := len(w.buf) + len(p); n <= cap(w.buf) && sameStart(p, w.buf[len(w.buf):n]) {
		w.buf = w.buf[:n] // read in place (place)
		w.feed()
		return len(p), nil
	}
	if w.stage != nil && len(w.buf)+len(p) > cap(w.buf) {
		w.abandon() // the bytes are about to move
	}
	w.buf = append(w.buf, p...)
	w.feed()
	return len(p), nil
}

// place implements chunkPlacer when the buffer was allocated whole.
func (w *stagedWriter) place(off uint64, n int) []byte {
	if w.relocated || uint64(cap(w.buf)) != w.total || off > w.total || uint64(n) > w.total-off {
		return nil
	}
	return w.buf[:cap(w.buf)][off : off+uint64(n) : off+uint64(n)]
}

// relocate implements chunkPlacer: the bytes written so far move to a
// buffer of their own, and the stage, fed from the old one, is dropped.
func (w *stagedWriter) relocate() {
	if w.relocated {
		return
	}
	w.relocated = true
	w.abandon()
	w.buf = append(make([]byte, 0, cap(w.buf)), w.buf...)
}

func (w *stagedWriter) abandon() {
	w.finish(true)
	w.stage = nil
}

func (w *stagedWriter) feed() {
	if w.stage == nil {
		return
	}
	if w.state < 0 {
		off, ok := snapshotStateOffset(w.buf, w.total)
		if !ok {
			w.stage = nil
			return
		}
		if off < 0 {
			return // the framing is not all here yet
		}
		w.state = off
		w.started = true
		w.wake, w.done = make(chan struct{}, 1), make(chan struct{})
		go w.feedLoop(w.stage, w.buf[:cap(w.buf)], off)
	}
	w.mu.Lock()
	w.n = len(w.buf)
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default: // the feeder has a wake-up pending already
	}
}

// feedLoop feeds st the state in base[off:n] as n grows, until the last
// write was fed (end) or the fetch failed (abort).
func (w *stagedWriter) feedLoop(st RestoreStage, base []byte, off int) {
	defer close(w.done)
	fed := 0
	for {
		w.mu.Lock()
		n, end, abort := w.n, w.end, w.abort
		w.mu.Unlock()
		switch {
		case abort:
			return
		case n > fed:
			if err := st.Feed(base[off:n:n]); err != nil {
				w.failed = true
				return
			}
			fed = n
			continue
		case end:
			w.fed = fed
			return
		}
		<-w.wake
	}
}

// finish ends the feeder, after it fed every write unless abort, and
// waits for it. Only the first call counts.
func (w *stagedWriter) finish(abort bool) {
	if !w.started || w.finished {
		return
	}
	w.finished = true
	w.mu.Lock()
	w.end, w.abort = true, abort
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	<-w.done
}

// result ends the feeder and returns the bytes written and, when the
// stage was fed every byte of the state, what installs it.
func (w *stagedWriter) result() ([]byte, *stagedRestore) {
	w.finish(false)
	if w.stage == nil || w.state < 0 || uint64(len(w.buf)) != w.total || w.failed || w.fed != len(w.buf) {
		return w.buf, nil
	}
	return w.buf, &stagedRestore{stage: w.stage, state: w.buf[w.state:]}
}

// stagedRestore is a stage fed a whole fetched snapshot's state.
type stagedRestore struct {
	stage RestoreStage
	state []byte // the state bytes it was fed, in the fetched snapshot's memory
}

// matches reports whether state (decoded from the snapshot being
// installed) is the very bytes the stage was fed: the same memory and
// length, so the same bytes, which the hash checked.
func (s *stagedRestore) matches(state []byte) bool {
	return s != nil && len(state) == len(s.state) && len(state) > 0 &&
		unsafe.SliceData(state) == unsafe.SliceData(s.state)
}

// snapshotStateOffset reads the CoreSnapshot framing at the start of a
// snapshot of total bytes, as frameSnapshotData writes it (an optional
// epoch, then the state running to the end): it returns the offset of
// the state, -1 when more bytes are needed, or ok false for any other
// shape, which is not staged (decodeSnapshotData reads it at install).
func snapshotStateOffset(b []byte, total uint64) (off int, ok bool) {
	short := func() (int, bool) {
		if len(b) >= snapshotHeadRoom || uint64(len(b)) >= total {
			return 0, false
		}
		return -1, true
	}
	n := 0
	num, typ, m := protowire.ConsumeTag(b)
	if m < 0 {
		return short()
	}
	if num == 1 && typ == protowire.VarintType {
		_, k := protowire.ConsumeVarint(b[m:])
		if k < 0 {
			return short()
		}
		n = m + k
		if num, typ, m = protowire.ConsumeTag(b[n:]); m < 0 {
			return short()
		}
	}
	if num != 2 || typ != protowire.BytesType {
		return 0, false
	}
	l, k := protowire.ConsumeVarint(b[n+m:])
	if k < 0 {
		return short()
	}
	off = n + m + k
	if uint64(off) > total || total-uint64(off) != l {
		return 0, false
	}
	return off, true
}
