package groups

import (
	"errors"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/internal/testutil"
)

// Two of three voters crash: the survivor commits nothing and does not
// force by itself (a partition would look the same), until the operator
// calls ForceNewEpoch; then it leads a new epoch with the state it held.
// ForceNewEpoch refuses while the group has a leader, and on a reader.
func TestForceNewEpoch_OperatorRestoresLostMajority(t *testing.T) {
	n := newMemNet()
	gs := threeCounters(t, n)
	r := joinCounter(t, n.service(t, "r", false), WithRole(RoleReader))
	if err := r.When().Online(tctx(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := gs[0].Execute(tctx(t, 5*time.Second), 5); err != nil {
		t.Fatal(err)
	}
	if err := gs[1].ForceNewEpoch(tctx(t, 5*time.Second)); !errors.Is(err, ErrNotForced) {
		t.Fatalf("ForceNewEpoch with a live leader = %v, want ErrNotForced", err)
	}
	if err := r.ForceNewEpoch(tctx(t, 5*time.Second)); !errors.Is(err, ErrNotForced) {
		t.Fatalf("ForceNewEpoch on a reader = %v, want ErrNotForced", err)
	}
	// Cut two voters off, each alone (a crash, as the survivor sees it):
	// the survivor and the reader stay together.
	var survivor *Group[int64, struct{}, int64]
	var sides [][]peer.ID
	for _, g := range gs {
		if survivor == nil && !g.IsLeader() {
			survivor = g
			continue
		}
		sides = append(sides, []peer.ID{g.c.self})
	}
	n.partition(append(sides, []peer.ID{survivor.c.self, r.c.self})...)
	p := TestParams()
	// The survivor stays offline for three times RemoveAfter.
	for start := time.Now(); time.Since(start) < 3*p.RemoveAfter; {
		if _, err := survivor.Execute(tctx(t, p.RemoveAfter/2), 1); err == nil {
			t.Fatal("the survivor of a lost majority committed without an operator")
		}
	}
	if err := survivor.ForceNewEpoch(tctx(t, 5*time.Second)); err != nil {
		t.Fatal("ForceNewEpoch:", err)
	}
	if err := survivor.When().IsLeader(tctx(t, 10*time.Second)); err != nil {
		t.Fatal("the survivor does not lead the forced epoch:", err)
	}
	if _, err := survivor.Execute(tctx(t, 5*time.Second), 10); err != nil {
		t.Fatal(err)
	}
	for _, g := range []*Group[int64, struct{}, int64]{survivor, r} {
		testutil.Eventually(t, 10*time.Second, func() bool {
			v, _, err := g.Query(tctx(t, 2*time.Second), struct{}{}, Strong)
			return err == nil && v == 15
		}, "the forced epoch lost the state, or the reader did not follow it")
	}
}
