package groups

import (
	"context"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/internal/testutil"
)

// A voter that comes back with an empty log (a memory store across a
// crash) keeps its raft id. It granted its vote to a lagging voter, which
// then led without an entry a majority had committed and acknowledged to
// the client: the write was lost and, once healed, the replicas disagreed
// (the old leader had applied it). Now it grants no vote until it holds
// everything committed, so the laggard cannot lead; on heal the old
// leader leads again, the write survives everywhere, and the group goes on.
func TestFence_RestartedVoterElectsNoStaleLeader(t *testing.T) {
	n := newMemNet()
	p := leaveParams() // RemoveAfter 30 s: no forced epoch within the test
	p.LeaveTimeout = 0 // a close is a crash
	ws := writers(t, n, p, 3)
	testutil.Eventually(t, 10*time.Second, func() bool { return settledVoters(ws[0]) == 3 }, "three voters")
	a, b, c := ws[0], ws[1], ws[2]
	if err := a.When().IsLeader(tctx(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	n.partition([]peer.ID{a.c.self, c.c.self}, []peer.ID{b.c.self}) // b lags
	if _, err := a.Execute(tctx(t, 5*time.Second), 5); err != nil {
		t.Fatal(err)
	}
	if err := c.When().Committed(tctx(t, 5*time.Second), a.Committed()); err != nil {
		t.Fatal(err)
	}
	if v := weak(t, b); v != 0 {
		t.Fatalf("the cut-off voter holds %d, want 0", v)
	}
	// c crashes (its log was in memory) and comes back; meanwhile a, the
	// only holder of the write but for c, is cut off.
	n.partition([]peer.ID{a.c.self}, []peer.ID{b.c.self})
	_ = c.s.Close()
	c2 := joinCounter(t, n.service(t, "c", false), WithParams(p))
	n.partition([]peer.ID{a.c.self}, []peer.ID{b.c.self, c2.c.self})
	// With the restarted voter's vote, b led within an election timeout or
	// two. Ten is the window.
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Scale(10*p.ElectionTimeout))
	defer cancel()
	if lead, err := b.When().LeaderOtherThan(ctx, a.c.self); err == nil {
		t.Fatalf("%s leads the side without the committed write (b %s, restarted c %s); b holds %d", lead, b.c.self, c2.c.self, weak(t, b))
	}
	n.heal()
	for _, g := range []*Group[int64, struct{}, int64]{a, b, c2} {
		if err := g.When().Online(tctx(t, 10*time.Second)); err != nil {
			t.Fatalf("after heal: %v", err)
		}
		if _, err := g.Execute(tctx(t, 10*time.Second), 1); err != nil {
			t.Fatalf("after heal: %v", err)
		}
	}
	for name, g := range map[string]*Group[int64, struct{}, int64]{"a": a, "b": b, "c": c2} {
		v, _, err := g.Query(tctx(t, 10*time.Second), struct{}{}, Strong)
		if err != nil || v != 8 {
			t.Errorf("%s reads %d (%v), want 8: the committed write and the three after it", name, v, err)
		}
	}
}
