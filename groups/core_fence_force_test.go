package groups

import (
	"context"
	"testing"
	"time"

	"github.com/mosaik-go/mosaik/internal/testutil"
)

// The leader is gone for good and a voter came back empty: the survivor
// that holds the log needs the empty one's vote, which the vote fence
// withholds. It forces a new epoch from its log once the leader has been
// gone, and the other blank, for RemoveAfter; the empty voter joins it
// and catches up. (With the fence alone, the group elected no leader
// ever: the blank voter is bonded, so it did not count as gone. Found by
// the diff review.)
func TestFence_SurvivorForcesAfterRemoveAfter(t *testing.T) {
	n := newMemNet()
	p := TestParams()
	p.LeaveTimeout = 0 // a close is a crash
	ws := writers(t, n, p, 3)
	testutil.Eventually(t, 10*time.Second, func() bool { return settledVoters(ws[0]) == 3 }, "three voters")
	a, b, c := ws[0], ws[1], ws[2]
	if _, err := a.Execute(tctx(t, 5*time.Second), 5); err != nil {
		t.Fatal(err)
	}
	if err := b.When().Committed(tctx(t, 5*time.Second), a.Committed()); err != nil {
		t.Fatal(err)
	}
	_ = a.s.Close() // gone for good
	_ = c.s.Close()
	c2 := joinCounter(t, n.service(t, "c", false), WithParams(p))
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Scale(8*p.RemoveAfter))
	defer cancel()
	if _, err := b.When().LeaderElected(ctx); err != nil {
		t.Fatalf("b and the restarted c elect no leader within %v of the leader's loss: %v", 8*p.RemoveAfter, err)
	}
	if _, err := b.Execute(tctx(t, 10*time.Second), 1); err != nil {
		t.Fatal(err)
	}
	for name, g := range map[string]*Group[int64, struct{}, int64]{"b": b, "restarted c": c2} {
		if err := g.When().Committed(tctx(t, 10*time.Second), b.Committed()); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if v := weak(t, g); v != 6 {
			t.Errorf("%s reads %d, want 6: the committed write and the one after", name, v)
		}
	}
}
