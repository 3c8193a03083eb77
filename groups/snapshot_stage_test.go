package groups

import (
	"bytes"
	"errors"
	"testing"
)

// recStage records what it is fed.
type recStage struct {
	fed    [][]byte
	failAt int // Feed fails on this call (1-based; 0: never)
}

func (r *recStage) Feed(p []byte) error {
	r.fed = append(r.fed, p)
	if len(r.fed) == r.failAt {
		return errors.New("bad")
	}
	return nil
}

func (r *recStage) Commit([]byte) error { return nil }

// The stage is fed ever longer prefixes of the state (on its goroutine,
// which may skip some), in the memory the snapshot ends in, from the first
// write that completes the framing; the result pairs the stage with
// exactly the state's bytes.
func TestStagedWriter_FeedsStatePrefixes(t *testing.T) {
	state := bytes.Repeat([]byte("0123456789"), 100)
	data := frameSnapshotData(77, append(make([]byte, snapshotHeadRoom), state...), snapshotHeadRoom)
	st := &recStage{}
	w := newStagedWriter(uint64(len(data)), st)
	for _, n := range []int{1, 2, 500, 0, 300} { // the framing arrives over two writes
		_, _ = w.Write(data[:n])
		data = data[n:]
	}
	_, _ = w.Write(data)
	got, staged := w.result()
	cs, err := decodeSnapshotData(got)
	if err != nil || !bytes.Equal(cs.GetState(), state) || cs.GetEpoch() != 77 {
		t.Fatalf("snapshot bytes: %v", err)
	}
	if !staged.matches(cs.GetState()) {
		t.Fatal("the stage does not match the state it was fed")
	}
	if staged.matches(bytes.Clone(cs.GetState())) {
		t.Fatal("equal bytes elsewhere in memory match the stage")
	}
	if len(st.fed) == 0 {
		t.Fatal("never fed")
	}
	for i, p := range st.fed {
		if !bytes.Equal(p, state[:len(p)]) || (i > 0 && len(p) < len(st.fed[i-1])) {
			t.Fatalf("feed %d: %d bytes, not a prefix of the state", i, len(p))
		}
		if len(p) > 0 && &p[0] != &cs.GetState()[0] {
			t.Fatalf("feed %d is not in the snapshot's memory", i)
		}
	}
	if last := st.fed[len(st.fed)-1]; len(last) != len(state) {
		t.Fatalf("last feed %d bytes, want %d", len(last), len(state))
	}
}

// A stage is dropped when Feed fails, when the framing is not the one
// frameSnapshotData writes, or when the snapshot is too large to stay in
// one buffer; the bytes are whole either way.
func TestStagedWriter_Abandons(t *testing.T) {
	state := bytes.Repeat([]byte{1}, 1000)
	framed := frameSnapshotData(5, append(make([]byte, snapshotHeadRoom), state...), snapshotHeadRoom)
	odd := append([]byte{0x18, 0x01}, framed...) // an unknown field first
	for name, tc := range map[string]struct {
		data  []byte
		total uint64
		stage *recStage
	}{
		"feed fails":        {framed, uint64(len(framed)), &recStage{failAt: 1}},
		"other framing":     {odd, uint64(len(odd)), &recStage{}},
		"wrong total":       {framed[:len(framed)-1], uint64(len(framed) - 1), &recStage{}},
		"over the prealloc": {framed, snapshotStagedPrealloc + 1, &recStage{}},
	} {
		w := newStagedWriter(tc.total, tc.stage)
		for b := tc.data; len(b) > 0; b = b[min(len(b), 100):] {
			_, _ = w.Write(b[:min(len(b), 100)])
		}
		got, staged := w.result()
		if staged != nil {
			t.Errorf("%s: staged", name)
		}
		w.finish(true) // as snapshotFromWire does: a no-op now
		if !bytes.Equal(got, tc.data) {
			t.Errorf("%s: bytes differ", name)
		}
	}
}

// FuzzSnapshotStateOffset: the framing reader never panics, and an offset
// it returns for a whole snapshot is where decodeSnapshotData finds the
// state.
func FuzzSnapshotStateOffset(f *testing.F) {
	f.Add(frameSnapshotData(9, append(make([]byte, snapshotHeadRoom), "state"...), snapshotHeadRoom))
	f.Add(frameSnapshotData(0, append(make([]byte, snapshotHeadRoom), "s"...), snapshotHeadRoom))
	f.Add([]byte{0x08})
	f.Add([]byte{0x12, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		for n := range len(b) + 1 {
			off, ok := snapshotStateOffset(b[:n], uint64(len(b)))
			if !ok || off < 0 {
				continue
			}
			if off > len(b) {
				t.Fatalf("offset %d past %d bytes", off, len(b))
			}
			cs, err := decodeSnapshotData(b)
			if err != nil {
				t.Fatalf("offset %d in undecodable data: %v", off, err)
			}
			if !sameBytes(cs.GetState(), b[off:]) && len(b[off:]) > 0 {
				t.Fatalf("state at %d, decodeSnapshotData finds another", off)
			}
		}
	})
}

// A fetch that fails stops the stage's feeder without feeding the rest.
func TestStagedWriter_FailedFetchStopsFeeding(t *testing.T) {
	state := bytes.Repeat([]byte{2}, 4000)
	data := frameSnapshotData(5, append(make([]byte, snapshotHeadRoom), state...), snapshotHeadRoom)
	st := &recStage{}
	w := newStagedWriter(uint64(len(data)), st)
	_, _ = w.Write(data[:1000])
	w.finish(true)
	for _, p := range st.fed {
		if len(p) > 1000 {
			t.Fatalf("fed %d bytes of 1000 written", len(p))
		}
	}
	if _, staged := w.result(); staged != nil {
		t.Fatal("a failed fetch left a stage")
	}
}
