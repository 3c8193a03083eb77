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
			// This node is in the joint step {a, b, y}/{x} with x and y
			// never seen, and knows no leader (raft's own state is left
			// alone: only the core's view). The outgoing half is gone, and
			// a and b are a majority of the incoming half.
			c.conf = &raftpb.ConfState{
				Voters:         []uint64{c.selfID, raftID("b"), raftID("y")},
				VotersOutgoing: []uint64{raftID("x")},
			}
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

// A writer that does not reach a strict majority of the incoming voters
// never forces a new epoch, however long it waits: the side it cannot
// reach may hold the live cluster. The joint step whose outgoing half is
// gone while a majority of the incoming half is reachable does force.
func TestForce_MinorityNeverForces(t *testing.T) {
	for _, tc := range []struct {
		name       string
		conf       func(self uint64) *raftpb.ConfState
		bondB      bool
		wantForced bool
	}{
		{"lone voter of three", func(self uint64) *raftpb.ConfState {
			return &raftpb.ConfState{Voters: []uint64{self, raftID("x"), raftID("y")}}
		}, false, false},
		{"voter of three with a bonded learner", func(self uint64) *raftpb.ConfState {
			return &raftpb.ConfState{Voters: []uint64{self, raftID("x"), raftID("y")}, Learners: []uint64{raftID("b")}}
		}, true, false},
		{"learner cut off from every voter", func(self uint64) *raftpb.ConfState {
			return &raftpb.ConfState{Voters: []uint64{raftID("x"), raftID("y"), raftID("z")}, Learners: []uint64{self}}
		}, false, false},
		{"lone outgoing voter of {a,x,y}/{a}", func(self uint64) *raftpb.ConfState {
			return &raftpb.ConfState{Voters: []uint64{self, raftID("x"), raftID("y")}, VotersOutgoing: []uint64{self}}
		}, false, false},
		{"majority of the incoming half, outgoing gone", func(self uint64) *raftpb.ConfState {
			return &raftpb.ConfState{Voters: []uint64{self, raftID("b"), raftID("y")}, VotersOutgoing: []uint64{raftID("x")}}
		}, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := handCore(t, "a")
			c.bootstrap()
			c.step(t)
			epoch := c.epoch
			c.conf = tc.conf(c.selfID)
			c.state, c.lead = raft.StateFollower, 0
			if tc.bondB {
				c.onBond(bondEvent{p: "b", up: true, role: RoleWriter})
				lt, li := c.lastPos()
				c.peers["b"].status = &pb.CoreStatus{Epoch: epoch, LastTerm: lt, LastIndex: li - 1}
			}
			after := c.p.ticks(c.p.RemoveAfter)
			forced := false
			for i := 1; i <= 10*after && !forced; i++ {
				c.onTick()
				c.step(t)
				forced = c.epoch != epoch
			}
			if forced != tc.wantForced {
				t.Fatalf("forced a new epoch: %v, want %v", forced, tc.wantForced)
			}
		})
	}
}
