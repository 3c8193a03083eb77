package collections

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/fxamacker/cbor/v2"

	"github.com/mosaik-go/mosaik/groups"
)

func newBytesMapMachine() *machine[mapState[string, []byte]] {
	return testMachine(kind[mapState[string, []byte]](mapKind[string, []byte]{}), "map")
}

// mapSnapshot is the snapshot of a map of n entries.
func mapSnapshot(t testing.TB, n int) []byte {
	t.Helper()
	m := newBytesMapMachine()
	var many []cbor.RawMessage
	for i := range n {
		many = append(many, raw(t, fmt.Sprintf("key-%05d", i)), raw(t, bytes.Repeat([]byte{byte(i)}, 1+i%70)))
	}
	m.Apply(groups.ApplyContext{FirstIndex: 1}, []command{{Op: mapExtend, Many: many}})
	var b bytes.Buffer
	if err := m.Snapshot(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// feedInChunks feeds st growing prefixes of data, cut at random.
func feedInChunks(t testing.TB, st groups.RestoreStage, data []byte, seed uint64) {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 7))
	for n := 0; n < len(data); {
		n = min(len(data), n+1+r.IntN(3000))
		if err := st.Feed(data[:n]); err != nil {
			t.Fatalf("feed of %d bytes: %v", n, err)
		}
	}
}

// A staged restore, fed the snapshot in pieces cut anywhere (inside
// items, inside the header), publishes nothing until Commit, and then the
// same map Restore builds.
func TestMapRestoreStage_MatchesRestore(t *testing.T) {
	data := mapSnapshot(t, 5000)
	want := newBytesMapMachine()
	if err := want.Restore(bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	for seed := range uint64(3) {
		m := newBytesMapMachine()
		before := m.cur.Load()
		st := m.StageRestore()
		if st == nil {
			t.Fatal("a map does not stage its restore")
		}
		feedInChunks(t, st, data, seed)
		if m.cur.Load() != before {
			t.Fatal("the stage published before Commit")
		}
		if err := st.Commit(data); err != nil {
			t.Fatal(err)
		}
		got, exp := m.cur.Load(), want.cur.Load()
		if got.size != exp.size || got.version != exp.version {
			t.Fatalf("size %d version %d, want %d and %d", got.size, got.version, exp.size, exp.version)
		}
		var a, b bytes.Buffer
		if err := m.Snapshot(&a); err != nil {
			t.Fatal(err)
		}
		if err := want.Snapshot(&b); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a.Bytes(), b.Bytes()) {
			t.Fatalf("seed %d: the staged map differs from the restored one", seed)
		}
	}
}

// A snapshot Restore refuses is refused by Commit with the same error,
// and the map keeps its state; one of another collection ends the stage
// at its header.
func TestMapRestoreStage_BadSnapshotRefused(t *testing.T) {
	good := mapSnapshot(t, 500)
	swapped := bytes.Clone(good)
	i := bytes.Index(swapped, []byte("key-00100"))
	copy(swapped[i:], "key-00099") // a duplicate: out of order
	cut := good[:len(good)-3]
	undecodable := bytes.Clone(good)
	undecodable[bytes.Index(undecodable, []byte("key-00200"))-1] = 0x1c // a reserved head
	for name, data := range map[string][]byte{"out of order": swapped, "cut": cut, "undecodable": undecodable} {
		ref := newBytesMapMachine()
		wantErr := ref.Restore(bytes.NewReader(data))
		if wantErr == nil {
			t.Fatalf("%s: Restore took it", name)
		}
		m := newBytesMapMachine()
		before := m.cur.Load()
		st := m.StageRestore()
		feedInChunks(t, st, data, 1)
		err := st.Commit(data)
		if err == nil || err.Error() != wantErr.Error() {
			t.Errorf("%s: Commit %v, Restore %v", name, err, wantErr)
		}
		if m.cur.Load() != before {
			t.Errorf("%s: a refused snapshot was published", name)
		}
	}
	other := testMachine(kind[mapState[string, []byte]](mapKind[string, []byte]{}), "other")
	if err := other.StageRestore().Feed(good); err == nil {
		t.Error("a stage took a snapshot of another collection")
	}
}

