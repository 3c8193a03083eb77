package collections_test

import (
	"maps"
	"slices"
	"testing"

	"github.com/mosaik-go/mosaik/collections"
	"github.com/mosaik-go/mosaik/node"
)

type (
	mapW  = collections.Map[uint64, uint64]
	mapR  = collections.MapReader[uint64, uint64]
	mapKV = collections.KV[uint64, uint64]
)

// mapSetup opens fresh maps of one name on shared nodes.
type mapSetup struct {
	t     *testing.T
	name  string
	nodes []*node.Node
}

func (s mapSetup) writer(n *node.Node) *mapW {
	s.t.Helper()
	w, err := collections.NewMap[uint64, uint64](n, s.name, fast)
	if err != nil {
		s.t.Fatal(err)
	}
	closeAtEnd(s.t, w)
	online(s.t, w)
	return w
}

func (s mapSetup) reader(n *node.Node) *mapR {
	s.t.Helper()
	r, err := collections.NewMapReader[uint64, uint64](n, s.name, fast)
	if err != nil {
		s.t.Fatal(err)
	}
	closeAtEnd(s.t, r)
	online(s.t, r)
	return r
}

// mapContent is a handle's entries.
func mapContent(h any) map[uint64]uint64 {
	switch m := h.(type) {
	case *mapW:
		return maps.Collect(m.All())
	case *mapR:
		return maps.Collect(m.All())
	}
	panic("not a map")
}

// mapSame fails t unless every handle holds want, in key order.
func mapSame(t *testing.T, want map[uint64]uint64, hs ...any) {
	t.Helper()
	keys := slices.Sorted(maps.Keys(want))
	for i, h := range hs {
		got := mapContent(h)
		if !maps.Equal(got, want) {
			t.Fatalf("handle %d holds %v, want %v", i, got, want)
		}
		var order []uint64
		switch m := h.(type) {
		case *mapW:
			order = slices.Collect(m.Keys())
		case *mapR:
			order = slices.Collect(m.Keys())
		}
		if !slices.Equal(order, keys) {
			t.Fatalf("handle %d iterates %v, want %v", i, order, keys)
		}
	}
}

// kvs returns key i+1 → value vs[i].
func kvs(vs ...uint64) []mapKV {
	out := make([]mapKV, len(vs))
	for i, v := range vs {
		out[i] = mapKV{Key: uint64(i + 1), Value: v}
	}
	return out
}

// mapCAS runs a CompareAndSwap and checks whether it applied.
func mapCAS(t *testing.T, w *mapW, k uint64, expected, new *uint64, wantApplied bool) collections.Version {
	t.Helper()
	ok, v, err := w.CompareAndSwap(subCtx(t), k, expected, new)
	if err != nil {
		t.Fatal(err)
	}
	if ok != wantApplied {
		t.Fatalf("CAS %d %v→%v applied %v, want %v", k, expected, new, ok, wantApplied)
	}
	return v
}

// TestMap ports tests/collections/map.rs (Map<u64,u64> unless noted):
// every case opens a fresh map on four shared nodes.
func TestMap(t *testing.T) {
	nodes := startNodes(t, 4)
	runCases(t, 8, slices.Concat(mapCases, mapCASCases), func(t *testing.T) mapSetup {
		return mapSetup{t: t, name: freshName(t), nodes: nodes}
	})
}

