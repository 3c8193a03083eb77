package collections_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/mosaik-go/mosaik/collections"
	"github.com/mosaik-go/mosaik/node"
)

type u64Vec = collections.Vec[uint64]
type u64VecReader = collections.VecReader[uint64]

func vecW(t *testing.T, n *node.Node, name string) *u64Vec {
	v, err := collections.NewVec[uint64](n, name, quick)
	return opened(t, v, err)
}

func vecR(t *testing.T, n *node.Node, name string) *u64VecReader {
	v, err := collections.NewVecReader[uint64](n, name, quick)
	return opened(t, v, err)
}

func vecIs(t *testing.T, r *u64VecReader, want ...uint64) {
	t.Helper()
	if got := slices.Collect(r.Values()); !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
		t.Fatalf("vec holds %v, want %v", got, want)
	}
	if r.Len() != len(want) {
		t.Fatalf("Len %d, want %d", r.Len(), len(want))
	}
}

func seq(from, to uint64) []uint64 {
	var out []uint64
	for i := from; i < to; i++ {
		out = append(out, i)
	}
	return out
}

// TestVec ports mosaik's tests/collections/vec.rs; each subtest is named
// after the mosaik test. construct_from_macro has no Go counterpart (no
// macros): VecDef is its port, in construct_from_def.
func TestVec(t *testing.T) {
	ns := startNodes(t, 4)
	runScenarios(t, ns, []scenario{
		{"smoke_no_catchup", func(t *testing.T, ns []*node.Node, name string) {
			w, r := vecW(t, ns[0], name), vecR(t, ns[1], name)
			waitOnline(t, w, r)
			if !r.IsEmpty() || r.Len() != 0 {
				t.Fatal("not empty")
			}
			if _, ok := r.Front(); ok {
				t.Fatal("front of empty")
			}
			if _, ok := r.Back(); ok {
				t.Fatal("back of empty")
			}
			if _, ok := r.Get(0); ok {
				t.Fatal("get of empty")
			}
			do(t, func(ctx ctxT) (ver, error) { return w.PushBack(ctx, 10) })
			do(t, func(ctx ctxT) (ver, error) { return w.PushFront(ctx, 5) })
			do(t, func(ctx ctxT) (ver, error) { return w.Extend(ctx, []uint64{20, 30, 40}) })
			v := do(t, func(ctx ctxT) (ver, error) { return w.Insert(ctx, 2, 15) })
			waitReach(t, v, r)
			vecIs(t, r, 5, 10, 15, 20, 30, 40)
			if !r.Contains(15) || r.Contains(16) || r.IndexOf(20) != 3 || r.IndexOf(99) != -1 {
				t.Fatal("contains/index of")
			}
			if f, _ := r.Front(); f != 5 {
				t.Fatal("front", f)
			}
			if b, _ := r.Back(); b != 40 {
				t.Fatal("back", b)
			}
			for i, x := range r.All() {
				if g, _ := r.Get(i); g != x {
					t.Fatal("All and Get disagree")
				}
			}
			steps := []struct {
				f    func(ctx ctxT) (ver, error)
				want []uint64
			}{
				{func(ctx ctxT) (ver, error) { return w.Swap(ctx, 0, 5) }, []uint64{40, 10, 15, 20, 30, 5}},
				{func(ctx ctxT) (ver, error) { return w.PopBack(ctx) }, []uint64{40, 10, 15, 20, 30}},
				{func(ctx ctxT) (ver, error) { return w.PopFront(ctx) }, []uint64{10, 15, 20, 30}},
				{func(ctx ctxT) (ver, error) { return w.Remove(ctx, 1) }, []uint64{10, 20, 30}},
				{func(ctx ctxT) (ver, error) { return w.Truncate(ctx, 2) }, []uint64{10, 20}},
				{func(ctx ctxT) (ver, error) { return w.Clear(ctx) }, nil},
			}
			for _, st := range steps {
				waitReach(t, do(t, st.f), r)
				vecIs(t, r, st.want...)
				vecIs(t, &w.VecReader, st.want...)
			}
		}},
		{"catchup_single_reader", func(t *testing.T, ns []*node.Node, name string) {
			w := vecW(t, ns[0], name)
			waitOnline(t, w)
			for i := range uint64(100) {
				do(t, func(ctx ctxT) (ver, error) { return w.PushBack(ctx, i) })
			}
			v := do(t, func(ctx ctxT) (ver, error) { return w.Extend(ctx, seq(100, 107)) })
			r := vecR(t, ns[1], name)
			waitOnline(t, r)
			waitReach(t, v, r)
			vecIs(t, r, seq(0, 107)...)
			waitReach(t, do(t, func(ctx ctxT) (ver, error) { return w.Remove(ctx, 50) }), r)
			if g, _ := r.Get(50); r.Len() != 106 || g != 51 {
				t.Fatalf("len %d get(50) %d", r.Len(), g)
			}
		}},
		{"multiple_readers", func(t *testing.T, ns []*node.Node, name string) {
			w := vecW(t, ns[0], name)
			rs := []*u64VecReader{vecR(t, ns[1], name), vecR(t, ns[2], name), vecR(t, ns[3], name)}
			waitOnline(t, w, rs[0], rs[1], rs[2])
			for _, st := range []struct {
				f    func(ctx ctxT) (ver, error)
				want []uint64
			}{
				{func(ctx ctxT) (ver, error) { return w.Extend(ctx, []uint64{1, 2, 3}) }, []uint64{1, 2, 3}},
				{func(ctx ctxT) (ver, error) { return w.PushFront(ctx, 0) }, []uint64{0, 1, 2, 3}},
				{func(ctx ctxT) (ver, error) { return w.PopBack(ctx) }, []uint64{0, 1, 2}},
			} {
				v := do(t, st.f)
				for _, r := range rs {
					waitReach(t, v, r)
					vecIs(t, r, st.want...)
				}
			}
		}},
		{"multiple_writers", func(t *testing.T, ns []*node.Node, name string) {
			w1 := vecW(t, ns[0], name)
			waitOnline(t, w1)
			w2 := vecW(t, ns[1], name)
			oneCluster(t, w1, w2)
			do(t, func(ctx ctxT) (ver, error) { return w1.PushBack(ctx, 1) })
			do(t, func(ctx ctxT) (ver, error) { return w2.PushBack(ctx, 2) })
			v := do(t, func(ctx ctxT) (ver, error) { return w1.Extend(ctx, []uint64{3, 4, 5}) })
			waitReach(t, v, w1, w2)
			vecIs(t, &w1.VecReader, 1, 2, 3, 4, 5)
			vecIs(t, &w2.VecReader, 1, 2, 3, 4, 5)
		}},
		{"catchup_multiple_readers", func(t *testing.T, ns []*node.Node, name string) {
			w := vecW(t, ns[0], name)
			waitOnline(t, w)
			do(t, func(ctx ctxT) (ver, error) { return w.Extend(ctx, seq(0, 50)) })
			do(t, func(ctx ctxT) (ver, error) { return w.PushBack(ctx, 999) })
			r1 := vecR(t, ns[1], name)
			do(t, func(ctx ctxT) (ver, error) { return w.Extend(ctx, seq(50, 80)) })
			v := do(t, func(ctx ctxT) (ver, error) { return w.PushBack(ctx, 1000) })
			r2 := vecR(t, ns[2], name)
			waitOnline(t, r1, r2)
			waitReach(t, v, r1, r2)
			want := append(append(append(seq(0, 50), 999), seq(50, 80)...), 1000)
			vecIs(t, r1, want...)
			vecIs(t, r2, want...)
			if b, _ := r2.Back(); b != 1000 {
				t.Fatal("back marker", b)
			}
		}},
		{"push_front_back_ordering", func(t *testing.T, ns []*node.Node, name string) {
			w := vecW(t, ns[0], name)
			waitOnline(t, w)
			do(t, func(ctx ctxT) (ver, error) { return w.PushBack(ctx, 3) })
			do(t, func(ctx ctxT) (ver, error) { return w.PushFront(ctx, 2) })
			do(t, func(ctx ctxT) (ver, error) { return w.PushBack(ctx, 4) })
			do(t, func(ctx ctxT) (ver, error) { return w.PushFront(ctx, 1) })
			do(t, func(ctx ctxT) (ver, error) { return w.PushBack(ctx, 5) })
			vecIs(t, &w.VecReader, 1, 2, 3, 4, 5)
		}},
		{"truncate_edge_cases", func(t *testing.T, ns []*node.Node, name string) {
			w := vecW(t, ns[0], name)
			waitOnline(t, w)
			do(t, func(ctx ctxT) (ver, error) { return w.Extend(ctx, []uint64{1, 2, 3, 4, 5}) })
			do(t, func(ctx ctxT) (ver, error) { return w.Truncate(ctx, 100) })
			do(t, func(ctx ctxT) (ver, error) { return w.Truncate(ctx, 5) })
			vecIs(t, &w.VecReader, 1, 2, 3, 4, 5)
			do(t, func(ctx ctxT) (ver, error) { return w.Truncate(ctx, 3) })
			vecIs(t, &w.VecReader, 1, 2, 3)
			do(t, func(ctx ctxT) (ver, error) { return w.Truncate(ctx, 0) })
			vecIs(t, &w.VecReader)
		}},
		{"clear_then_rebuild", func(t *testing.T, ns []*node.Node, name string) {
			w := vecW(t, ns[0], name)
			waitOnline(t, w)
			do(t, func(ctx ctxT) (ver, error) { return w.Extend(ctx, []uint64{1, 2, 3}) })
			do(t, func(ctx ctxT) (ver, error) { return w.Clear(ctx) })
			do(t, func(ctx ctxT) (ver, error) { return w.PushBack(ctx, 100) })
			vecIs(t, &w.VecReader, 100)
		}},
		{"extend_empty", func(t *testing.T, ns []*node.Node, name string) {
			w := vecW(t, ns[0], name)
			waitOnline(t, w)
			v0 := w.Version()
			if v := do(t, func(ctx ctxT) (ver, error) { return w.Extend(ctx, nil) }); v != v0 {
				t.Fatalf("empty extend moved the version %d -> %d", v0, v)
			}
			do(t, func(ctx ctxT) (ver, error) { return w.PushBack(ctx, 1) })
			vecIs(t, &w.VecReader, 1)
		}},
		{"remove_out_of_bounds", func(t *testing.T, ns []*node.Node, name string) {
			w := vecW(t, ns[0], name)
			waitOnline(t, w)
			do(t, func(ctx ctxT) (ver, error) { return w.Extend(ctx, []uint64{1, 2, 3}) })
			do(t, func(ctx ctxT) (ver, error) { return w.Remove(ctx, 100) })
			vecIs(t, &w.VecReader, 1, 2, 3)
			if w.Rejected() != 0 {
				t.Fatal("an out-of-range remove is a valid no-op, not a rejection")
			}
		}},
		{"insert_out_of_range_refused", func(t *testing.T, ns []*node.Node, name string) {
			// Not in mosaik, whose insert past the end panics the group on
			// every node (§1.9): here the caller gets ErrOutOfRange and
			// nothing is sent.
			w := vecW(t, ns[0], name)
			waitOnline(t, w)
			v := do(t, func(ctx ctxT) (ver, error) { return w.Extend(ctx, []uint64{1, 2, 3}) })
			_, err := w.Insert(opCtx(t), 4, 9)
			var me *collections.MutationError[collections.IndexValue[uint64]]
			if !errors.Is(err, collections.ErrOutOfRange) || !errors.As(err, &me) || me.Arg.Value != 9 || me.Arg.Index != 4 {
				t.Fatalf("insert past the end: %v", err)
			}
			if _, err := w.Insert(opCtx(t), -1, 9); !errors.Is(err, collections.ErrOutOfRange) {
				t.Fatalf("insert at -1: %v", err)
			}
			if w.Version() != v {
				t.Fatal("a refused insert was sent")
			}
			do(t, func(ctx ctxT) (ver, error) { return w.Insert(ctx, 3, 4) })
			vecIs(t, &w.VecReader, 1, 2, 3, 4)
		}},
		{"many_writers_many_readers", func(t *testing.T, ns []*node.Node, name string) {
			w1 := vecW(t, ns[0], name)
			waitOnline(t, w1)
			w2 := vecW(t, ns[1], name)
			r1, r2 := vecR(t, ns[2], name), vecR(t, ns[3], name)
			oneCluster(t, w1, w2, r1, r2)
			do(t, func(ctx ctxT) (ver, error) { return w1.Extend(ctx, []uint64{10, 20, 30}) })
			do(t, func(ctx ctxT) (ver, error) { return w2.Extend(ctx, []uint64{40, 50}) })
			do(t, func(ctx ctxT) (ver, error) { return w1.PopFront(ctx) })
			v := do(t, func(ctx ctxT) (ver, error) { return w2.PushBack(ctx, 60) })
			waitReach(t, v, w1, w2, r1, r2)
			for _, r := range []*u64VecReader{&w1.VecReader, &w2.VecReader, r1, r2} {
				vecIs(t, r, 20, 30, 40, 50, 60)
			}
		}},
		{"late_writer_catchup", func(t *testing.T, ns []*node.Node, name string) {
			w1 := vecW(t, ns[0], name)
			waitOnline(t, w1)
			v := do(t, func(ctx ctxT) (ver, error) { return w1.Extend(ctx, []uint64{1, 2, 3, 4, 5}) })
			w2 := vecW(t, ns[1], name)
			oneCluster(t, w1, w2)
			waitReach(t, v, w2)
			vecIs(t, &w2.VecReader, 1, 2, 3, 4, 5)
			v = do(t, func(ctx ctxT) (ver, error) { return w2.PushBack(ctx, 99) })
			waitReach(t, v, w1)
			vecIs(t, &w1.VecReader, 1, 2, 3, 4, 5, 99)
			vecIs(t, &w2.VecReader, 1, 2, 3, 4, 5, 99)
		}},
		{"writer_reads_own_writes", func(t *testing.T, ns []*node.Node, name string) {
			w, err := collections.NewVec[string](ns[0], name, quick)
			w = opened(t, w, err)
			waitOnline(t, w)
			do(t, func(ctx ctxT) (ver, error) { return w.PushBack(ctx, "hello") })
			do(t, func(ctx ctxT) (ver, error) { return w.PushBack(ctx, "world") })
			if g, _ := w.Get(1); g != "world" || !w.Contains("hello") || w.IndexOf("world") != 1 {
				t.Fatal("own writes not visible")
			}
			if f, _ := w.Front(); f != "hello" {
				t.Fatal("front", f)
			}
			if b, _ := w.Back(); b != "world" {
				t.Fatal("back", b)
			}
		}},
		{"construct_from_def", func(t *testing.T, ns []*node.Node, name string) {
			def := collections.VecDef[string](name, quick)
			w, err := def.Writer(ns[0])
			w = opened(t, w, err)
			r, err := def.Reader(ns[1])
			r = opened(t, r, err)
			waitOnline(t, w, r)
			waitReach(t, do(t, func(ctx ctxT) (ver, error) { return w.PushBack(ctx, "x") }), r)
			if g, _ := r.Get(0); g != "x" || def.Name() != name {
				t.Fatal("def reader", g)
			}
		}},
		{"snapshot_catchup", func(t *testing.T, ns []*node.Node, name string) {
			// mosaik's sync/vec.rs mixed_mutations, with a compacted log:
			// the late reader installs a snapshot.
			w, err := collections.NewVec[uint64](ns[0], name, compacting)
			w = opened(t, w, err)
			waitOnline(t, w)
			for _, f := range []func(ctx ctxT) (ver, error){
				func(ctx ctxT) (ver, error) { return w.Extend(ctx, seq(0, 30)) },
				func(ctx ctxT) (ver, error) { return w.Truncate(ctx, 0) },
				func(ctx ctxT) (ver, error) { return w.PushBack(ctx, 20) },
				func(ctx ctxT) (ver, error) { return w.PushFront(ctx, 10) },
				func(ctx ctxT) (ver, error) { return w.Insert(ctx, 1, 15) },
				func(ctx ctxT) (ver, error) { return w.Extend(ctx, []uint64{30, 40}) },
				func(ctx ctxT) (ver, error) { return w.Swap(ctx, 0, 4) },
				func(ctx ctxT) (ver, error) { return w.Swap(ctx, 0, 4) },
				func(ctx ctxT) (ver, error) { return w.PopBack(ctx) },
				func(ctx ctxT) (ver, error) { return w.PopFront(ctx) },
				func(ctx ctxT) (ver, error) { return w.PushFront(ctx, 10) },
				func(ctx ctxT) (ver, error) { return w.Remove(ctx, 1) },
				func(ctx ctxT) (ver, error) { return w.PushBack(ctx, 100) },
				func(ctx ctxT) (ver, error) { return w.Remove(ctx, 2) },
			} {
				do(t, f)
			}
			for i := range uint64(20) { // enough entries for a compaction past the above
				do(t, func(ctx ctxT) (ver, error) { return w.PushBack(ctx, 1000+i) })
			}
			v := do(t, func(ctx ctxT) (ver, error) { return w.Truncate(ctx, 3) })
			vecIs(t, &w.VecReader, 10, 20, 100)
			r, err := collections.NewVecReader[uint64](ns[3], name, compacting)
			r = opened(t, r, err)
			waitOnline(t, r)
			waitReach(t, v, r)
			vecIs(t, r, 10, 20, 100)
			waitReach(t, do(t, func(ctx ctxT) (ver, error) { return w.PushBack(ctx, 7) }), r)
			vecIs(t, r, 10, 20, 100, 7)
		}},
		{"bulk_10000", func(t *testing.T, ns []*node.Node, name string) {
			// The sizes of mosaik's sync suite: 10 000 elements loaded with
			// Extend, then a late reader catches up.
			w := vecW(t, ns[0], name)
			waitOnline(t, w)
			var v ver
			for i := uint64(0); i < 10_000; i += 2_500 {
				v = do(t, func(ctx ctxT) (ver, error) { return w.Extend(ctx, seq(i, i+2_500)) })
			}
			r := vecR(t, ns[3], name)
			waitOnline(t, r)
			waitReach(t, v, r)
			vecIs(t, r, seq(0, 10_000)...)
		}},
	})
}