// FuzzMapRestoreStage: a staged restore fed any bytes, cut anywhere,
// never panics and ends as Restore of the same bytes does: the same
// error, or the same map.
func FuzzMapRestoreStage(f *testing.F) {
	f.Add(mapSnapshot(f, 20), uint16(7))
	f.Add(mapSnapshot(f, 3), uint16(0))
	f.Add([]byte{}, uint16(0))
	f.Fuzz(func(t *testing.T, data []byte, cut uint16) {
		if len(data) > maxFuzzInput {
			return
		}
		ref := newBytesMapMachine()
		wantErr := ref.Restore(bytes.NewReader(data))
		m := newBytesMapMachine()
		st := m.StageRestore()
		ferr := st.Feed(data[:min(int(cut), len(data))])
		if ferr == nil {
			ferr = st.Feed(data)
		}
		if ferr != nil {
			if wantErr == nil {
				t.Fatalf("Feed refused what Restore took: %v", ferr)
			}
			return // groups drops the stage and restores whole
		}
		err := st.Commit(data)
		if (err == nil) != (wantErr == nil) || (err != nil && err.Error() != wantErr.Error()) {
			t.Fatalf("Commit %v, Restore %v", err, wantErr)
		}
		if err != nil {
			return
		}
		var a, b bytes.Buffer
		if m.Snapshot(&a) != nil || ref.Snapshot(&b) != nil || !bytes.Equal(a.Bytes(), b.Bytes()) {
			t.Fatal("the staged map differs from the restored one")
		}
	})
}

// countingDecoder counts the bytes its decoder is asked to scan.
type countingDecoder[S any] struct {
	itemDecoder[S]
	scanned *int
}

func (c countingDecoder[S]) next(b []byte) ([]byte, error) {
	*c.scanned += len(b)
	return c.itemDecoder.next(b)
}

// A large item arriving in many chunks is tried once per doubling of its
// bytes, not at every chunk: each try scans what arrived, so trying at
// every chunk cost time quadratic in the item's size (a 4 MiB value in
// 16 KiB chunks: about 512 MiB scanned).
func TestMapRestoreStage_LargeItemScannedLinearly(t *testing.T) {
	m := newBytesMapMachine()
	big := bytes.Repeat([]byte{7}, 4<<20)
	m.Apply(groups.ApplyContext{FirstIndex: 1}, []command{{Op: mapExtend, Many: []cbor.RawMessage{raw(t, "big"), raw(t, big), raw(t, "small"), raw(t, []byte{1})}}})
	var b bytes.Buffer
	if err := m.Snapshot(&b); err != nil {
		t.Fatal(err)
	}
	data := b.Bytes()
	r := newBytesMapMachine()
	st := r.StageRestore().(*restoreStage[mapState[string, []byte]])
	if err := st.Feed(data[:64]); err != nil || st.d == nil {
		t.Fatalf("the header did not decode: %v", err)
	}
	scanned := 0
	st.d = countingDecoder[mapState[string, []byte]]{st.d, &scanned}
	for n := 64; n < len(data); {
		n = min(len(data), n+16<<10)
		if err := st.Feed(data[:n]); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Commit(data); err != nil {
		t.Fatal(err)
	}
	if limit := 4 * len(data); scanned > limit {
		t.Errorf("scanned %d bytes for a %d-byte snapshot, want at most %d", scanned, len(data), limit)
	}
	mr := &MapReader[string, []byte]{handle[mapState[string, []byte]]{&core[mapState[string, []byte]]{m: r}}}
	if v, ok := mr.Get("big"); !ok || !bytes.Equal(v, big) {
		t.Fatalf("the restored big value: %d bytes, %v", len(v), ok)
	}
}
