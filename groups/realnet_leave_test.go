package groups_test

import (
	"testing"
	"time"

	"github.com/mosaik-go/mosaik/groups"
	"github.com/mosaik-go/mosaik/internal/testutil"
)

// Over real bonds, a room of two writers whose one voter's node shuts down
// (its log in memory) hands the group over: the other writer leads and
// commits long before RemoveAfter.
func TestRealNet_LeaveOnShutdown(t *testing.T) {
	p := groups.TestParams()
	p.RemoveAfter = 30 * time.Second
	n0 := startNode(t)
	g0 := groups.JoinCounter(t, n0.Groups(), groups.WithParams(p))
	if err := g0.When().IsLeader(tctx(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	n1 := startNode(t, bootstrapOf(n0))
	g1 := groups.JoinCounter(t, n1.Groups(), groups.WithParams(p))
	if err := g1.When().Online(tctx(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := g1.Execute(tctx(t, 10*time.Second), 4); err != nil {
		t.Fatal(err)
	}
	if v := groups.Voters(g0); v != 1 {
		t.Fatalf("%d voters, want 1", v)
	}
	start := time.Now()
	_ = n0.Close()
	if d := time.Since(start); d > testutil.Scale(3*time.Second) {
		t.Fatalf("node Close took %v", d)
	}
	if err := g1.When().IsLeader(tctx(t, 3*time.Second)); err != nil {
		t.Fatalf("the remaining writer does not lead: %v", err)
	}
	if _, err := g1.Execute(tctx(t, 3*time.Second), 1); err != nil {
		t.Fatal(err)
	}
	if v := groups.WeakSum(t, g1); v != 5 {
		t.Fatalf("sum %d, want 5", v)
	}
}
