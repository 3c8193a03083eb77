package collections_test

import (
	"testing"

	"github.com/mosaik-go/mosaik/collections"
	"github.com/mosaik-go/mosaik/node"
)

type u64Cell = collections.Cell[uint64]
type u64CellReader = collections.CellReader[uint64]

func cellW(t *testing.T, n *node.Node, name string) *u64Cell {
	c, err := collections.NewCell[uint64](n, name, quick)
	return opened(t, c, err)
}

func cellR(t *testing.T, n *node.Node, name string) *u64CellReader {
	c, err := collections.NewCellReader[uint64](n, name, quick)
	return opened(t, c, err)
}

func p64(x uint64) *uint64 { return &x }

// cellIs checks r's value (nil: empty).
func cellIs(t *testing.T, r *u64CellReader, want *uint64) {
	t.Helper()
	got, ok := r.Get()
	switch {
	case want == nil && (ok || r.IsSome() || !r.IsEmpty() || r.Len() != 0):
		t.Fatalf("cell holds %d, want empty", got)
	case want != nil && (!ok || got != *want || !r.IsSome() || r.Len() != 1):
		t.Fatalf("cell holds %d (%v), want %d", got, ok, *want)
	}
}

// TestCell ports mosaik's tests/collections/cell.rs; each subtest is named
// after the mosaik test. construct_from_macro has no Go counterpart (no
// macros): CellDef is its port, in construct_from_def.
func TestCell(t *testing.T) {
	ns := startNodes(t, 4)
	type step struct {
		f    func(ctx ctxT) (ver, error)
		want *uint64
	}
	steps := func(t *testing.T, rs []*u64CellReader, sts ...step) {
		t.Helper()
		for _, st := range sts {
			v := do(t, st.f)
			for _, r := range rs {
				waitReach(t, v, r)
				cellIs(t, r, st.want)
			}
		}
	}
	single := func(t *testing.T, ns []*node.Node, name string) *u64Cell {
		w := cellW(t, ns[0], name)
		waitOnline(t, w)
		return w
	}
	// cas runs a compare-and-swap and checks whether it applied.
	cas := func(t *testing.T, w *u64Cell, exp, new *uint64, applied bool) ver {
		t.Helper()
		ok, v, err := w.CompareAndSwap(opCtx(t), exp, new)
		if err != nil {
			t.Fatal(err)
		}
		if ok != applied {
			t.Fatalf("CompareAndSwap(%v, %v) applied %v, want %v", exp, new, ok, applied)
		}
		return v
	}
	write := func(w *u64Cell, x uint64) func(ctxT) (ver, error) {
		return func(ctx ctxT) (ver, error) { return w.Write(ctx, x) }
	}
	clear := func(w *u64Cell) func(ctxT) (ver, error) {
		return func(ctx ctxT) (ver, error) { return w.Clear(ctx) }
	}
	runScenarios(t, ns, []scenario{
		{"smoke_no_catchup", func(t *testing.T, ns []*node.Node, name string) {
			w, r := cellW(t, ns[0], name), cellR(t, ns[1], name)
			waitOnline(t, w, r)
			cellIs(t, r, nil)
			steps(t, []*u64CellReader{r, &w.CellReader},
				step{write(w, 42), p64(42)},
				step{write(w, 99), p64(99)},
				step{func(ctx ctxT) (ver, error) { return w.Set(ctx, 123) }, p64(123)},
				step{clear(w), nil},
			)
		}},
		{"catchup_single_reader", func(t *testing.T, ns []*node.Node, name string) {
			w := single(t, ns, name)
			for i := range uint64(100) {
				do(t, write(w, i))
			}
			v := do(t, write(w, 999))
			r := cellR(t, ns[1], name)
			waitOnline(t, r)
			waitReach(t, v, r)
			cellIs(t, r, p64(999))
			steps(t, []*u64CellReader{r}, step{write(w, 1000), p64(1000)})
		}},
		{"multiple_readers", func(t *testing.T, ns []*node.Node, name string) {
			w := cellW(t, ns[0], name)
			rs := []*u64CellReader{cellR(t, ns[1], name), cellR(t, ns[2], name), cellR(t, ns[3], name)}
			waitOnline(t, w, rs[0], rs[1], rs[2])
			steps(t, rs, step{write(w, 1), p64(1)}, step{write(w, 2), p64(2)}, step{clear(w), nil})
		}},
		{"multiple_writers", func(t *testing.T, ns []*node.Node, name string) {
			w1 := single(t, ns, name)
			w2, r := cellW(t, ns[1], name), cellR(t, ns[2], name)
			oneCluster(t, w1, w2, r)
			steps(t, []*u64CellReader{&w1.CellReader, &w2.CellReader, r},
				step{write(w1, 10), p64(10)}, step{write(w2, 20), p64(20)}, step{write(w1, 30), p64(30)})
		}},
		{"catchup_multiple_readers", func(t *testing.T, ns []*node.Node, name string) {
			w := single(t, ns, name)
			do(t, write(w, 1))
			v := do(t, write(w, 999))
			r1 := cellR(t, ns[1], name)
			waitOnline(t, r1)
			waitReach(t, v, r1)
			cellIs(t, r1, p64(999))
			r2 := cellR(t, ns[2], name)
			waitOnline(t, r2)
			waitReach(t, v, r2)
			cellIs(t, r2, p64(999))
			steps(t, []*u64CellReader{r1, r2}, step{write(w, 1000), p64(1000)})
		}},
		{"overwrite_keeps_latest", func(t *testing.T, ns []*node.Node, name string) {
			w := single(t, ns, name)
			steps(t, []*u64CellReader{&w.CellReader}, step{write(w, 1), p64(1)}, step{write(w, 2), p64(2)}, step{write(w, 3), p64(3)})
		}},
		{"clear_then_write", func(t *testing.T, ns []*node.Node, name string) {
			w := single(t, ns, name)
			steps(t, []*u64CellReader{&w.CellReader}, step{write(w, 42), p64(42)}, step{clear(w), nil}, step{write(w, 100), p64(100)})
		}},
		{"clear_empty", func(t *testing.T, ns []*node.Node, name string) {
			w := single(t, ns, name)
			steps(t, []*u64CellReader{&w.CellReader}, step{clear(w), nil}, step{write(w, 5), p64(5)})
		}},
		{"many_writers_many_readers", func(t *testing.T, ns []*node.Node, name string) {
			w1 := single(t, ns, name)
			w2 := cellW(t, ns[1], name)
			r1, r2 := cellR(t, ns[2], name), cellR(t, ns[3], name)
			oneCluster(t, w1, w2, r1, r2)
			all := []*u64CellReader{&w1.CellReader, &w2.CellReader, r1, r2}
			steps(t, all, step{write(w1, 10), p64(10)}, step{write(w2, 20), p64(20)}, step{clear(w1), nil}, step{write(w2, 30), p64(30)})
		}},
		{"late_writer_catchup", func(t *testing.T, ns []*node.Node, name string) {
			w1 := single(t, ns, name)
			v := do(t, write(w1, 42))
			w2 := cellW(t, ns[1], name)
			oneCluster(t, w1, w2)
			waitReach(t, v, w2)
			cellIs(t, &w2.CellReader, p64(42))
			steps(t, []*u64CellReader{&w1.CellReader, &w2.CellReader}, step{write(w2, 99), p64(99)})
		}},
		{"writer_reads_own_writes", func(t *testing.T, ns []*node.Node, name string) {
			w, err := collections.NewCell[string](ns[0], name, quick)
			w = opened(t, w, err)
			waitOnline(t, w)
			do(t, func(ctx ctxT) (ver, error) { return w.Write(ctx, "hello") })
			if g, ok := w.Get(); !ok || g != "hello" {
				t.Fatal("own write not visible", g)
			}
		}},
		{"compare_exchange_success", func(t *testing.T, ns []*node.Node, name string) {
			w := single(t, ns, name)
			do(t, write(w, 42))
			cas(t, w, p64(42), p64(99), true)
			cellIs(t, &w.CellReader, p64(99))
		}},
		{"compare_exchange_from_none", func(t *testing.T, ns []*node.Node, name string) {
			w := single(t, ns, name)
			cas(t, w, nil, p64(10), true)
			cellIs(t, &w.CellReader, p64(10))
		}},
		{"compare_exchange_to_none", func(t *testing.T, ns []*node.Node, name string) {
			w := single(t, ns, name)
			do(t, write(w, 42))
			cas(t, w, p64(42), nil, true)
			cellIs(t, &w.CellReader, nil)
		}},
		{"compare_exchange_mismatch_no_change", func(t *testing.T, ns []*node.Node, name string) {
			w := single(t, ns, name)
			do(t, write(w, 42))
			cas(t, w, p64(100), p64(1), false)
			cas(t, w, nil, p64(1), false)
			cellIs(t, &w.CellReader, p64(42))
		}},
		{"compare_exchange_mismatch_on_empty", func(t *testing.T, ns []*node.Node, name string) {
			w := single(t, ns, name)
			cas(t, w, p64(1), p64(2), false)
			cellIs(t, &w.CellReader, nil)
		}},
		{"compare_exchange_replicates_to_readers", func(t *testing.T, ns []*node.Node, name string) {
			w := cellW(t, ns[0], name)
			r1, r2 := cellR(t, ns[1], name), cellR(t, ns[2], name)
			waitOnline(t, w, r1, r2)
			do(t, write(w, 1))
			v := cas(t, w, p64(1), p64(2), true)
			waitReach(t, v, r1, r2)
			cellIs(t, r1, p64(2))
			cellIs(t, r2, p64(2))
		}},
		{"compare_exchange_chained", func(t *testing.T, ns []*node.Node, name string) {
			w := single(t, ns, name)
			cas(t, w, nil, p64(1), true)
			cas(t, w, p64(1), p64(2), true)
			cas(t, w, p64(2), p64(3), true)
			cas(t, w, p64(3), nil, true)
			cellIs(t, &w.CellReader, nil)
		}},
		{"compare_exchange_mixed_with_write_clear", func(t *testing.T, ns []*node.Node, name string) {
			w := single(t, ns, name)
			do(t, write(w, 10))
			cas(t, w, p64(10), p64(20), true)
			do(t, clear(w))
			cas(t, w, nil, p64(30), true)
			do(t, write(w, 40))
			cellIs(t, &w.CellReader, p64(40))
		}},
		{"compare_exchange_none_to_none", func(t *testing.T, ns []*node.Node, name string) {
			w := single(t, ns, name)
			cas(t, w, nil, nil, false) // matched, but changed nothing: a no-op, as on Map
			cellIs(t, &w.CellReader, nil)
			do(t, write(w, 1))
			cellIs(t, &w.CellReader, p64(1))
		}},
		{"compare_exchange_catchup", func(t *testing.T, ns []*node.Node, name string) {
			w := single(t, ns, name)
			cas(t, w, nil, p64(1), true)
			cas(t, w, p64(1), p64(2), true)
			v := cas(t, w, p64(2), p64(3), true)
			r := cellR(t, ns[1], name)
			waitOnline(t, r)
			waitReach(t, v, r)
			cellIs(t, r, p64(3))
		}},
		{"snapshot_catchup", func(t *testing.T, ns []*node.Node, name string) {
			// A compacted log: the late reader installs a snapshot.
			w, err := collections.NewCell[uint64](ns[0], name, compacting)
			w = opened(t, w, err)
			waitOnline(t, w)
			for i := range uint64(30) {
				do(t, write(w, i))
			}
			v := cas(t, w, p64(29), p64(3), true)
			r, err := collections.NewCellReader[uint64](ns[3], name, compacting)
			r = opened(t, r, err)
			waitOnline(t, r)
			waitReach(t, v, r)
			cellIs(t, r, p64(3))
		}},
		{"construct_from_def", func(t *testing.T, ns []*node.Node, name string) {
			def := collections.CellDef[string](name, quick)
			w, err := def.Writer(ns[0])
			w = opened(t, w, err)
			r, err := def.Reader(ns[1])
			r = opened(t, r, err)
			waitOnline(t, w, r)
			waitReach(t, do(t, func(ctx ctxT) (ver, error) { return w.Write(ctx, "x") }), r)
			if g, _ := r.Get(); g != "x" || def.Name() != name {
				t.Fatal("def reader", g)
			}
		}},
	})
}
