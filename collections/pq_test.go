package collections_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/mosaik-go/mosaik/collections"
	"github.com/mosaik-go/mosaik/node"
)

type (
	pqW = collections.PriorityQueue[uint64, uint64, uint64]
	pqR = collections.PriorityQueueReader[uint64, uint64, uint64]
	pqE = collections.PQEntry[uint64, uint64, uint64]
)

// pqReads is the read side of writers and readers alike.
type pqReads interface {
	when
	Len() int
	Get(uint64) (uint64, bool)
	GetPriority(uint64) (uint64, bool)
	Contains(uint64) bool
	Min() (pqE, bool)
	Max() (pqE, bool)
}

// pqSetup opens a fresh queue: a writer on each of ws, a reader on each
// of rs, all online.
type pqSetup struct {
	t     *testing.T
	name  string
	nodes []*node.Node
}

func (s pqSetup) writer(n *node.Node) *pqW {
	s.t.Helper()
	w, err := collections.NewPriorityQueue[uint64, uint64, uint64](n, s.name, fast)
	if err != nil {
		s.t.Fatal(err)
	}
	closeAtEnd(s.t, w)
	online(s.t, w)
	return w
}

func (s pqSetup) reader(n *node.Node) *pqR {
	s.t.Helper()
	r, err := collections.NewPriorityQueueReader[uint64, uint64, uint64](n, s.name, fast)
	if err != nil {
		s.t.Fatal(err)
	}
	closeAtEnd(s.t, r)
	online(s.t, r)
	return r
}

// pqContent is a handle's entries in ascending order.
func pqContent(h any) []pqE {
	switch q := h.(type) {
	case *pqW:
		return slices.Collect(q.All())
	case *pqR:
		return slices.Collect(q.All())
	}
	panic(fmt.Sprintf("not a queue: %T", h))
}

// pqSame fails t unless every handle holds want (nil: the first's).
func pqSame(t *testing.T, want []pqE, hs ...any) {
	t.Helper()
	if want == nil && len(hs) > 0 {
		want = pqContent(hs[0])
	}
	for i, h := range hs {
		if got := pqContent(h); !slices.Equal(got, want) {
			t.Fatalf("handle %d holds %v, want %v", i, got, want)
		}
	}
}

func pqMinMax(t *testing.T, q pqReads, minP, maxP uint64) {
	t.Helper()
	lo, ok := q.Min()
	hi, ok2 := q.Max()
	if !ok || !ok2 || lo.Priority != minP || hi.Priority != maxP {
		t.Fatalf("min %v %v, max %v %v; want priorities %d and %d", lo, ok, hi, ok2, minP, maxP)
	}
}

func pqEmpty(t *testing.T, q pqReads) {
	t.Helper()
	if q.Len() != 0 {
		t.Fatalf("len %d, want empty", q.Len())
	}
	if e, ok := q.Min(); ok {
		t.Fatalf("min %v on an empty queue", e)
	}
	if e, ok := q.Max(); ok {
		t.Fatalf("max %v on an empty queue", e)
	}
}

func entries(ps ...uint64) []pqE {
	// Key i+1 at priority ps[i], value ten times the priority.
	out := make([]pqE, len(ps))
	for i, p := range ps {
		out[i] = pqE{Priority: p, Key: uint64(i + 1), Value: 10 * p}
	}
	return out
}

// pqCase ports one test of mosaik's tests/collections/depq.rs.
type pqCase = netCase[pqSetup]

// TestPriorityQueue ports tests/collections/depq.rs: every case opens a
// fresh queue on four shared nodes.
func TestPriorityQueue(t *testing.T) {
	nodes := startNodes(t, 4)
	runCases(t, 8, slices.Concat(pqCases, pqCASCases, pqBoundedCases), func(t *testing.T) pqSetup {
		return pqSetup{t: t, name: freshName(t), nodes: nodes}
	})
}

