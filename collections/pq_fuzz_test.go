package collections

import (
	"bytes"
	"slices"
	"testing"

	"github.com/fxamacker/cbor/v2"

	"github.com/mosaik-go/mosaik/internal/detcbor"
)

// maxFuzzInput caps a fuzz input, as the group caps a command frame.
const maxFuzzInput = 1 << 16

func pqSeeds(f *testing.F) {
	k, v, p := cborOf(f, "k"), cborOf(f, "v"), cborOf(f, int64(-3))
	k2, p2 := cborOf(f, "k2"), cborOf(f, int64(7))
	for _, cmds := range [][]command{
		{{Op: pqInsert, A: k, B: v, C: p}, {Op: pqInsert, A: k2, B: v, C: p2}},
		{{Op: pqExtend, Many: []cbor.RawMessage{k, v, p, k2, v, p2, cborOf(f, "k3"), v, p}}},
		{{Op: pqInsert, A: k, B: v, C: p}, {Op: pqUpdatePriority, A: k, C: p2}, {Op: pqUpdateValue, A: k, B: cborOf(f, "w")}},
		{{Op: pqInsert, A: k, B: v, C: p}, {Op: pqCAS, A: k, B: v, N: 2, C: cborOf(f, "w")}, {Op: pqCAS, A: k, B: cborOf(f, "w")}},
		{{Op: pqInsert, A: k, B: v, C: p}, {Op: pqRemove, A: k}, {Op: pqRemoveKeys, Many: []cbor.RawMessage{k, k2}}},
		{{Op: pqInsert, A: k, B: v, C: p}, {Op: pqRemoveRange, N: 1, B: p, M: 2, C: p2}, {Op: pqRemoveRange}, {Op: pqClear}},
	} {
		b, err := detcbor.Marshal(cmds)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	q := newPQM[int64, string, string](f, UnboundedCapacity)
	q.insert(1, "a", "x")
	q.insert(-1, "b", "y")
	var buf bytes.Buffer
	if err := q.m.Snapshot(&buf); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
}

// FuzzPriorityQueueApply applies hand-crafted commands to a bounded and an
// unbounded queue (they must never panic, the two trees must agree, the
// capacity must hold, and a snapshot must restore to the same queue), and
// restores the input as a snapshot.
func FuzzPriorityQueueApply(f *testing.F) {
	pqSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > maxFuzzInput {
			return
		}
		r := newPQM[int64, string, string](t, 3)
		if err := r.m.Restore(bytes.NewReader(data)); err == nil {
			r.check()
			if r.m.load().size > 3 {
				t.Fatalf("restored %d entries over capacity 3", r.m.load().size)
			}
		}
		var cmds []command
		if detcbor.Unmarshal(data, &cmds) != nil {
			return
		}
		for _, capacity := range []uint64{3, UnboundedCapacity} {
			q := newPQM[int64, string, string](t, capacity)
			twin := newPQM[int64, string, string](t, capacity)
			for _, c := range cmds {
				q.runRaw(c)
				twin.runRaw(c)
				q.check()
				if uint64(q.m.load().size) > capacity {
					t.Fatalf("%d entries over capacity %d", q.m.load().size, capacity)
				}
			}
			var a, b bytes.Buffer
			if err := q.m.Snapshot(&a); err != nil {
				t.Fatal(err)
			}
			if err := twin.m.Snapshot(&b); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(a.Bytes(), b.Bytes()) {
				t.Fatal("two replicas of the same commands differ")
			}
			back := newPQM[int64, string, string](t, capacity)
			if err := back.m.Restore(bytes.NewReader(a.Bytes())); err != nil {
				t.Fatalf("restore of a snapshot: %v", err)
			}
			if !slices.Equal(back.entries(), q.entries()) {
				t.Fatal("a restored snapshot differs")
			}
			back.check()
		}
	})
}
