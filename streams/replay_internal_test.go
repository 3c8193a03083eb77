package streams

import (
	"errors"
	"testing"
	"time"
)

// windowSeqs returns the sequence numbers the window holds from seq from.
func windowSeqs(w *window, from uint64) []uint64 {
	var out []uint64
	buf := make([]winEntry, 7) // small: reads span several batches
	for {
		batch, more := w.read(from, buf, 1<<30)
		for _, e := range batch {
			out = append(out, e.seq)
			from = e.seq + 1
		}
		if !more {
			return out
		}
	}
}

func wantRange(t *testing.T, got []uint64, first, last uint64) {
	t.Helper()
	if len(got) != int(last-first+1) {
		t.Fatalf("window holds %v, want %d..%d", got, first, last)
	}
	for i, s := range got {
		if s != first+uint64(i) {
			t.Fatalf("window holds %v, want %d..%d", got, first, last)
		}
	}
}

func TestWindow_BoundByCount(t *testing.T) {
	w := newWindow(Replay{Datums: 100}, nil)
	for s := uint64(1); s <= 1000; s++ {
		w.add(s, make([]byte, 10))
	}
	wantRange(t, windowSeqs(w, 0), 901, 1000)
	if n, b := w.stats(); n != 100 || b != 100*(10+winEntryOverhead) {
		t.Errorf("stats %d datums, %d bytes; want 100, %d", n, b, 100*(10+winEntryOverhead))
	}
	if len(w.buf) > 101 {
		t.Errorf("ring of %d slots for a bound of 100", len(w.buf))
	}
	// A read from inside the window starts there; from past its end, none.
	wantRange(t, windowSeqs(w, 950), 950, 1000)
	if got := windowSeqs(w, 1001); len(got) != 0 {
		t.Errorf("read past the end: %v", got)
	}
	// The evicted slots no longer pin their payloads.
	for i := range w.buf {
		if e := w.buf[i]; e.payload != nil && (e.seq < 901) {
			t.Fatalf("slot %d still holds evicted seq %d", i, e.seq)
		}
	}
}

func TestWindow_BoundByBytes(t *testing.T) {
	const size = 100
	per := int64(size + winEntryOverhead)
	w := newWindow(Replay{Bytes: 10 * per}, nil)
	for s := uint64(1); s <= 50; s++ {
		w.add(s, make([]byte, size))
	}
	wantRange(t, windowSeqs(w, 1), 41, 50)
	if _, b := w.stats(); b > 10*per {
		t.Errorf("holds %d bytes, bound %d", b, 10*per)
	}
	// A datum larger than the bound is not held, and evicts the rest.
	w.add(51, make([]byte, 20*size))
	if n, b := w.stats(); n != 0 || b != 0 {
		t.Errorf("after an oversize datum: %d datums, %d bytes; want none", n, b)
	}
	w.add(52, make([]byte, size))
	wantRange(t, windowSeqs(w, 1), 52, 52)
	// Empty datums are bounded too (by the per-entry overhead).
	w2 := newWindow(Replay{Bytes: 10 * winEntryOverhead}, nil)
	for s := uint64(1); s <= 1000; s++ {
		w2.add(s, nil)
	}
	if n, _ := w2.stats(); n != 10 {
		t.Errorf("holds %d empty datums, want 10", n)
	}
}

func TestWindow_BoundByAge(t *testing.T) {
	now := int64(1_000_000_000)
	w := newWindow(Replay{Datums: 1000, Age: time.Second}, func() int64 { return now })
	for s := uint64(1); s <= 10; s++ {
		w.add(s, []byte{byte(s)})
		now += int64(100 * time.Millisecond)
	}
	// Sent at 0, 0.1, ... 0.9 s; now is 1.0 s: the first is exactly 1 s old.
	wantRange(t, windowSeqs(w, 1), 1, 10)
	now += int64(450 * time.Millisecond) // 1.45 s: seqs 1..5 (sent up to 0.4 s) are older than 1 s
	wantRange(t, windowSeqs(w, 1), 6, 10)
	now += int64(time.Hour) // reading alone expires, with no datum added
	if got := windowSeqs(w, 1); len(got) != 0 {
		t.Errorf("after an hour: %v", got)
	}
	if n, b := w.stats(); n != 0 || b != 0 {
		t.Errorf("after an hour: %d datums, %d bytes", n, b)
	}
}

func TestWindow_ReadBoundByBytes(t *testing.T) {
	w := newWindow(Replay{Datums: 100}, nil)
	for s := uint64(1); s <= 10; s++ {
		w.add(s, make([]byte, 100))
	}
	batch, more := w.read(1, make([]winEntry, 100), 250)
	if len(batch) != 2 || !more {
		t.Errorf("read of 250 bytes: %d entries (more %v), want 2 and more", len(batch), more)
	}
	batch, _ = w.read(1, make([]winEntry, 100), 10)
	if len(batch) != 1 {
		t.Errorf("read below one datum: %d entries, want 1 (one always fits)", len(batch))
	}
}

func TestReplay_Validate(t *testing.T) {
	for _, r := range []Replay{{}, {Age: time.Minute}, {Datums: -1}, {Datums: 1, Bytes: -1}, {Datums: 1, Age: -1}} {
		if err := WithReplay(r).applyProducer(&producerConfig{}); !errors.Is(err, ErrReplayUnbounded) {
			t.Errorf("WithReplay(%+v): %v, want ErrReplayUnbounded", r, err)
		}
	}
	for _, r := range []Replay{{Datums: 1}, {Bytes: 1}, {Datums: 1, Bytes: 1, Age: time.Second}} {
		if err := WithReplay(r).applyProducer(&producerConfig{}); err != nil {
			t.Errorf("WithReplay(%+v): %v", r, err)
		}
	}
}
