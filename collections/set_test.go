package collections_test

import (
	"slices"
	"testing"

	"github.com/mosaik-go/mosaik/collections"
	"github.com/mosaik-go/mosaik/node"
)

type u64Set = collections.Set[uint64]
type u64SetReader = collections.SetReader[uint64]

func setW(t *testing.T, n *node.Node, name string) *u64Set {
	s, err := collections.NewSet[uint64](n, name, quick)
	return opened(t, s, err)
}

func setR(t *testing.T, n *node.Node, name string) *u64SetReader {
	s, err := collections.NewSetReader[uint64](n, name, quick)
	return opened(t, s, err)
}

// setIs checks r's members. Members iterate in the order of their
// canonical encodings, which for small unsigned integers is numeric.
func setIs(t *testing.T, r *u64SetReader, want ...uint64) {
	t.Helper()
	got := slices.Collect(r.All())
	if len(got) != len(want) || (len(want) > 0 && !slices.Equal(got, want)) {
		t.Fatalf("set holds %v, want %v", got, want)
	}
	if r.Len() != len(want) || r.IsEmpty() != (len(want) == 0) {
		t.Fatalf("Len %d, want %d", r.Len(), len(want))
	}
	for _, x := range want {
		if !r.Contains(x) {
			t.Fatalf("Contains(%d) is false", x)
		}
	}
}

