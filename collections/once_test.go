package collections_test

import (
	"errors"
	"testing"
	"time"

	"github.com/mosaik-go/mosaik/collections"
	"github.com/mosaik-go/mosaik/node"
)

type u64Once = collections.Once[uint64]
type u64OnceReader = collections.OnceReader[uint64]

func onceW(t *testing.T, n *node.Node, name string) *u64Once {
	o, err := collections.NewOnce[uint64](n, name, quick)
	return opened(t, o, err)
}

func onceR(t *testing.T, n *node.Node, name string) *u64OnceReader {
	o, err := collections.NewOnceReader[uint64](n, name, quick)
	return opened(t, o, err)
}

func onceIs(t *testing.T, r *u64OnceReader, want uint64) {
	t.Helper()
	if got, ok := r.Get(); !ok || got != want || !r.IsSome() || r.IsEmpty() || r.Len() != 1 {
		t.Fatalf("once holds %d (%v), want %d", got, ok, want)
	}
}

// TestOnce ports mosaik's tests/collections/once.rs; each subtest is named
// after the mosaik test. construct_from_macro has no Go counterpart (no
// macros): OnceDef is its port, in construct_from_def.
func TestOnce(t *testing.T) {
	ns := startNodes(t, 4)
	write := func(w *u64Once, x uint64) func(ctxT) (ver, error) {
		return func(ctx ctxT) (ver, error) { return w.Write(ctx, x) }
	}
	runScenarios(t, ns, []scenario{
		{"smoke", func(t *testing.T, ns []*node.Node, name string) {
			w := onceW(t, ns[0], name)
			waitOnline(t, w)
			if _, ok := w.Get(); ok || !w.IsEmpty() || w.Len() != 0 {
				t.Fatal("not empty")
			}
			v1 := do(t, write(w, 42))
			onceIs(t, &w.OnceReader, 42)
			v2 := do(t, write(w, 99))
			v3 := do(t, func(ctx ctxT) (ver, error) { return w.Set(ctx, 123) })
			if !(v1 < v2 && v2 < v3) {
				t.Fatalf("ignored writes still commit: versions %d %d %d", v1, v2, v3)
			}
			onceIs(t, &w.OnceReader, 42)
			if w.Rejected() != 0 {
				t.Fatal("a losing write is a valid no-op, not a rejection")
			}
		}},
		{"catchup_single_reader", func(t *testing.T, ns []*node.Node, name string) {
			w := onceW(t, ns[0], name)
			waitOnline(t, w)
			v := do(t, write(w, 999))
			for i := range uint64(50) {
				v = do(t, write(w, i))
			}
			r := onceR(t, ns[1], name)
			waitOnline(t, r)
			waitReach(t, v, r)
			onceIs(t, r, 999)
		}},
		{"multiple_readers", func(t *testing.T, ns []*node.Node, name string) {
			w := onceW(t, ns[0], name)
			rs := []*u64OnceReader{onceR(t, ns[1], name), onceR(t, ns[2], name), onceR(t, ns[3], name)}
			waitOnline(t, w, rs[0], rs[1], rs[2])
			do(t, write(w, 42))
			v := do(t, write(w, 43))
			for _, r := range rs {
				waitReach(t, v, r)
				onceIs(t, r, 42)
			}
		}},
		{"writer_reads_own_write", func(t *testing.T, ns []*node.Node, name string) {
			w, err := collections.NewOnce[string](ns[0], name, quick)
			w = opened(t, w, err)
			waitOnline(t, w)
			do(t, func(ctx ctxT) (ver, error) { return w.Write(ctx, "first") })
			do(t, func(ctx ctxT) (ver, error) { return w.Write(ctx, "second") })
			if g, ok := w.Get(); !ok || g != "first" {
				t.Fatal("holds", g)
			}
		}},
		{"late_writer_catchup", func(t *testing.T, ns []*node.Node, name string) {
			w1 := onceW(t, ns[0], name)
			waitOnline(t, w1)
			v := do(t, write(w1, 42))
			w2 := onceW(t, ns[1], name)
			oneCluster(t, w1, w2)
			waitReach(t, v, w2)
			onceIs(t, &w2.OnceReader, 42)
			v = do(t, write(w2, 99))
			waitReach(t, v, w1)
			onceIs(t, &w1.OnceReader, 42)
			onceIs(t, &w2.OnceReader, 42)
		}},
		{"snapshot_catchup", func(t *testing.T, ns []*node.Node, name string) {
			// A compacted log: the late reader installs a snapshot.
			w, err := collections.NewOnce[uint64](ns[0], name, compacting)
			w = opened(t, w, err)
			waitOnline(t, w)
			var v ver
			for i := range uint64(30) {
				v = do(t, write(w, 100+i))
			}
			r, err := collections.NewOnceReader[uint64](ns[3], name, compacting)
			r = opened(t, r, err)
			if got, err := r.AwaitValue(tctx(t, reachWithin)); err != nil || got != 100 {
				t.Fatal("late reader awaited", got, err)
			}
			waitReach(t, v, r)
			onceIs(t, r, 100)
		}},
		{"construct_from_def", func(t *testing.T, ns []*node.Node, name string) {
			def := collections.OnceDef[string](name, quick)
			w, err := def.Writer(ns[0])
			w = opened(t, w, err)
			r, err := def.Reader(ns[1])
			r = opened(t, r, err)
			waitOnline(t, w, r)
			waitReach(t, do(t, func(ctx ctxT) (ver, error) { return w.Write(ctx, "x") }), r)
			r2, err := def.Reader(ns[2])
			r2 = opened(t, r2, err)
			if g, err := r2.AwaitValue(tctx(t, reachWithin)); err != nil || g != "x" {
				t.Fatal("third node's reader:", g, err)
			}
		}},
		{"await_value", func(t *testing.T, ns []*node.Node, name string) {
			// Not a mosaik test: AwaitValue wakes on the first write, and
			// ends with its ctx or the replica.
			w, r := onceW(t, ns[0], name), onceR(t, ns[1], name)
			got := make(chan uint64, 1)
			go func() {
				v, err := r.AwaitValue(tctx(t, 2*reachWithin))
				if err != nil {
					t.Error(err)
				}
				got <- v
			}()
			waitOnline(t, w)
			do(t, write(w, 7))
			if v := <-got; v != 7 {
				t.Fatal("awaited", v)
			}
			if v, err := w.AwaitValue(tctx(t, time.Second)); err != nil || v != 7 {
				t.Fatal("await on a held value:", v, err)
			}
			empty := onceR(t, ns[2], name+"-empty")
			done := make(chan error, 1)
			go func() { _, err := empty.AwaitValue(tctx(t, 2*reachWithin)); done <- err }()
			_ = empty.Close()
			if err := <-done; !errors.Is(err, collections.ErrTerminated) {
				t.Fatal("await on a closed replica:", err)
			}
		}},
	})
}