var mapCases = []netCase[mapSetup]{
	// mosaik: tests/collections/map.rs smoke_no_catchup
	{"SmokeNoCatchup", func(t *testing.T, s mapSetup) {
		w, r := s.writer(s.nodes[0]), s.reader(s.nodes[1])
		ctx, do := subCtx(t), doer(t)
		if _, ok := r.Get(1); ok || r.Len() != 0 || !r.IsEmpty() || len(mapContent(r)) != 0 ||
			len(slices.Collect(r.Keys())) != 0 || len(slices.Collect(r.Values())) != 0 {
			t.Fatal("empty reader accessors")
		}
		do(w.Insert(ctx, 1, 10))
		do(w.Insert(ctx, 2, 20))
		v := do(w.Insert(ctx, 1, 100))
		reach(t, v, r)
		if r.Len() != 2 {
			t.Fatalf("len %d", r.Len())
		}
		v = do(w.Extend(ctx, []mapKV{{3, 30}, {4, 40}, {5, 50}}))
		reach(t, v, r)
		mapSame(t, map[uint64]uint64{1: 100, 2: 20, 3: 30, 4: 40, 5: 50}, w, r)
		if vals := slices.Collect(r.Values()); !slices.Equal(vals, []uint64{100, 20, 30, 40, 50}) {
			t.Fatalf("values %v", vals)
		}
		v = do(w.Remove(ctx, 3))
		reach(t, v, r)
		if r.Len() != 4 || r.Contains(3) {
			t.Fatal("remove")
		}
		v = do(w.Clear(ctx))
		reach(t, v, r)
		mapSame(t, map[uint64]uint64{}, w, r)
	}},
	// mosaik: tests/collections/map.rs catchup_single_reader, with 10 000
	// entries (mosaik: 100) loaded by Extend, so the reader catches up.
	{"CatchupSingleReader", func(t *testing.T, s mapSetup) {
		w := s.writer(s.nodes[0])
		ctx, do := subCtx(t), doer(t)
		const n = 10_000
		want := map[uint64]uint64{}
		for b := range 4 {
			batch := make([]mapKV, 0, n/4)
			for i := uint64(b * n / 4); i < uint64((b+1)*n/4); i++ {
				batch = append(batch, mapKV{i, i * 10})
				want[i] = i * 10
			}
			do(w.Extend(ctx, batch))
		}
		v := do(w.Extend(ctx, []mapKV{{n, 1}, {n + 1, 2}, {n + 2, 3}}))
		want[n], want[n+1], want[n+2] = 1, 2, 3
		r := s.reader(s.nodes[1])
		reach(t, v, r)
		mapSame(t, want, w, r)
		v = do(w.Remove(ctx, 50))
		reach(t, v, r)
		if r.Len() != n+2 || r.Contains(50) {
			t.Fatalf("after remove: len %d", r.Len())
		}
	}},
	// mosaik: tests/collections/map.rs multiple_readers
	{"MultipleReaders", func(t *testing.T, s mapSetup) {
		w := s.writer(s.nodes[0])
		rs := []any{w, s.reader(s.nodes[1]), s.reader(s.nodes[2]), s.reader(s.nodes[3])}
		ctx, do := subCtx(t), doer(t)
		want := map[uint64]uint64{1: 10, 2: 20, 3: 30, 4: 40, 5: 50}
		v := do(w.Extend(ctx, kvs(10, 20, 30, 40, 50)))
		for _, r := range rs {
			reach(t, v, r.(when))
		}
		mapSame(t, want, rs...)
		v = do(w.Insert(ctx, 6, 60))
		want[6] = 60
		for _, r := range rs {
			reach(t, v, r.(when))
		}
		mapSame(t, want, rs...)
		v = do(w.Remove(ctx, 1))
		delete(want, 1)
		for _, r := range rs {
			reach(t, v, r.(when))
		}
		mapSame(t, want, rs...)
	}},
	// mosaik: tests/collections/map.rs multiple_writers
	{"MultipleWriters", func(t *testing.T, s mapSetup) {
		w0, w1, r := s.writer(s.nodes[0]), s.writer(s.nodes[1]), s.reader(s.nodes[2])
		agree(t, w0, w1, r)
		ctx := subCtx(t)
		retried(t, w0, func() (collections.Version, error) { return w0.Insert(ctx, 1, 10) })
		retried(t, w1, func() (collections.Version, error) { return w1.Insert(ctx, 2, 20) })
		retried(t, w0, func() (collections.Version, error) { return w0.Insert(ctx, 3, 30) })
		v := retried(t, w1, func() (collections.Version, error) { return w1.Extend(ctx, []mapKV{{4, 40}, {5, 50}}) })
		reach(t, v, w0, w1, r)
		mapSame(t, map[uint64]uint64{1: 10, 2: 20, 3: 30, 4: 40, 5: 50}, w0, w1, r)
	}},
	// mosaik: tests/collections/map.rs catchup_multiple_readers
	{"CatchupMultipleReaders", func(t *testing.T, s mapSetup) {
		w := s.writer(s.nodes[0])
		ctx, do := subCtx(t), doer(t)
		var batch []mapKV
		for i := range uint64(50) {
			batch = append(batch, mapKV{i, i})
		}
		do(w.Extend(ctx, batch))
		v := do(w.Insert(ctx, 999, 999))
		r1 := s.reader(s.nodes[1])
		reach(t, v, r1)
		if r1.Len() != 51 {
			t.Fatalf("r1 holds %d", r1.Len())
		}
		batch = batch[:0]
		for i := range uint64(30) {
			batch = append(batch, mapKV{100 + i, i})
		}
		do(w.Extend(ctx, batch))
		v = do(w.Insert(ctx, 1000, 1000))
		r2 := s.reader(s.nodes[2])
		reach(t, v, r1, r2)
		if r2.Len() != 82 {
			t.Fatalf("r2 holds %d", r2.Len())
		}
		mapSame(t, mapContent(w), w, r1, r2)
	}},
	// mosaik: tests/collections/map.rs insert_overwrite
	{"InsertOverwrite", func(t *testing.T, s mapSetup) {
		w, r := s.writer(s.nodes[0]), s.reader(s.nodes[1])
		ctx, do := subCtx(t), doer(t)
		do(w.Insert(ctx, 1, 10))
		do(w.Insert(ctx, 1, 20))
		v := do(w.Insert(ctx, 1, 30))
		reach(t, v, r)
		mapSame(t, map[uint64]uint64{1: 30}, w, r)
	}},
	// mosaik: tests/collections/map.rs extend_overwrite
	{"ExtendOverwrite", func(t *testing.T, s mapSetup) {
		w, r := s.writer(s.nodes[0]), s.reader(s.nodes[1])
		ctx, do := subCtx(t), doer(t)
		do(w.Extend(ctx, kvs(10, 20, 30)))
		v := do(w.Extend(ctx, []mapKV{{2, 200}, {3, 300}, {4, 400}}))
		reach(t, v, r)
		mapSame(t, map[uint64]uint64{1: 10, 2: 200, 3: 300, 4: 400}, w, r)
	}},
	// mosaik: tests/collections/map.rs remove_nonexistent
	{"RemoveNonexistent", func(t *testing.T, s mapSetup) {
		w, r := s.writer(s.nodes[0]), s.reader(s.nodes[1])
		ctx, do := subCtx(t), doer(t)
		do(w.Extend(ctx, kvs(10, 20, 30)))
		v := do(w.Remove(ctx, 999))
		reach(t, v, r)
		mapSame(t, map[uint64]uint64{1: 10, 2: 20, 3: 30}, w, r)
	}},
	// mosaik: tests/collections/map.rs clear_then_rebuild
	{"ClearThenRebuild", func(t *testing.T, s mapSetup) {
		w, r := s.writer(s.nodes[0]), s.reader(s.nodes[1])
		ctx, do := subCtx(t), doer(t)
		do(w.Extend(ctx, kvs(10, 20, 30)))
		do(w.Clear(ctx))
		v := do(w.Insert(ctx, 100, 1000))
		reach(t, v, r)
		mapSame(t, map[uint64]uint64{100: 1000}, w, r)
	}},
	// mosaik: tests/collections/map.rs extend_empty
	{"ExtendEmpty", func(t *testing.T, s mapSetup) {
		w := s.writer(s.nodes[0])
		ctx, do := subCtx(t), doer(t)
		before := w.Version()
		if v := do(w.Extend(ctx, nil)); v != before || w.Len() != 0 {
			t.Fatalf("empty extend: version %d (was %d)", v, before)
		}
		do(w.Insert(ctx, 1, 1))
		mapSame(t, map[uint64]uint64{1: 1}, w)
	}},
	// mosaik: tests/collections/map.rs many_writers_many_readers
	{"ManyWritersManyReaders", func(t *testing.T, s mapSetup) {
		w0, w1 := s.writer(s.nodes[0]), s.writer(s.nodes[1])
		r0, r1 := s.reader(s.nodes[2]), s.reader(s.nodes[3])
		agree(t, w0, w1, r0, r1)
		ctx := subCtx(t)
		retried(t, w0, func() (collections.Version, error) { return w0.Extend(ctx, kvs(10, 20, 30)) })
		retried(t, w1, func() (collections.Version, error) { return w1.Extend(ctx, []mapKV{{4, 40}, {5, 50}}) })
		retried(t, w0, func() (collections.Version, error) { return w0.Remove(ctx, 1) })
		v := retried(t, w1, func() (collections.Version, error) { return w1.Insert(ctx, 6, 60) })
		reach(t, v, w0, w1, r0, r1)
		mapSame(t, map[uint64]uint64{2: 20, 3: 30, 4: 40, 5: 50, 6: 60}, w0, w1, r0, r1)
	}},
	// mosaik: tests/collections/map.rs writer_reads_own_writes (Map<String,String>)
	{"WriterReadsOwnWrites", func(t *testing.T, s mapSetup) {
		w, err := collections.NewMap[string, string](s.nodes[0], s.name, fast)
		if err != nil {
			t.Fatal(err)
		}
		closeAtEnd(t, w)
		online(t, w)
		ctx, do := subCtx(t), doer(t)
		do(w.Insert(ctx, "b", "two"))
		v := do(w.Insert(ctx, "a", "one"))
		reach(t, v, w)
		if got, ok := w.Get("a"); !ok || got != "one" || !w.Contains("b") || w.Len() != 2 {
			t.Fatalf("own writes: %q %v, len %d", got, ok, w.Len())
		}
		if keys := slices.Collect(w.Keys()); !slices.Equal(keys, []string{"a", "b"}) {
			t.Fatalf("keys %v", keys)
		}
	}},
	// mosaik: tests/collections/map.rs remove_all_entries
	{"RemoveAllEntries", func(t *testing.T, s mapSetup) {
		w, r := s.writer(s.nodes[0]), s.reader(s.nodes[1])
		ctx, do := subCtx(t), doer(t)
		do(w.Extend(ctx, kvs(10, 20, 30)))
		for k := range uint64(3) {
			do(w.Remove(ctx, k+1))
		}
		mapSame(t, map[uint64]uint64{}, w)
		v := do(w.Insert(ctx, 7, 70))
		reach(t, v, r)
		mapSame(t, map[uint64]uint64{7: 70}, w, r)
	}},
	// mosaik: tests/collections/map.rs remove_many
	{"RemoveMany", func(t *testing.T, s mapSetup) {
		w, r := s.writer(s.nodes[0]), s.reader(s.nodes[1])
		ctx, do := subCtx(t), doer(t)
		do(w.Extend(ctx, kvs(10, 20, 30, 40, 50)))
		v := do(w.RemoveMany(ctx, []uint64{2, 4, 5}))
		reach(t, v, r)
		mapSame(t, map[uint64]uint64{1: 10, 3: 30}, w, r)
		v = do(w.RemoveMany(ctx, []uint64{1, 99, 100}))
		if v2 := do(w.RemoveMany(ctx, nil)); v2 != v {
			t.Fatalf("empty remove many sent a command: %d after %d", v2, v)
		}
		v = do(w.Insert(ctx, 6, 60))
		reach(t, v, r)
		mapSame(t, map[uint64]uint64{3: 30, 6: 60}, w, r)
	}},
}
