package groups

import (
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/mosaik-go/mosaik/groups/pb"
	"github.com/mosaik-go/mosaik/internal/testutil"
)

// termOf is the raft term g's node is at.
func termOf[C, Q, R any](t *testing.T, g *Group[C, Q, R]) uint64 {
	t.Helper()
	ch := make(chan uint64, 1)
	if err := g.c.do(tctx(t, 5*time.Second), func() { ch <- g.c.rn.BasicStatus().HardState.GetTerm() }); err != nil {
		t.Fatal(err)
	}
	return <-ch
}

// A member without a leader follows an announcement that its epoch was
// abandoned only when the abandonment is not older than its own term: a
// leader deposed on a minority side that lost a merge (its status says
// so for good) no longer speaks for the epoch, whose majority elected a
// leader at a later term. An announcement at the member's term, or one
// without a term (a forced epoch's), is followed.
func TestCore_StaleAbandonmentIgnored(t *testing.T) {
	n := newMemNet()
	gs := threeCounters(t, n)
	if _, err := gs[0].Execute(tctx(t, 5*time.Second), 1); err != nil {
		t.Fatal(err)
	}
	old := gs[0] // the first leader (threeCounters waits for it)
	epoch, oldTerm := epochOf(old), termOf(t, old)
	// Depose it: the other two elect a leader at a later term.
	n.partition([]peer.ID{old.c.self}, []peer.ID{gs[1].c.self, gs[2].c.self})
	testutil.Eventually(t, 10*time.Second, func() bool { return gs[1].IsLeader() || gs[2].IsLeader() }, "a new leader on the majority side")
	f := gs[1]
	if f.IsLeader() {
		f = gs[2]
	}
	if ft := termOf(t, f); ft <= oldTerm {
		t.Fatalf("the new leader's term %d is not past the deposed one's %d", ft, oldTerm)
	}
	// Now f knows no leader up either: everyone is cut off from everyone.
	n.partition([]peer.ID{old.c.self}, []peer.ID{gs[1].c.self}, []peer.ID{gs[2].c.self})
	testutil.Eventually(t, 10*time.Second, func() bool {
		up := make(chan bool, 1)
		return f.c.do(tctx(t, 2*time.Second), func() { up <- f.c.leaderUp() }) == nil && !<-up
	}, "the follower sees its leader gone")

	announce := func(lostTerm uint64) {
		t.Helper()
		err := f.c.do(tctx(t, 5*time.Second), func() {
			ps := f.c.peers[old.c.self]
			f.c.onStatus(old.c.self, ps, &pb.CoreStatus{LostEpoch: epoch, LostTerm: lostTerm})
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	announce(oldTerm)
	if got := epochOf(f); got != epoch {
		t.Fatalf("a member at a later term followed an abandonment at term %d: epoch %x, want %x", oldTerm, got, epoch)
	}
	announce(termOf(t, f))
	if got := epochOf(f); got != 0 {
		t.Fatalf("a member did not follow an abandonment at its own term: epoch %x", got)
	}
	// The third member follows a forced epoch's announcement (no term).
	g := gs[2]
	if g == f {
		g = gs[1]
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		up := make(chan bool, 1)
		return g.c.do(tctx(t, 2*time.Second), func() { up <- g.c.leaderUp() }) == nil && !<-up
	}, "the other member sees no leader")
	err := g.c.do(tctx(t, 5*time.Second), func() {
		g.c.onStatus(old.c.self, g.c.peers[old.c.self], &pb.CoreStatus{LostEpoch: epoch})
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := epochOf(g); got != 0 {
		t.Fatalf("a member without a leader did not follow a forced epoch's announcement: epoch %x", got)
	}
}

// A leader compares itself with a rival leader of an epoch it once
// abandoned like with any other: when the rival's log is higher it gives
// way, or the two clusters would never merge (the rival keeps waiting for
// it to yield).
func TestCore_LeaderYieldsToAbandonedEpochsLiveCluster(t *testing.T) {
	n := newMemNet()
	g := joinCounter(t, n.service(t, "0", false))
	if err := g.When().IsLeader(tctx(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	const rival = uint64(0xabad1dea)
	err := g.c.do(tctx(t, 5*time.Second), func() {
		g.c.lost[rival] = true
		g.c.onStatus(peer.ID("node-r"), &peerState{id: 99, up: true}, &pb.CoreStatus{
			Epoch: rival, IsLeader: true, LastTerm: 1 << 40, LastIndex: 1 << 40,
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan bool, 1)
	if err := g.c.do(tctx(t, 5*time.Second), func() { ch <- g.c.lost[rival] }); err != nil {
		t.Fatal(err)
	}
	if e := epochOf(g); e != 0 || <-ch {
		t.Fatalf("the leader kept its epoch (%x) against a higher live cluster of an epoch it had abandoned", e)
	}
}

// A member whose raft term went past its leader's in a failed election
// (here: a vote request that reached it alone) still follows that
// leader's abandonment: the announcement is compared with its log's last
// term, which a failed election does not raise.
func TestCore_MemberAheadInTermFollowsAbandonment(t *testing.T) {
	n := newMemNet()
	gs := threeCounters(t, n)
	// l is the leader now (threeCounters waited for gs[0], but the lead
	// may have moved since); a and b follow it.
	var l, a, b *Group[int64, struct{}, int64]
	testutil.Eventually(t, 10*time.Second, func() bool {
		for i, g := range gs {
			if g.IsLeader() {
				l, a, b = g, gs[(i+1)%3], gs[(i+2)%3]
				return true
			}
		}
		return false
	}, "no leader")
	old := epochOf(l)
	lt := termOf(t, l)
	n.partition([]peer.ID{l.c.self, a.c.self}, []peer.ID{b.c.self})
	// b takes a's vote request at lt+1 once its leader lease has run out
	// (CheckQuorum: until then it ignores it).
	testutil.Eventually(t, 10*time.Second, func() bool {
		_ = b.c.do(tctx(t, 2*time.Second), func() {
			_ = b.c.rn.Step(&raftpb.Message{Type: raftpb.MessageType_MsgVote.Enum(),
				From: new(a.c.selfID), To: new(b.c.selfID), Term: new(lt + 1), LogTerm: new(uint64(0)), Index: new(uint64(0))})
		})
		return termOf(t, b) > lt
	}, "b's raft term past its leader's")
	// l, still leading with a, loses a merge to a rival cluster.
	err := l.c.do(tctx(t, 5*time.Second), func() {
		l.c.onStatus(peer.ID("node-r"), &peerState{id: 99, up: true}, &pb.CoreStatus{
			Epoch: 0xabad1dea, IsLeader: true, LastTerm: 1 << 40, LastIndex: 1 << 40,
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	if epochOf(l) == old {
		t.Fatal("the leader did not abandon its epoch to a higher rival")
	}
	n.heal()
	testutil.Eventually(t, 20*time.Second, func() bool { return epochOf(b) != old && epochOf(a) != old },
		"a member ahead in term stayed in the abandoned epoch")
}

// A reader that followed a forced epoch, which then gave way to its live
// parent, rejoins the parent: only the epoch it abandoned last is refused,
// not every epoch it ever left.
func TestCore_FollowerOfYieldedForceRejoinsParent(t *testing.T) {
	n := newMemNet()
	gs := threeCounters(t, n)
	r := joinCounter(t, n.service(t, "r", false), WithRole(RoleReader))
	old := epochOf(gs[0])
	testutil.Eventually(t, 10*time.Second, func() bool { return epochOf(r) == old }, "the reader joins")
	if _, err := gs[0].Execute(tctx(t, 5*time.Second), 5); err != nil {
		t.Fatal(err)
	}
	n.partition([]peer.ID{gs[0].c.self, r.c.self}, []peer.ID{gs[1].c.self, gs[2].c.self})
	testutil.Eventually(t, 20*time.Second, func() bool {
		return gs[0].ForceNewEpoch(tctx(t, 2*time.Second)) == nil
	}, "ForceNewEpoch on n0")
	forced := epochOf(gs[0])
	testutil.Eventually(t, 15*time.Second, func() bool { return epochOf(r) == forced }, "the reader follows the forced epoch")
	n.heal()
	testutil.Eventually(t, 15*time.Second, func() bool { return epochOf(gs[0]) == old }, "the forcer yields to its live parent")
	testutil.Eventually(t, 20*time.Second, func() bool { return epochOf(r) == old }, "the reader rejoins the live parent")
	testutil.Eventually(t, 10*time.Second, func() bool {
		v, _, err := r.Query(tctx(t, 2*time.Second), struct{}{}, Weak)
		return err == nil && v == 5
	}, "the reader has the parent's state")
}
