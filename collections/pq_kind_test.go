package collections

import (
	"bytes"
	"cmp"
	"errors"
	"math"
	"slices"
	"testing"

	"github.com/fxamacker/cbor/v2"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/groups"
	"github.com/mosaik-go/mosaik/internal/detcbor"
)

// pqm drives a priority queue's machine without a group: commands are
// applied one per run, at increasing log indexes.
type pqm[P cmp.Ordered, K, V any] struct {
	t     testing.TB
	m     *machine[*pqState[P, K, V]]
	index uint64
}

// testMachine is the one place these tests make a machine.
func testMachine[S any](k kind[S], tag string) *machine[S] {
	return newMachine(k, catalog.IDFromString("test"), tag, "test")
}

func newPQM[P cmp.Ordered, K, V any](t testing.TB, capacity uint64) *pqm[P, K, V] {
	return &pqm[P, K, V]{t: t, m: testMachine(kind[*pqState[P, K, V]](pqKind[P, K, V]{capacity: capacity}), "depq")}
}

// run applies cmds as one run, each after a trip through the wire
// encoding (absent arguments arrive as CBOR null).
func (q *pqm[P, K, V]) run(cmds ...command) {
	for i := range cmds {
		b, err := detcbor.Marshal(cmds[i])
		if err != nil {
			q.t.Fatal(err)
		}
		cmds[i] = command{}
		if err := detcbor.Unmarshal(b, &cmds[i]); err != nil {
			q.t.Fatal(err)
		}
	}
	q.runRaw(cmds...)
}

// runRaw applies cmds as they are, as the group hands a machine the
// commands it decoded from the log.
func (q *pqm[P, K, V]) runRaw(cmds ...command) {
	q.index++
	q.m.Apply(groups.ApplyContext{FirstIndex: q.index}, cmds)
	q.index += uint64(len(cmds)) - 1
}

