package groups

import (
	"errors"
	"testing"
	"time"
)

// Port of mosaik's feed smoke test: a lone node elects itself; a second
// node joins, follows it, and feeds from the follower get increasing
// indexes that commit on both.
func TestFeed_Smoke(t *testing.T) {
	n := newMemNet()
	s0 := n.service(t, "0", false)
	g0 := joinCounter(t, s0)
	if err := g0.When().IsLeader(tctx(t, 10*time.Second)); err != nil {
		t.Fatal("n0 alone did not elect itself:", err)
	}
	bonds := g0.Bonds()
	if len(bonds.Peers) != 0 {
		t.Fatalf("bonds before any peer: %v", bonds.Peers)
	}
	s1 := n.service(t, "1", false)
	g1 := joinCounter(t, s1)
	select {
	case <-bonds.Changed:
	case <-tctx(t, 5*time.Second).Done():
		t.Fatal("no bond change notified")
	}
	if b := g0.Bonds().Peers; len(b) != 1 || b[0] != s1.self {
		t.Fatalf("bonds %v, want n1", b)
	}
	if err := g1.When().LeaderIs(tctx(t, 10*time.Second), s0.self); err != nil {
		t.Fatal("n1 does not follow n0:", err)
	}
	if g1.IsLeader() {
		t.Fatal("n1 is leader")
	}
	i1, err := g1.Feed(tctx(t, 5*time.Second), 1)
	if err != nil {
		t.Fatal(err)
	}
	i2, err := g1.Feed(tctx(t, 5*time.Second), 2)
	if err != nil {
		t.Fatal(err)
	}
	r, err := g1.FeedMany(tctx(t, 5*time.Second), []int64{3, 4, 5})
	if err != nil {
		t.Fatal(err)
	}
	if !(i1 < i2 && i2 < r.First && r.Last == r.First+2) {
		t.Fatalf("indexes not increasing: %d %d %v", i1, i2, r)
	}
	for _, g := range []*Group[int64, struct{}, int64]{g0, g1} {
		if err := g.When().Committed(tctx(t, 10*time.Second), r.Last); err != nil {
			t.Fatal(err)
		}
		if v := weak(t, g); v != 15 {
			t.Fatalf("weak query = %d, want 15", v)
		}
	}
	if _, err := g1.FeedMany(tctx(t, time.Second), nil); !errors.Is(err, ErrNoCommands) {
		t.Fatalf("empty batch: %v", err)
	}
}
