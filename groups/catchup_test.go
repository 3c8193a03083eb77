package groups

import (
	"context"
	"testing"
	"time"
)

// installed reports whether the node's core restored a snapshot from the
// network (its first log index moved past 1 without it snapshotting).
func firstIndex[C, Q, R any](g *Group[C, Q, R]) uint64 {
	ch := make(chan uint64, 1)
	if g.c.do(context.Background(), func() { f, _ := g.c.store.FirstIndex(); ch <- f }) != nil {
		return 0
	}
	return <-ch
}

// Port of mosaik's one_leader_one_follower_small: a late joiner replays
// the log and then follows new commands.
func TestCatchup_Small(t *testing.T) {
	n := newMemNet()
	s0 := n.service(t, "0", false)
	g0 := joinCounter(t, s0)
	if err := g0.When().IsLeader(tctx(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	r, err := g0.ExecuteMany(tctx(t, 5*time.Second), []int64{1, 1, 2, 2})
	if err != nil {
		t.Fatal(err)
	}
	g1 := joinCounter(t, n.service(t, "1", false))
	if err := g1.When().LeaderIs(tctx(t, 10*time.Second), s0.self); err != nil {
		t.Fatal(err)
	}
	if err := g1.When().Committed(tctx(t, 10*time.Second), r.Last); err != nil {
		t.Fatal(err)
	}
	if v := weak(t, g1); v != 6 {
		t.Fatalf("follower = %d, want 6", v)
	}
	r, err = g0.ExecuteMany(tctx(t, 5*time.Second), []int64{1, 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := g1.When().Committed(tctx(t, 5*time.Second), r.Last); err != nil {
		t.Fatal(err)
	}
	if v := weak(t, g1); v != 8 {
		t.Fatalf("follower = %d, want 8", v)
	}
	if f := firstIndex(g1); f != 1 {
		t.Fatalf("follower's log starts at %d: it did not replay the log", f)
	}
}

// Port of mosaik's one_leader_one_follower_large: past the compaction
// window a late joiner catches up through a snapshot; it then executes
// itself, and a third node catches up with both.
func TestCatchup_LargeThroughSnapshot(t *testing.T) {
	n := newMemNet()
	s0 := n.service(t, "0", false)
	g0 := joinCounter(t, s0)
	if err := g0.When().IsLeader(tctx(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	batch := func(g *Group[int64, struct{}, int64], from int64) IndexRange {
		cmds := make([]int64, 200)
		for i := range cmds {
			cmds[i] = from + int64(i)
		}
		r, err := g.ExecuteMany(tctx(t, 10*time.Second), cmds)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	batch(g0, 0)
	r := batch(g0, 200) // 0..399: past SnapshotEntries and the window
	if f := firstIndex(g0); f <= 1 {
		t.Fatalf("leader did not compact (first index %d)", f)
	}
	g1 := joinCounter(t, n.service(t, "1", false))
	if err := g1.When().Committed(tctx(t, 20*time.Second), r.Last); err != nil {
		t.Fatal(err)
	}
	if v := weak(t, g1); v != 79800 {
		t.Fatalf("n1 = %d, want 79800", v)
	}
	if f := firstIndex(g1); f <= 1 {
		t.Fatalf("n1's log starts at %d: no snapshot was installed", f)
	}
	r = batch(g1, 400) // 400..599 from the follower
	if err := g0.When().Committed(tctx(t, 20*time.Second), r.Last); err != nil {
		t.Fatal(err)
	}
	g2 := joinCounter(t, n.service(t, "2", false))
	if err := g2.When().Committed(tctx(t, 20*time.Second), r.Last); err != nil {
		t.Fatal(err)
	}
	for i, g := range []*Group[int64, struct{}, int64]{g0, g1, g2} {
		if v := weak(t, g); v != 179700 {
			t.Fatalf("n%d = %d, want 179700", i, v)
		}
	}
}