func cborOf(t testing.TB, v any) cbor.RawMessage {
	t.Helper()
	b, err := encode(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (q *pqm[P, K, V]) insert(p P, k K, v V) {
	q.run(command{Op: pqInsert, A: cborOf(q.t, k), B: cborOf(q.t, v), C: cborOf(q.t, p)})
}

func (q *pqm[P, K, V]) removeRange(lo, hi Bound[P]) {
	c := command{Op: pqRemoveRange, N: uint64(lo.kind), M: uint64(hi.kind)}
	if lo.kind != boundUnbounded {
		c.B = cborOf(q.t, lo.p)
	}
	if hi.kind != boundUnbounded {
		c.C = cborOf(q.t, hi.p)
	}
	q.run(c)
}

func (q *pqm[P, K, V]) entries() []PQEntry[P, K, V] {
	var out []PQEntry[P, K, V]
	q.m.load().state.byPrio.Ascend(func(it pqItem[P, K, V]) bool { out = append(out, it.entry()); return true })
	return out
}

func (q *pqm[P, K, V]) keys() []K {
	var out []K
	for _, e := range q.entries() {
		out = append(out, e.Key)
	}
	return out
}

// check asserts the two trees agree and the capacity holds.
func (q *pqm[P, K, V]) check() {
	q.t.Helper()
	s := q.m.load().state
	if s.byKey.Len() != s.byPrio.Len() {
		q.t.Fatalf("byKey holds %d, byPrio %d", s.byKey.Len(), s.byPrio.Len())
	}
	s.byKey.Ascend(func(it pqItem[P, K, V]) bool {
		got, ok := s.byPrio.Get(it)
		if !ok || got.venc != it.venc || got.penc != it.penc {
			q.t.Fatalf("key %q not in byPrio as in byKey", it.kenc)
		}
		return true
	})
}

func TestPQKind_BoundedEvictsLowestThenSmallestKey(t *testing.T) {
	q := newPQM[int64, string, string](t, 3)
	q.insert(10, "b", "x")
	q.insert(10, "a", "x")
	q.insert(20, "c", "x")
	q.insert(30, "d", "x") // evicts (10, "a"): lowest priority, smallest key
	if got := q.keys(); !slices.Equal(got, []string{"b", "c", "d"}) {
		t.Fatalf("after evicting: %v", got)
	}
	q.insert(5, "e", "x") // the new entry is the lowest: it is evicted itself
	if got := q.keys(); !slices.Equal(got, []string{"b", "c", "d"}) {
		t.Fatalf("a new lowest entry stayed: %v", got)
	}
	q.insert(1, "b", "y") // an upsert never evicts, even to the lowest priority
	if got := q.keys(); !slices.Equal(got, []string{"b", "c", "d"}) {
		t.Fatalf("upsert evicted: %v", got)
	}
	// An extend evicts after each entry: three higher entries push out all.
	q.run(command{Op: pqExtend, Many: []cbor.RawMessage{
		cborOf(t, "f"), cborOf(t, "x"), cborOf(t, int64(40)),
		cborOf(t, "g"), cborOf(t, "x"), cborOf(t, int64(50)),
		cborOf(t, "h"), cborOf(t, "x"), cborOf(t, int64(60)),
	}})
	if got := q.keys(); !slices.Equal(got, []string{"f", "g", "h"}) {
		t.Fatalf("after extend: %v", got)
	}
	q.run(command{Op: pqUpdatePriority, A: cborOf(t, "h"), C: cborOf(t, int64(-1))})
	if got := q.keys(); !slices.Equal(got, []string{"h", "f", "g"}) {
		t.Fatalf("after update priority: %v", got)
	}
	q.check()
}

func TestPQKind_PrioritiesInNaturalOrder(t *testing.T) {
	// CBOR orders -1 (0x20) after 1 (0x01) and floats by their bits; the
	// queue must not.
	ints := newPQM[int64, uint64, uint64](t, UnboundedCapacity)
	for i, p := range []int64{3, -1, 0, math.MinInt64, 1 << 40, -300} {
		ints.insert(p, uint64(i), 0)
	}
	var ps []int64
	for _, e := range ints.entries() {
		ps = append(ps, e.Priority)
	}
	if !slices.IsSorted(ps) {
		t.Fatalf("int priorities out of order: %v", ps)
	}
	floats := newPQM[float64, uint64, uint64](t, UnboundedCapacity)
	for i, p := range []float64{2.5, -0.5, math.Inf(1), math.Inf(-1), 0, -1e300, 1e-300} {
		floats.insert(p, uint64(i), 0)
	}
	var fs []float64
	for _, e := range floats.entries() {
		fs = append(fs, e.Priority)
	}
	if !slices.IsSorted(fs) {
		t.Fatalf("float priorities out of order: %v", fs)
	}
}

func TestPQKind_RemoveRange(t *testing.T) {
	for _, tc := range []struct {
		name   string
		lo, hi Bound[int64]
		want   []int64 // priorities left of -20, -10, 0, 10, 20, 30
	}{
		{"included both", Included[int64](-10), Included[int64](20), []int64{-20, 30}},
		{"excluded both", Excluded[int64](-10), Excluded[int64](20), []int64{-20, -10, 20, 30}},
		{"included excluded", Included[int64](-10), Excluded[int64](20), []int64{-20, 20, 30}},
		{"excluded included", Excluded[int64](-10), Included[int64](20), []int64{-20, -10, 30}},
		{"unbounded start", Unbounded[int64](), Excluded[int64](10), []int64{10, 20, 30}},
		{"unbounded end", Excluded[int64](10), Unbounded[int64](), []int64{-20, -10, 0, 10}},
		{"unbounded", Unbounded[int64](), Unbounded[int64](), nil},
		{"start past end", Included[int64](20), Included[int64](-10), []int64{-20, -10, 0, 10, 20, 30}},
		{"one point", Included[int64](0), Included[int64](0), []int64{-20, -10, 10, 20, 30}},
		{"empty point", Included[int64](0), Excluded[int64](0), []int64{-20, -10, 0, 10, 20, 30}},
		{"between", Excluded[int64](1), Excluded[int64](9), []int64{-20, -10, 0, 10, 20, 30}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := newPQM[int64, string, string](t, UnboundedCapacity)
			for i, p := range []int64{-20, -10, 0, 10, 20, 30} {
				q.insert(p, string(rune('a'+i)), "v")
				q.insert(p, string(rune('A'+i)), "v") // two keys per priority
			}
			q.removeRange(tc.lo, tc.hi)
			var got []int64
			for _, e := range q.entries() {
				if len(got) == 0 || got[len(got)-1] != e.Priority {
					got = append(got, e.Priority)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("left %v, want %v", got, tc.want)
			}
			if q.m.rejected.Load() != 0 {
				t.Fatal("a valid range was rejected")
			}
			q.check()
		})
	}
}

func TestPQKind_CompareAndSwapValue(t *testing.T) {
	q := newPQM[uint64, uint64, uint64](t, UnboundedCapacity)
	q.insert(10, 1, 100)
	q.insert(20, 2, 200)
	cas := func(k, exp uint64, nv *uint64) outcome {
		c := command{Op: pqCAS, A: cborOf(t, k), B: cborOf(t, exp)}
		if nv != nil {
			c.N, c.C = 2, cborOf(t, *nv)
		}
		q.run(c)
		return q.m.outcomes.get(q.index)
	}
	v := uint64(150)
	if o := cas(1, 100, &v); o != applied {
		t.Fatalf("matching CAS: %v", o)
	}
	if o := cas(1, 100, &v); o != noop {
		t.Fatalf("stale CAS: %v", o)
	}
	if o := cas(9, 100, &v); o != noop {
		t.Fatalf("CAS on a missing key: %v", o)
	}
	if o := cas(2, 200, nil); o != applied {
		t.Fatalf("deleting CAS: %v", o)
	}
	if got := q.entries(); !slices.Equal(got, []PQEntry[uint64, uint64, uint64]{{10, 1, 150}}) {
		t.Fatalf("after CAS: %v", got)
	}
	q.check()
}

// Hand-crafted commands are no-ops, counted, and never panic.
func TestPQKind_InvalidCommands(t *testing.T) {
	q := newPQM[int64, string, string](t, 2)
	q.insert(1, "a", "x")
	k, v, p := cborOf(t, "k"), cborOf(t, "v"), cborOf(t, int64(1))
	nonCanonical := cbor.RawMessage{0x18, 0x01} // 1 in two bytes
	for _, c := range []command{
		{Op: 0},
		{Op: 200},
		{Op: pqInsert, A: k, B: v},
		{Op: pqInsert, A: k, B: v, C: nonCanonical},
		{Op: pqInsert, A: p, B: v, C: p},
		{Op: pqExtend, Many: []cbor.RawMessage{k, v}},
		{Op: pqExtend, Many: []cbor.RawMessage{k, v, p, k, v, v}},
		{Op: pqUpdatePriority, A: k},
		{Op: pqUpdateValue, A: k, B: p},
		{Op: pqCAS, A: k},
		{Op: pqCAS, A: k, B: v, N: 1, C: v},
		{Op: pqCAS, A: k, B: v, N: 2},
		{Op: pqRemove},
		{Op: pqRemoveKeys, Many: []cbor.RawMessage{k, p}},
		{Op: pqRemoveRange, N: 3},
		{Op: pqRemoveRange, N: 1 + 256},
		{Op: pqRemoveRange, N: 1},
		{Op: pqRemoveRange, M: 2, C: k},
	} {
		before := q.m.rejected.Load()
		q.run(c)
		if q.m.rejected.Load() != before+1 {
			t.Fatalf("%+v was not rejected", c)
		}
	}
	if got := q.keys(); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("invalid commands changed the queue: %v", got)
	}
	q.check()
}

func TestPQKind_SnapshotRoundTrip(t *testing.T) {
	q := newPQM[float64, string, uint64](t, 5)
	for i, p := range []float64{3, -1, 2, 2, 7, -1, 0.5} {
		q.insert(p, string(rune('a'+i)), uint64(i))
	}
	var buf bytes.Buffer
	if err := q.m.Snapshot(&buf); err != nil {
		t.Fatal(err)
	}
	r := newPQM[float64, string, uint64](t, 5)
	if err := r.m.Restore(bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(r.entries(), q.entries()) || r.m.load().version != q.m.load().version {
		t.Fatalf("restored %v at %d, want %v at %d", r.entries(), r.m.load().version, q.entries(), q.m.load().version)
	}
	r.check()
	// A smaller capacity refuses the snapshot.
	small := newPQM[float64, string, uint64](t, 4)
	if err := small.m.Restore(bytes.NewReader(buf.Bytes())); err == nil {
		t.Fatal("a snapshot over the capacity was restored")
	}
}

func TestPQ_ZeroCapacityRefused(t *testing.T) {
	if _, err := NewBoundedPriorityQueue[int, int, int](nil, "q", 0); !errors.Is(err, ErrInvalidCapacity) {
		t.Fatalf("capacity 0: %v", err)
	}
	if _, err := NewBoundedPriorityQueueReader[int, int, int](nil, "q", 0); !errors.Is(err, ErrInvalidCapacity) {
		t.Fatalf("capacity 0: %v", err)
	}
}
