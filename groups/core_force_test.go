package groups

import (
	"testing"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/mosaik-go/mosaik/groups/pb"
)

// A writer whose configuration lost a whole half ranks the bonded writers
// by their logs (last term, last index), not by applied index: it defers
// to a higher log, for RemoveAfter at most, and not to a shorter log with
// a higher applied index.
func TestForce_DefersToHigherLogAtMostRemoveAfter(t *testing.T) {
	for name, higherLog := range map[string]bool{"higher log": true, "higher applied, shorter log": false} {
		t.Run(name, func(t *testing.T) {
			c := handCore(t, "a")
			c.bootstrap()
			c.step(t)
			epoch := c.epoch
			// This node is in {a, x} with x never seen, and knows no leader
			// (raft's own state is left alone: only the core's view).
			c.conf = &raftpb.ConfState{Voters: []uint64{c.selfID, raftID("x")}}
			c.state, c.lead = raft.StateFollower, 0
			c.onBond(bondEvent{p: "b", up: true, role: RoleWriter})
			lt, li := c.lastPos()
			st := &pb.CoreStatus{Epoch: epoch, LastTerm: lt, LastIndex: li + 1}
			if !higherLog {
				st = &pb.CoreStatus{Epoch: epoch, LastTerm: lt, LastIndex: li - 1, Applied: li + 100}
			}
			c.peers["b"].status = st
			after := c.p.ticks(c.p.RemoveAfter)
			// No leader for RemoveAfter, then x gone for RemoveAfter: from
			// tick 2*after on, a half is gone.
			forcedAt := 0
			for i := 1; i <= 4*after && forcedAt == 0; i++ {
				c.onTick()
				c.step(t)
				if c.epoch != epoch {
					forcedAt = i
				}
			}
			want := 2 * after
			if higherLog {
				want = 3 * after
			}
			if forcedAt != want {
				t.Fatalf("forced at tick %d, want %d (RemoveAfter is %d ticks)", forcedAt, want, after)
			}
			if c.parent != epoch || !c.lost[epoch] || c.lostEpoch != epoch {
				t.Fatalf("parent %x lost %v lost epoch %x, want the old epoch %x", c.parent, c.lost, c.lostEpoch, epoch)
			}
		})
	}
}

func TestForceRank_Order(t *testing.T) {
	for _, tc := range []struct {
		a, b forceRank
		want bool
	}{
		{forceRank{3, 5, 0, 1}, forceRank{2, 9, 9, 9}, true},  // last term first
		{forceRank{3, 6, 0, 1}, forceRank{3, 5, 9, 9}, true},  // then last index
		{forceRank{3, 5, 4, 1}, forceRank{3, 5, 3, 9}, true},  // then applied
		{forceRank{3, 5, 4, 2}, forceRank{3, 5, 4, 1}, true},  // then raft id
		{forceRank{3, 5, 4, 1}, forceRank{3, 5, 4, 1}, false}, // not above itself
	} {
		if got := tc.a.above(tc.b); got != tc.want || (tc.want && tc.b.above(tc.a)) {
			t.Errorf("%v above %v = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}