var pqCases = []pqCase{
	// mosaik: tests/collections/depq.rs smoke_no_catchup
	{"SmokeNoCatchup", func(t *testing.T, s pqSetup) {
		w, r := s.writer(s.nodes[0]), s.reader(s.nodes[1])
		ctx, do := subCtx(t), doer(t)
		pqEmpty(t, r)
		if r.Capacity() != collections.UnboundedCapacity || !r.IsEmpty() || r.Contains(1) {
			t.Fatal("empty reader accessors")
		}
		if _, ok := r.Get(1); ok {
			t.Fatal("get on empty")
		}
		do(w.Insert(ctx, 10, 1, 100))
		do(w.Insert(ctx, 5, 2, 200))
		v := do(w.Insert(ctx, 20, 3, 300))
		reach(t, v, r)
		for _, q := range []pqReads{w, r} {
			if lo, _ := q.Min(); lo != (pqE{5, 2, 200}) {
				t.Fatalf("min %v", lo)
			}
			if hi, _ := q.Max(); hi != (pqE{20, 3, 300}) {
				t.Fatalf("max %v", hi)
			}
		}
		v = do(w.Insert(ctx, 15, 1, 150)) // upsert moves key 1
		reach(t, v, r)
		if p, _ := r.GetPriority(1); r.Len() != 3 || p != 15 {
			t.Fatalf("after upsert: len %d, priority %d", r.Len(), p)
		}
		v = do(w.Extend(ctx, []pqE{{1, 4, 400}, {30, 5, 500}, {25, 6, 600}}))
		reach(t, v, r)
		pqMinMax(t, r, 1, 30)
		asc, desc := slices.Collect(r.All()), slices.Collect(r.Descending())
		if len(asc) != 6 || !slices.IsSortedFunc(asc, func(a, b pqE) int { return int(a.Priority) - int(b.Priority) }) {
			t.Fatalf("ascending %v", asc)
		}
		slices.Reverse(desc)
		if !slices.Equal(asc, desc) {
			t.Fatalf("descending is not the reverse of ascending: %v", desc)
		}
		if lo, _ := r.MinPriority(); lo != 1 {
			t.Fatalf("min priority %d", lo)
		}
		if hi, _ := r.MaxPriority(); hi != 30 {
			t.Fatalf("max priority %d", hi)
		}
		v = do(w.Remove(ctx, 4))
		reach(t, v, r)
		pqMinMax(t, r, 5, 30)
		v = do(w.Clear(ctx))
		reach(t, v, r)
		pqEmpty(t, r)
		pqEmpty(t, w)
	}},
	// mosaik: tests/collections/depq.rs catchup_single_reader, with 10 000
	// entries (mosaik: 100) loaded by Extend, so the reader catches up.
	{"CatchupSingleReader", func(t *testing.T, s pqSetup) {
		w := s.writer(s.nodes[0])
		ctx, do := subCtx(t), doer(t)
		const n = 10_000
		for b := range 4 {
			batch := make([]pqE, 0, n/4)
			for i := uint64(b * n / 4); i < uint64((b+1)*n/4); i++ {
				batch = append(batch, pqE{Priority: i * 10, Key: i, Value: i * 100})
			}
			do(w.Extend(ctx, batch))
		}
		v := do(w.Extend(ctx, []pqE{{n * 10, n, 1}, {n*10 + 10, n + 1, 2}, {n*10 + 20, n + 2, 3}}))
		r := s.reader(s.nodes[1])
		reach(t, v, r)
		if r.Len() != n+3 {
			t.Fatalf("reader holds %d", r.Len())
		}
		pqMinMax(t, r, 0, n*10+20)
		for _, k := range []uint64{0, 1, 4999, n - 1} {
			if p, ok := r.GetPriority(k); !ok || p != k*10 {
				t.Fatalf("priority of %d: %d %v", k, p, ok)
			}
			if val, ok := r.Get(k); !ok || val != k*100 {
				t.Fatalf("value of %d: %d %v", k, val, ok)
			}
		}
		pqSame(t, nil, w, r)
		v = do(w.Remove(ctx, 50))
		reach(t, v, r)
		if r.Len() != n+2 || r.Contains(50) {
			t.Fatalf("after remove: len %d", r.Len())
		}
	}},
	// mosaik: tests/collections/depq.rs multiple_readers
	{"MultipleReaders", func(t *testing.T, s pqSetup) {
		w := s.writer(s.nodes[0])
		rs := []*pqR{s.reader(s.nodes[1]), s.reader(s.nodes[2]), s.reader(s.nodes[3])}
		ctx, do := subCtx(t), doer(t)
		v := do(w.Extend(ctx, entries(10, 20, 30, 40, 50)))
		for _, r := range rs {
			reach(t, v, r)
			pqMinMax(t, r, 10, 50)
		}
		v = do(w.Insert(ctx, 60, 6, 600))
		for _, r := range rs {
			reach(t, v, r)
			pqMinMax(t, r, 10, 60)
		}
		v = do(w.Remove(ctx, 1))
		for _, r := range rs {
			reach(t, v, r)
			pqMinMax(t, r, 20, 60)
		}
		pqSame(t, nil, w, rs[0], rs[1], rs[2])
	}},
	// mosaik: tests/collections/depq.rs multiple_writers
	{"MultipleWriters", func(t *testing.T, s pqSetup) {
		w0, w1 := s.writer(s.nodes[0]), s.writer(s.nodes[1])
		r := s.reader(s.nodes[2])
		agree(t, w0, w1, r)
		ctx := subCtx(t)
		retried(t, w0, func() (collections.Version, error) { return w0.Insert(ctx, 10, 1, 100) })
		retried(t, w1, func() (collections.Version, error) { return w1.Insert(ctx, 20, 2, 200) })
		retried(t, w0, func() (collections.Version, error) { return w0.Insert(ctx, 30, 3, 300) })
		v := retried(t, w1, func() (collections.Version, error) { return w1.Extend(ctx, []pqE{{40, 4, 400}, {50, 5, 500}}) })
		reach(t, v, w0, w1, r)
		pqSame(t, entries(10, 20, 30, 40, 50), w0, w1, r)
	}},
	// mosaik: tests/collections/depq.rs catchup_multiple_readers
	{"CatchupMultipleReaders", func(t *testing.T, s pqSetup) {
		w := s.writer(s.nodes[0])
		ctx, do := subCtx(t), doer(t)
		var batch []pqE
		for i := range uint64(50) {
			batch = append(batch, pqE{i, i, i * 10})
		}
		do(w.Extend(ctx, batch))
		v := do(w.Insert(ctx, 999, 999, 999))
		r1 := s.reader(s.nodes[1])
		reach(t, v, r1)
		if r1.Len() != 51 {
			t.Fatalf("r1 holds %d", r1.Len())
		}
		batch = batch[:0]
		for i := range uint64(30) {
			batch = append(batch, pqE{100 + i, 100 + i, i})
		}
		do(w.Extend(ctx, batch))
		v = do(w.Insert(ctx, 1000, 1000, 1000))
		r2 := s.reader(s.nodes[2])
		reach(t, v, r1, r2)
		if r2.Len() != 82 {
			t.Fatalf("r2 holds %d", r2.Len())
		}
		pqSame(t, nil, w, r1, r2)
	}},
	// mosaik: tests/collections/depq.rs insert_overwrite
	{"InsertOverwrite", func(t *testing.T, s pqSetup) {
		w, r := s.writer(s.nodes[0]), s.reader(s.nodes[1])
		ctx, do := subCtx(t), doer(t)
		do(w.Insert(ctx, 10, 1, 100))
		v := do(w.Insert(ctx, 99, 1, 999))
		reach(t, v, r)
		pqSame(t, []pqE{{99, 1, 999}}, w, r)
		pqMinMax(t, r, 99, 99)
	}},
	// mosaik: tests/collections/depq.rs update_priority
	{"UpdatePriority", func(t *testing.T, s pqSetup) {
		w, r := s.writer(s.nodes[0]), s.reader(s.nodes[1])
		ctx, do := subCtx(t), doer(t)
		do(w.Extend(ctx, entries(10, 20, 30)))
		do(w.UpdatePriority(ctx, 1, 50))
		v := do(w.UpdatePriority(ctx, 999, 1)) // absent: no-op
		reach(t, v, r)
		pqSame(t, []pqE{{20, 2, 200}, {30, 3, 300}, {50, 1, 100}}, w, r)
		pqMinMax(t, r, 20, 50)
	}},
	// mosaik: tests/collections/depq.rs update_value
	{"UpdateValue", func(t *testing.T, s pqSetup) {
		w, r := s.writer(s.nodes[0]), s.reader(s.nodes[1])
		ctx, do := subCtx(t), doer(t)
		do(w.Extend(ctx, entries(10, 20, 30)))
		do(w.UpdateValue(ctx, 2, 999))
		v := do(w.UpdateValue(ctx, 999, 1))
		reach(t, v, r)
		pqSame(t, []pqE{{10, 1, 100}, {20, 2, 999}, {30, 3, 300}}, w, r)
	}},
	// mosaik: tests/collections/depq.rs remove_nonexistent
	{"RemoveNonexistent", func(t *testing.T, s pqSetup) {
		w, r := s.writer(s.nodes[0]), s.reader(s.nodes[1])
		ctx, do := subCtx(t), doer(t)
		do(w.Extend(ctx, entries(10, 20, 30)))
		v := do(w.Remove(ctx, 999))
		reach(t, v, r)
		pqSame(t, entries(10, 20, 30), w, r)
	}},
	// mosaik: tests/collections/depq.rs clear_then_rebuild
	{"ClearThenRebuild", func(t *testing.T, s pqSetup) {
		w, r := s.writer(s.nodes[0]), s.reader(s.nodes[1])
		ctx, do := subCtx(t), doer(t)
		do(w.Extend(ctx, entries(10, 20, 30)))
		do(w.Clear(ctx))
		v := do(w.Insert(ctx, 99, 100, 1000))
		reach(t, v, r)
		pqSame(t, []pqE{{99, 100, 1000}}, w, r)
	}},
	// mosaik: tests/collections/depq.rs extend_empty
	{"ExtendEmpty", func(t *testing.T, s pqSetup) {
		w := s.writer(s.nodes[0])
		ctx, do := subCtx(t), doer(t)
		before := w.Version()
		if v := do(w.Extend(ctx, nil)); v != before || w.Len() != 0 {
			t.Fatalf("empty extend: version %d (was %d), len %d", v, before, w.Len())
		}
		do(w.Insert(ctx, 1, 1, 1))
		if w.Len() != 1 {
			t.Fatal("insert after an empty extend")
		}
	}},
	// mosaik: tests/collections/depq.rs extend_overwrite
	{"ExtendOverwrite", func(t *testing.T, s pqSetup) {
		w, r := s.writer(s.nodes[0]), s.reader(s.nodes[1])
		ctx, do := subCtx(t), doer(t)
		do(w.Extend(ctx, entries(10, 20, 30)))
		v := do(w.Extend(ctx, []pqE{{15, 1, 1}, {35, 3, 3}, {40, 4, 4}}))
		reach(t, v, r)
		pqSame(t, []pqE{{15, 1, 1}, {20, 2, 200}, {35, 3, 3}, {40, 4, 4}}, w, r)
	}},
	// mosaik: tests/collections/depq.rs many_writers_many_readers
	{"ManyWritersManyReaders", func(t *testing.T, s pqSetup) {
		w0, w1 := s.writer(s.nodes[0]), s.writer(s.nodes[1])
		r0, r1 := s.reader(s.nodes[2]), s.reader(s.nodes[3])
		agree(t, w0, w1, r0, r1)
		ctx := subCtx(t)
		retried(t, w0, func() (collections.Version, error) { return w0.Extend(ctx, entries(10, 20, 30)) })
		retried(t, w1, func() (collections.Version, error) { return w1.Extend(ctx, []pqE{{40, 4, 400}, {50, 5, 500}}) })
		retried(t, w0, func() (collections.Version, error) { return w0.Remove(ctx, 1) })
		v := retried(t, w1, func() (collections.Version, error) { return w1.Insert(ctx, 60, 6, 600) })
		reach(t, v, w0, w1, r0, r1)
		pqSame(t, []pqE{{20, 2, 200}, {30, 3, 300}, {40, 4, 400}, {50, 5, 500}, {60, 6, 600}}, w0, w1, r0, r1)
	}},
	// mosaik: tests/collections/depq.rs late_writer_catchup
	{"LateWriterCatchup", func(t *testing.T, s pqSetup) {
		w0 := s.writer(s.nodes[0])
		ctx, do := subCtx(t), doer(t)
		v := do(w0.Extend(ctx, entries(10, 20, 30, 40, 50)))
		w1 := s.writer(s.nodes[1])
		agree(t, w0, w1)
		reach(t, v, w1)
		if w1.Len() != 5 {
			t.Fatalf("late writer holds %d", w1.Len())
		}
		v = retried(t, w1, func() (collections.Version, error) { return w1.Insert(ctx, 99, 99, 990) })
		reach(t, v, w0)
		pqSame(t, nil, w0, w1)
		if w0.Len() != 6 {
			t.Fatalf("writer holds %d", w0.Len())
		}
	}},
	// mosaik: tests/collections/depq.rs writer_reads_own_writes
	{"WriterReadsOwnWrites", func(t *testing.T, s pqSetup) {
		w, err := collections.NewPriorityQueue[uint64, string, string](s.nodes[0], s.name, fast)
		if err != nil {
			t.Fatal(err)
		}
		closeAtEnd(t, w)
		online(t, w)
		ctx, do := subCtx(t), doer(t)
		do(w.Insert(ctx, 30, "c", "third"))
		do(w.Insert(ctx, 10, "a", "first"))
		do(w.Insert(ctx, 20, "b", "second"))
		if v, ok := w.Get("b"); !ok || v != "second" {
			t.Fatalf("get b: %q %v", v, ok)
		}
		var vals []string
		for e := range w.All() {
			vals = append(vals, e.Value)
		}
		if !slices.Equal(vals, []string{"first", "second", "third"}) {
			t.Fatalf("order %v", vals)
		}
	}},
	// mosaik: tests/collections/depq.rs remove_all_entries
	{"RemoveAllEntries", func(t *testing.T, s pqSetup) {
		w, r := s.writer(s.nodes[0]), s.reader(s.nodes[1])
		ctx, do := subCtx(t), doer(t)
		do(w.Extend(ctx, entries(10, 20, 30)))
		var v collections.Version
		for k := range uint64(3) {
			v = do(w.Remove(ctx, k+1))
		}
		reach(t, v, r)
		pqEmpty(t, r)
		v = do(w.Insert(ctx, 5, 5, 5))
		reach(t, v, r)
		pqSame(t, []pqE{{5, 5, 5}}, w, r)
	}},
	// mosaik: tests/collections/depq.rs remove_keys
	{"RemoveKeys", func(t *testing.T, s pqSetup) {
		w, r := s.writer(s.nodes[0]), s.reader(s.nodes[1])
		ctx, do := subCtx(t), doer(t)
		do(w.Extend(ctx, entries(10, 20, 30, 40, 50)))
		v := do(w.RemoveKeys(ctx, []uint64{2, 4, 5}))
		reach(t, v, r)
		pqSame(t, []pqE{{10, 1, 100}, {30, 3, 300}}, w, r)
		pqMinMax(t, r, 10, 30)
		v = do(w.RemoveKeys(ctx, []uint64{1, 99, 100}))
		reach(t, v, r)
		pqSame(t, []pqE{{30, 3, 300}}, w, r)
		if v2 := do(w.RemoveKeys(ctx, nil)); v2 != v {
			t.Fatalf("empty remove keys sent a command: %d after %d", v2, v)
		}
	}},
	// mosaik: tests/collections/depq.rs remove_range_empty
	{"RemoveRangeEmpty", func(t *testing.T, s pqSetup) {
		w, r := s.writer(s.nodes[0]), s.reader(s.nodes[1])
		ctx, do := subCtx(t), doer(t)
		v := do(w.RemoveRange(ctx, collections.Unbounded[uint64](), collections.Excluded[uint64](100)))
		reach(t, v, r)
		pqEmpty(t, r)
		if r.Rejected() != 0 {
			t.Fatal("a valid range was rejected")
		}
	}},
	// mosaik: tests/collections/sync/depq.rs remove_range_sync, with each
	// kind of bound: 100 entries, remove [20, 50), then (80, 90], then
	// everything below 5; a late reader agrees.
	{"RemoveRangeSync", func(t *testing.T, s pqSetup) {
		w, r := s.writer(s.nodes[0]), s.reader(s.nodes[1])
		ctx, do := subCtx(t), doer(t)
		var all []pqE
		for i := range uint64(100) {
			all = append(all, pqE{i, i, i * 10})
		}
		do(w.Extend(ctx, all))
		v := do(w.RemoveRange(ctx, collections.Included[uint64](20), collections.Excluded[uint64](50)))
		reach(t, v, r)
		if r.Len() != 70 || r.Contains(20) || r.Contains(49) || !r.Contains(50) || !r.Contains(19) {
			t.Fatalf("after [20, 50): len %d", r.Len())
		}
		do(w.RemoveRange(ctx, collections.Excluded[uint64](80), collections.Included[uint64](90)))
		v = do(w.RemoveRange(ctx, collections.Unbounded[uint64](), collections.Excluded[uint64](5)))
		r2 := s.reader(s.nodes[2])
		reach(t, v, r, r2)
		want := slices.Concat(all[5:20], all[50:81], all[91:])
		pqSame(t, want, w, r, r2)
	}},
	// mosaik: tests/collections/sync/depq.rs min_max_after_sync
	{"MinMaxAfterSync", func(t *testing.T, s pqSetup) {
		w, r1 := s.writer(s.nodes[0]), s.reader(s.nodes[1])
		v := doer(t)(w.Extend(subCtx(t), []pqE{{500, 1, 10}, {50, 2, 20}, {999, 3, 30}, {1, 4, 40}, {250, 5, 50}}))
		r2 := s.reader(s.nodes[2])
		reach(t, v, r1, r2)
		for _, r := range []*pqR{r1, r2} {
			lo, _ := r.Min()
			hi, _ := r.Max()
			if lo != (pqE{1, 4, 40}) || hi != (pqE{999, 3, 30}) {
				t.Fatalf("min %v max %v", lo, hi)
			}
		}
	}},
	// mosaik: tests/collections/depq.rs iter_ordering_after_mutations
	{"IterOrderingAfterMutations", func(t *testing.T, s pqSetup) {
		w, r := s.writer(s.nodes[0]), s.reader(s.nodes[1])
		ctx, do := subCtx(t), doer(t)
		v := do(w.Extend(ctx, []pqE{{30, 3, 3}, {10, 1, 1}, {50, 5, 5}, {20, 2, 2}, {40, 4, 4}}))
		reach(t, v, r)
		prios := func(seq func(func(pqE) bool)) (ps []uint64) {
			for e := range seq {
				ps = append(ps, e.Priority)
			}
			return ps
		}
		if got := prios(r.All()); !slices.Equal(got, []uint64{10, 20, 30, 40, 50}) {
			t.Fatalf("ascending %v", got)
		}
		if got := prios(r.Descending()); !slices.Equal(got, []uint64{50, 40, 30, 20, 10}) {
			t.Fatalf("descending %v", got)
		}
		do(w.Remove(ctx, 3))
		v = do(w.UpdatePriority(ctx, 2, 45))
		reach(t, v, r)
		if got := prios(r.All()); !slices.Equal(got, []uint64{10, 40, 45, 50}) {
			t.Fatalf("ascending after mutations %v", got)
		}
		if got := prios(r.Descending()); !slices.Equal(got, []uint64{50, 45, 40, 10}) {
			t.Fatalf("descending after mutations %v", got)
		}
	}},
}