// TestSet ports mosaik's tests/collections/set.rs; each subtest is named
// after the mosaik test. construct_from_macro has no Go counterpart (no
// macros): SetDef is its port, in construct_from_def.
func TestSet(t *testing.T) {
	ns := startNodes(t, 4)
	// steps runs mutations on w, waiting for each on rs, and checks the
	// members after each.
	type step struct {
		f    func(ctx ctxT) (ver, error)
		want []uint64
	}
	steps := func(t *testing.T, rs []*u64SetReader, sts ...step) {
		t.Helper()
		for _, st := range sts {
			v := do(t, st.f)
			for _, r := range rs {
				waitReach(t, v, r)
				setIs(t, r, st.want...)
			}
		}
	}
	single := func(t *testing.T, ns []*node.Node, name string) *u64Set {
		w := setW(t, ns[0], name)
		waitOnline(t, w)
		return w
	}
	runScenarios(t, ns, []scenario{
		{"smoke_no_catchup", func(t *testing.T, ns []*node.Node, name string) {
			w, r := setW(t, ns[0], name), setR(t, ns[1], name)
			waitOnline(t, w, r)
			setIs(t, r)
			steps(t, []*u64SetReader{r, &w.SetReader},
				step{func(ctx ctxT) (ver, error) { return w.Insert(ctx, 10) }, []uint64{10}},
				step{func(ctx ctxT) (ver, error) { return w.Insert(ctx, 20) }, []uint64{10, 20}},
				step{func(ctx ctxT) (ver, error) { return w.Insert(ctx, 10) }, []uint64{10, 20}},
				step{func(ctx ctxT) (ver, error) { return w.Extend(ctx, []uint64{30, 40, 50}) }, []uint64{10, 20, 30, 40, 50}},
				step{func(ctx ctxT) (ver, error) { return w.Remove(ctx, 30) }, []uint64{10, 20, 40, 50}},
				step{func(ctx ctxT) (ver, error) { return w.Clear(ctx) }, nil},
			)
		}},
		{"catchup_single_reader", func(t *testing.T, ns []*node.Node, name string) {
			w := single(t, ns, name)
			for i := range uint64(100) {
				do(t, func(ctx ctxT) (ver, error) { return w.Insert(ctx, i) })
			}
			v := do(t, func(ctx ctxT) (ver, error) { return w.Extend(ctx, seq(100, 103)) })
			r := setR(t, ns[1], name)
			waitOnline(t, r)
			waitReach(t, v, r)
			setIs(t, r, seq(0, 103)...)
			steps(t, []*u64SetReader{r}, step{func(ctx ctxT) (ver, error) { return w.Remove(ctx, 50) },
				slices.DeleteFunc(seq(0, 103), func(x uint64) bool { return x == 50 })})
		}},
		{"multiple_readers", func(t *testing.T, ns []*node.Node, name string) {
			w := setW(t, ns[0], name)
			rs := []*u64SetReader{setR(t, ns[1], name), setR(t, ns[2], name), setR(t, ns[3], name)}
			waitOnline(t, w, rs[0], rs[1], rs[2])
			steps(t, rs,
				step{func(ctx ctxT) (ver, error) { return w.Extend(ctx, seq(1, 6)) }, seq(1, 6)},
				step{func(ctx ctxT) (ver, error) { return w.Insert(ctx, 6) }, seq(1, 7)},
				step{func(ctx ctxT) (ver, error) { return w.Remove(ctx, 1) }, seq(2, 7)},
			)
		}},
		{"multiple_writers", func(t *testing.T, ns []*node.Node, name string) {
			w1 := single(t, ns, name)
			w2, r := setW(t, ns[1], name), setR(t, ns[2], name)
			oneCluster(t, w1, w2, r)
			do(t, func(ctx ctxT) (ver, error) { return w1.Insert(ctx, 1) })
			do(t, func(ctx ctxT) (ver, error) { return w2.Insert(ctx, 2) })
			v := do(t, func(ctx ctxT) (ver, error) { return w1.Extend(ctx, []uint64{3, 4, 5}) })
			waitReach(t, v, w1, w2, r)
			for _, x := range []*u64SetReader{&w1.SetReader, &w2.SetReader, r} {
				setIs(t, x, 1, 2, 3, 4, 5)
			}
		}},
		{"catchup_multiple_readers", func(t *testing.T, ns []*node.Node, name string) {
			w := single(t, ns, name)
			do(t, func(ctx ctxT) (ver, error) { return w.Extend(ctx, seq(0, 50)) })
			do(t, func(ctx ctxT) (ver, error) { return w.Insert(ctx, 999) })
			r1 := setR(t, ns[1], name)
			do(t, func(ctx ctxT) (ver, error) { return w.Extend(ctx, seq(50, 80)) })
			v := do(t, func(ctx ctxT) (ver, error) { return w.Insert(ctx, 1000) })
			r2 := setR(t, ns[2], name)
			waitOnline(t, r1, r2)
			waitReach(t, v, r1, r2)
			want := append(seq(0, 80), 999, 1000)
			setIs(t, r1, want...)
			setIs(t, r2, want...)
		}},
		{"insert_duplicate", func(t *testing.T, ns []*node.Node, name string) {
			w := single(t, ns, name)
			for range 3 {
				do(t, func(ctx ctxT) (ver, error) { return w.Insert(ctx, 7) })
			}
			setIs(t, &w.SetReader, 7)
		}},
		{"extend_with_duplicates", func(t *testing.T, ns []*node.Node, name string) {
			w := single(t, ns, name)
			do(t, func(ctx ctxT) (ver, error) { return w.Extend(ctx, []uint64{1, 2, 3}) })
			do(t, func(ctx ctxT) (ver, error) { return w.Extend(ctx, []uint64{2, 3, 4, 5}) })
			setIs(t, &w.SetReader, 1, 2, 3, 4, 5)
		}},
		{"remove_nonexistent", func(t *testing.T, ns []*node.Node, name string) {
			w := single(t, ns, name)
			do(t, func(ctx ctxT) (ver, error) { return w.Extend(ctx, []uint64{1, 2, 3}) })
			do(t, func(ctx ctxT) (ver, error) { return w.Remove(ctx, 999) })
			setIs(t, &w.SetReader, 1, 2, 3)
		}},
		{"clear_then_rebuild", func(t *testing.T, ns []*node.Node, name string) {
			w := single(t, ns, name)
			do(t, func(ctx ctxT) (ver, error) { return w.Extend(ctx, []uint64{1, 2, 3}) })
			do(t, func(ctx ctxT) (ver, error) { return w.Clear(ctx) })
			do(t, func(ctx ctxT) (ver, error) { return w.Insert(ctx, 100) })
			setIs(t, &w.SetReader, 100)
		}},
		{"extend_empty", func(t *testing.T, ns []*node.Node, name string) {
			w := single(t, ns, name)
			v0 := w.Version()
			if v := do(t, func(ctx ctxT) (ver, error) { return w.Extend(ctx, nil) }); v != v0 {
				t.Fatalf("empty extend moved the version %d -> %d", v0, v)
			}
			do(t, func(ctx ctxT) (ver, error) { return w.Insert(ctx, 1) })
			setIs(t, &w.SetReader, 1)
		}},
		{"many_writers_many_readers", func(t *testing.T, ns []*node.Node, name string) {
			w1 := single(t, ns, name)
			w2 := setW(t, ns[1], name)
			r1, r2 := setR(t, ns[2], name), setR(t, ns[3], name)
			oneCluster(t, w1, w2, r1, r2)
			do(t, func(ctx ctxT) (ver, error) { return w1.Extend(ctx, []uint64{1, 2, 3}) })
			do(t, func(ctx ctxT) (ver, error) { return w2.Extend(ctx, []uint64{4, 5}) })
			do(t, func(ctx ctxT) (ver, error) { return w1.Remove(ctx, 1) })
			v := do(t, func(ctx ctxT) (ver, error) { return w2.Insert(ctx, 6) })
			waitReach(t, v, w1, w2, r1, r2)
			for _, r := range []*u64SetReader{&w1.SetReader, &w2.SetReader, r1, r2} {
				setIs(t, r, 2, 3, 4, 5, 6)
			}
		}},
		{"writer_reads_own_writes", func(t *testing.T, ns []*node.Node, name string) {
			w, err := collections.NewSet[string](ns[0], name, quick)
			w = opened(t, w, err)
			waitOnline(t, w)
			do(t, func(ctx ctxT) (ver, error) { return w.Insert(ctx, "hello") })
			do(t, func(ctx ctxT) (ver, error) { return w.Insert(ctx, "world") })
			if !w.Contains("hello") || !w.Contains("world") || w.Contains("x") || w.Len() != 2 {
				t.Fatal("own writes not visible")
			}
		}},
		{"remove_all_elements", func(t *testing.T, ns []*node.Node, name string) {
			w := single(t, ns, name)
			do(t, func(ctx ctxT) (ver, error) { return w.Extend(ctx, []uint64{1, 2, 3}) })
			for _, x := range []uint64{1, 2, 3} {
				do(t, func(ctx ctxT) (ver, error) { return w.Remove(ctx, x) })
			}
			setIs(t, &w.SetReader)
			do(t, func(ctx ctxT) (ver, error) { return w.Insert(ctx, 4) })
			setIs(t, &w.SetReader, 4)
		}},
		{"remove_many", func(t *testing.T, ns []*node.Node, name string) {
			w := single(t, ns, name)
			steps(t, []*u64SetReader{&w.SetReader},
				step{func(ctx ctxT) (ver, error) { return w.Extend(ctx, seq(1, 6)) }, seq(1, 6)},
				step{func(ctx ctxT) (ver, error) { return w.RemoveMany(ctx, []uint64{2, 4, 5}) }, []uint64{1, 3}},
				step{func(ctx ctxT) (ver, error) { return w.RemoveMany(ctx, []uint64{1, 99, 100}) }, []uint64{3}},
			)
			v0 := w.Version()
			if v := do(t, func(ctx ctxT) (ver, error) { return w.RemoveMany(ctx, nil) }); v != v0 {
				t.Fatal("empty remove many moved the version")
			}
			do(t, func(ctx ctxT) (ver, error) { return w.Insert(ctx, 7) })
			setIs(t, &w.SetReader, 3, 7)
		}},
		{"is_subset", func(t *testing.T, ns []*node.Node, name string) {
			// Not a mosaik test: IsSubset across a writer and a reader.
			w, r := setW(t, ns[0], name), setR(t, ns[1], name)
			other := single(t, ns, name+"-other")
			waitOnline(t, w, r)
			v := do(t, func(ctx ctxT) (ver, error) { return w.Extend(ctx, []uint64{1, 2}) })
			do(t, func(ctx ctxT) (ver, error) { return other.Extend(ctx, []uint64{1, 2, 3}) })
			waitReach(t, v, r)
			if !r.IsSubset(other) || !w.IsSubset(r) || !r.IsSubset(w) || other.IsSubset(r) {
				t.Fatal("IsSubset")
			}
		}},
		{"construct_from_def", func(t *testing.T, ns []*node.Node, name string) {
			def := collections.SetDef[string](name, quick)
			w, err := def.Writer(ns[0])
			w = opened(t, w, err)
			r, err := def.Reader(ns[1])
			r = opened(t, r, err)
			waitOnline(t, w, r)
			waitReach(t, do(t, func(ctx ctxT) (ver, error) { return w.Insert(ctx, "x") }), r)
			if !r.Contains("x") || def.Name() != name {
				t.Fatal("def reader")
			}
		}},
		{"snapshot_catchup", func(t *testing.T, ns []*node.Node, name string) {
			// A compacted log: the late reader installs a snapshot.
			w, err := collections.NewSet[uint64](ns[0], name, compacting)
			w = opened(t, w, err)
			waitOnline(t, w)
			for i := range uint64(30) {
				do(t, func(ctx ctxT) (ver, error) { return w.Insert(ctx, i) })
			}
			v := do(t, func(ctx ctxT) (ver, error) { return w.RemoveMany(ctx, seq(10, 30)) })
			r, err := collections.NewSetReader[uint64](ns[3], name, compacting)
			r = opened(t, r, err)
			waitOnline(t, r)
			waitReach(t, v, r)
			setIs(t, r, seq(0, 10)...)
		}},
		{"bulk_10000", func(t *testing.T, ns []*node.Node, name string) {
			// The sizes of mosaik's sync suite: 10 000 members loaded with
			// Extend, then a late reader catches up.
			w := single(t, ns, name)
			var v ver
			for i := uint64(0); i < 10_000; i += 2_500 {
				v = do(t, func(ctx ctxT) (ver, error) { return w.Extend(ctx, seq(i, i+2_500)) })
			}
			r := setR(t, ns[3], name)
			waitOnline(t, r)
			waitReach(t, v, r)
			if r.Len() != 10_000 || !r.IsSubset(w) || !w.IsSubset(r) {
				t.Fatalf("late reader holds %d members", r.Len())
			}
		}},
	})
}
