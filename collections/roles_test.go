package collections_test

import (
	"testing"
	"time"

	"github.com/mosaik-go/mosaik/collections"
	"github.com/mosaik-go/mosaik/internal/testutil"
)

// TestMap_ReaderOfAMapTheNodeWrites: a reader opened on a node that writes
// the map shares the writer's replica (it failed: the group was joined as
// a writer), and keeps reading once the writer closes. A writer opened
// where only a reader is open fails with a message saying what to do.
func TestMap_ReaderOfAMapTheNodeWrites(t *testing.T) {
	n := startNode(t)
	name := freshName(t)
	w, err := collections.NewMap[string, int](n, name, fastGroup)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	r, err := collections.NewMapReader[string, int](n, name, fastGroup)
	if err != nil {
		t.Fatalf("reader of the map the node writes: %v", err)
	}
	defer r.Close()
	ctx := tctx(t, 20*time.Second)
	if err := w.When().Online(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Insert(ctx, "a", 1); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, func() bool { v, ok := r.Get("a"); return ok && v == 1 }, "the reader does not see the writer's insert")
	_ = w.Close()
	if v, ok := r.Get("a"); !ok || v != 1 {
		t.Fatalf("after the writer closed the reader reads %v, %v", v, ok)
	}

	other := freshName(t)
	r2, err := collections.NewMapReader[string, int](n, other, fastGroup)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	if w2, err := collections.NewMap[string, int](n, other, fastGroup); err == nil {
		_ = w2.Close()
		t.Fatal("a writer opened where a reader of the name runs")
	}
}
