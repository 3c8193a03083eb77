package groups

import (
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/mosaik-go/mosaik/internal/testutil"
)

// The stale-configuration deadlock after a joint step (PROTOCOL §21.5). A
// group grows from one voter to three: joint {0,1,2}/{0}. n1 receives the
// entry leaving the joint configuration (L) and a later command X, but is
// never told that L committed, so it still runs the joint configuration;
// n2 applies L (configuration {0,1,2}) but never receives X. X commits
// with n1's ack (n0 and n1 are a majority of {0,1,2}), and its Execute on
// n0 succeeds. Then n0 is lost for good.
//
// n1 cannot be elected (the outgoing half {0} is gone) and n2 cannot win
// n1's vote (its log is behind). n1 finds a half gone; the forced epoch
// must come from n1's log, or X, committed and acknowledged, is lost.
// Within RemoveAfter and a few election timeouts n1 or n2 must lead, the
// new epoch must commit, X must be in the state of both, and n1 reports no
// discarded entry (its tail is kept, not dropped).
func TestJoint_StaleConfLongerLogForces(t *testing.T) {
	n := newMemNet()
	clk := newTickDriver(t)
	p := TestParams()
	s0, s1, s2 := n.service(t, "0", false), n.service(t, "1", false), n.service(t, "2", false)
	g0 := joinCounter(t, s0, clk.option())
	if err := g0.When().IsLeader(tctx(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := g0.Execute(tctx(t, 5*time.Second), 7); err != nil {
		t.Fatal(err)
	}

	// Once the leader has sent the leave entry L: tell n1 no commit index
	// at or past L, and hold back from n2 every entry after L.
	leader, f1, f2 := s0.self, s1.self, s2.self
	var leaveAt atomic.Uint64
	rewriteRaftFrom(n, leader, func(to peer.ID, m *raftpb.Message) bool {
		for _, e := range m.GetEntries() {
			if ch, ok := confChanges(e); ok && len(ch) == 0 {
				leaveAt.CompareAndSwap(0, e.GetIndex())
			}
		}
		l := leaveAt.Load()
		if l == 0 {
			return false
		}
		changed := false
		switch to {
		case f1:
			if m.GetCommit() >= l {
				m.Commit, changed = new(l-1), true
			}
		case f2:
			for i, e := range m.GetEntries() {
				if e.GetIndex() > l {
					m.Entries, changed = m.Entries[:i], true
					break
				}
			}
		}
		return changed
	})
	g1 := joinCounter(t, s1, clk.option())
	g2 := joinCounter(t, s2, clk.option())
	gs := []counterGroup{g0, g1, g2}
	id0 := g0.c.selfID

	testutil.Eventually(t, 20*time.Second, func() bool {
		var ok [3]bool
		for i, g := range gs {
			onCore(t, g, func(c *groupCore) {
				in, out := c.conf.GetVoters(), c.conf.GetVotersOutgoing()
				if i == 1 {
					ok[i] = len(in) == 3 && slices.Equal(out, []uint64{id0})
				} else {
					ok[i] = len(in) == 3 && len(out) == 0
				}
			})
		}
		return ok == [3]bool{true, true, true}
	}, "n0 and n2 in {0,1,2}, n1 still in the joint configuration {0,1,2}/{0}")

	// X commits with n1's ack alone: n2 never receives it.
	xAt, err := g0.Execute(tctx(t, 5*time.Second), 100)
	if err != nil {
		t.Fatal("X did not commit:", err)
	}
	l := leaveAt.Load()
	onCore(t, g1, func(c *groupCore) {
		if _, li := c.lastPos(); li < xAt || c.applied >= l {
			t.Fatalf("n1: last index %d applied %d; want X (%d) in its log and L (%d) not applied", li, c.applied, xAt, l)
		}
	})
	onCore(t, g2, func(c *groupCore) {
		if _, li := c.lastPos(); li != l || c.applied != l {
			t.Fatalf("n2: last index %d applied %d; want both at L (%d), without X (%d)", li, c.applied, l, xAt)
		}
	})
	var oldEpoch uint64
	onCore(t, g1, func(c *groupCore) { oldEpoch = c.epoch })
	for i, g := range gs {
		t.Logf("before the cut: n%d %s", i, coreSummary(t, g))
	}

	cutAt := clk.n.Load()
	n.partition([]peer.ID{s0.self}, []peer.ID{s1.self, s2.self})
	lead := awaitSurvivorLeader(t, clk, cutAt, p, g1, g2, "n0 was lost (n1 stale in the joint step with the longer log)")
	for i, g := range gs {
		t.Logf("survivor leads: n%d %s", i, coreSummary(t, g))
	}
	var newEpoch uint64
	onCore(t, lead, func(c *groupCore) { newEpoch = c.epoch })
	if newEpoch == oldEpoch {
		t.Fatal("a survivor leads the old epoch: the joint configuration cannot elect without n0")
	}
	if _, err := lead.Execute(tctx(t, 5*time.Second), 5); err != nil {
		t.Fatal("the new epoch does not commit:", err)
	}
	for _, g := range []counterGroup{g1, g2} {
		testutil.Eventually(t, 20*time.Second, func() bool {
			v, _, err := g.Query(tctx(t, 2*time.Second), struct{}{}, Strong)
			return err == nil && v == 112
		}, "a survivor's state is not 7 + X (100) + 5: the committed X was lost")
	}
	onCore(t, g1, func(c *groupCore) {
		if c.discarded != 0 {
			t.Errorf("n1 reports %d entries discarded; its tail (L, X) is kept, not dropped", c.discarded)
		}
	})
	onCore(t, g2, func(c *groupCore) {
		if c.epoch != newEpoch {
			t.Errorf("n2 is in epoch %x, not the new epoch %x", c.epoch, newEpoch)
		}
	})
	for i, g := range gs {
		t.Logf("at the end: n%d %s", i, coreSummary(t, g))
	}
}

// coreSummary describes g's core for a failure log.
func coreSummary(t testing.TB, g counterGroup) string {
	var s string
	onCore(t, g, func(c *groupCore) {
		lt, li := c.lastPos()
		s = fmt.Sprintf("epoch %x %v lead %x conf %v/%v applied %d commit %d last (%d, %d) discarded %d",
			c.epoch, c.state, c.lead, c.conf.GetVoters(), c.conf.GetVotersOutgoing(), c.applied,
			c.rn.BasicStatus().HardState.GetCommit(), lt, li, c.discarded)
	})
	return s
}
