package groups

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/internal/testutil"
)

// leaveParams keep RemoveAfter far beyond the test's bounds, so only the
// graceful leave can explain a prompt recovery.
func leaveParams() Params {
	p := TestParams()
	p.RemoveAfter = 30 * time.Second
	return p
}

// writers joins n counters on the memnet under p; the first leads.
func writers(t *testing.T, net *memNet, p Params, n int) []*Group[int64, struct{}, int64] {
	t.Helper()
	var gs []*Group[int64, struct{}, int64]
	for i := range n {
		g := joinCounter(t, net.service(t, string(rune('a'+i)), false), WithParams(p))
		if i == 0 {
			if err := g.When().IsLeader(tctx(t, 10*time.Second)); err != nil {
				t.Fatal(err)
			}
		} else if err := g.When().Online(tctx(t, 10*time.Second)); err != nil {
			t.Fatal(err)
		}
		gs = append(gs, g)
	}
	return gs
}

// closeTimed closes g and fails if that took longer than its leave bound.
func closeTimed(t *testing.T, g *Group[int64, struct{}, int64]) {
	t.Helper()
	start := time.Now()
	_ = g.Close()
	if d := time.Since(start); d > testutil.Scale(3*time.Second) {
		t.Fatalf("Close took %v", d)
	}
}

// A room of two writers has one voter. When it closes, it promotes the
// other writer, hands leadership over and is removed: the other leads and
// commits at once, not after RemoveAfter.
func TestLeave_SingleVoterHandsOver(t *testing.T) {
	n := newMemNet()
	gs := writers(t, n, leaveParams(), 2)
	a, b := gs[0], gs[1]
	if _, err := a.Execute(tctx(t, 5*time.Second), 2); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		v, l := confOf(a)
		return len(v) == 1 && slices.Contains(l, b.c.selfID)
	}, "the second writer is not a learner")
	aID := a.c.selfID
	closeTimed(t, a)
	if err := b.When().IsLeader(tctx(t, 3*time.Second)); err != nil {
		t.Fatalf("the remaining writer does not lead: %v", err)
	}
	if _, err := b.Execute(tctx(t, 3*time.Second), 3); err != nil {
		t.Fatal(err)
	}
	if got := weak(t, b); got != 5 {
		t.Fatalf("state %d, want 5", got)
	}
	v, l := confOf(b)
	if !slices.Equal(v, []uint64{b.c.selfID}) || slices.Contains(l, aID) {
		t.Fatalf("configuration voters %x learners %x, want only %x", v, l, b.c.selfID)
	}
}

// When the leader of three voters closes, the configuration drops it at
// once and a caught-up writer learner takes its place, so the group still
// survives the failure of one more voter.
func TestLeave_LeaderOfThreeReplaced(t *testing.T) {
	n := newMemNet()
	gs := writers(t, n, leaveParams(), 4)
	leader := gs[0]
	if _, err := leader.Execute(tctx(t, 5*time.Second), 1); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		v, l := confOf(leader)
		return len(v) == 3 && len(l) == 1
	}, "not three voters and a learner")
	goneID := leader.c.selfID
	closeTimed(t, leader)
	rest := gs[1:]
	testutil.Eventually(t, 3*time.Second, func() bool {
		for _, g := range rest {
			v, l := confOf(g)
			if len(v) != 3 || slices.Contains(v, goneID) || slices.Contains(l, goneID) {
				return false
			}
		}
		return true
	}, "the departed leader was not replaced by the learner")
	// Crash one more voter (cut it off): the two others still commit.
	v, _ := confOf(rest[0])
	var cut peer.ID
	var live []peer.ID
	var survivor *Group[int64, struct{}, int64]
	for _, g := range rest {
		if cut == "" && slices.Contains(v, g.c.selfID) {
			cut = g.c.self
			continue
		}
		live = append(live, g.c.self)
		survivor = g
	}
	n.partition(live)
	ctx := tctx(t, 5*time.Second)
	for {
		if _, err := survivor.Execute(ctx, 1); err == nil {
			break
		} else if ctx.Err() != nil {
			t.Fatalf("two of the three voters do not commit: %v", err)
		}
	}
}

// A follower voter that closes asks the leader to remove it, and is
// removed at once.
func TestLeave_FollowerRemovedAtOnce(t *testing.T) {
	n := newMemNet()
	gs := writers(t, n, leaveParams(), 3)
	testutil.Eventually(t, 10*time.Second, func() bool { return voters(gs[0]) == 3 }, "three voters")
	goneID := gs[2].c.selfID
	closeTimed(t, gs[2])
	testutil.Eventually(t, 3*time.Second, func() bool {
		v, l := confOf(gs[0])
		return !slices.Contains(v, goneID) && !slices.Contains(l, goneID)
	}, "the departed follower is still in the configuration")
	if _, err := gs[1].Execute(tctx(t, 5*time.Second), 1); err != nil {
		t.Fatal(err)
	}
}

// A voter cut off from every peer cannot leave gracefully: Close still
// returns after LeaveTimeout, and the others remove it after RemoveAfter
// as before.
func TestLeave_BoundedWhenCutOff(t *testing.T) {
	n := newMemNet()
	p := TestParams()
	gs := writers(t, n, p, 3)
	testutil.Eventually(t, 10*time.Second, func() bool { return voters(gs[0]) == 3 }, "three voters")
	gone := gs[2]
	goneID := gone.c.selfID
	n.partition([]peer.ID{gs[0].c.self, gs[1].c.self}, []peer.ID{gone.c.self})
	testutil.Eventually(t, 5*time.Second, func() bool { return len(gone.Bonds().Peers) == 0 }, "still bonded")
	start := time.Now()
	_ = gone.Close()
	if d := time.Since(start); d < p.LeaveTimeout/2 || d > testutil.Scale(p.LeaveTimeout+2*time.Second) {
		t.Fatalf("Close took %v, want about LeaveTimeout (%v)", d, p.LeaveTimeout)
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		v, l := confOf(gs[0])
		return !slices.Contains(v, goneID) && !slices.Contains(l, goneID)
	}, "the cut-off member was never removed")
}

// When every member closes at once, each leaver takes no leadership
// handed to it and a leaving leader hands none to a leaver: before, the
// three passed leadership around among themselves, thousands of
// elections a second until their leave timeouts.
func TestLeave_AllAtOnceNoLeadershipPingPong(t *testing.T) {
	n := newMemNet()
	p := leaveParams()
	var os []observed
	var gs []*Group[int64, struct{}, int64]
	for i := range 3 {
		o := observe(t, n, string(rune('a'+i)), false)
		g := joinCounter(t, o.s, WithParams(p))
		if i == 0 {
			if err := g.When().IsLeader(tctx(t, 10*time.Second)); err != nil {
				t.Fatal(err)
			}
		}
		os, gs = append(os, o), append(gs, g)
	}
	testutil.Eventually(t, 20*time.Second, func() bool { v, _ := confOf(gs[0]); return len(v) == 3 }, "three voters")
	if _, err := gs[0].Execute(tctx(t, 5*time.Second), 1); err != nil {
		t.Fatal(err)
	}
	before := make([]int, len(os))
	for i, o := range os {
		before[i] = o.roles.count()
	}
	var wg sync.WaitGroup
	for _, g := range gs {
		wg.Go(func() { closeTimed(t, g) })
	}
	wg.Wait()
	for i, o := range os {
		// A leader's hand-over or one election per node is fine.
		if got := o.roles.count() - before[i]; got > 4 {
			t.Errorf("node %c changed role %d times while closing", 'a'+i, got)
		}
	}
}

// readers joins n readers of the counter on the memnet under p and waits
// until the leader g0 holds them all as learners.
func readers(t *testing.T, n *memNet, p Params, g0 *Group[int64, struct{}, int64], k int) []*Group[int64, struct{}, int64] {
	t.Helper()
	var rs []*Group[int64, struct{}, int64]
	for i := range k {
		rs = append(rs, joinCounter(t, n.service(t, "r"+string(rune('a'+i)), false), WithRole(RoleReader), WithParams(p)))
	}
	testutil.Eventually(t, 10*time.Second, func() bool { _, l := confOf(g0); return len(l) == k }, "readers not added as learners")
	// Each knows the leader, so it can ask it to remove it: one that
	// closes before the leader's first append reached it cannot, and is
	// removed by the leader's own rule for blank learners instead
	// (TestMembers_BlankLearnerRemovedWhenItsBondEnds).
	for i, r := range rs {
		if err := r.When().Online(tctx(t, 10*time.Second)); err != nil {
			t.Fatalf("reader %d never knew the leader: %v", i, err)
		}
	}
	return rs
}

// A reader (a learner) that closes asks the leader to remove it, like a
// voter: before, every short-lived reader (a command-line client's one
// operation) stayed in the configuration for RemoveAfter.
func TestLeave_ReaderRemovedAtOnce(t *testing.T) {
	n := newMemNet()
	p := leaveParams()
	w := writers(t, n, p, 1)[0]
	rs := readers(t, n, p, w, 2)
	goneID := rs[0].c.selfID
	closeTimed(t, rs[0])
	testutil.Eventually(t, 3*time.Second, func() bool {
		_, l := confOf(w)
		return !slices.Contains(l, goneID) && len(l) == 1
	}, "the closed reader is still a learner")
	if _, err := rs[1].Execute(tctx(t, 5*time.Second), 1); err != nil {
		t.Fatal(err)
	}
}

// Learners that ask to leave and go before the leader removed them (their
// leave timed out: here at once, and the leader's Left and appends never
// reach them) are still removed, one per heartbeat, not after RemoveAfter:
// the leader keeps a learner's Leave past the end of its bond.
func TestLeave_LearnerRemovedAfterItsBondEnds(t *testing.T) {
	n := newMemNet()
	p := leaveParams()
	w := writers(t, n, p, 1)[0]
	rp := p
	rp.LeaveTimeout = time.Millisecond
	rs := readers(t, n, rp, w, 3)
	leader := w.c.self
	n.setDropFrame(func(from, _ peer.ID, _ byte, _ []byte) bool {
		return from == leader
	})
	var gone []uint64
	var wg sync.WaitGroup
	for _, r := range rs {
		gone = append(gone, r.c.selfID)
		wg.Go(func() { _ = r.Close() })
	}
	wg.Wait()
	n.setDropFrame(nil)
	testutil.Eventually(t, 5*time.Second, func() bool {
		_, l := confOf(w)
		return len(l) == 0
	}, "learners %x still in the configuration (those that left: %x)", testutil.Lazy(func() any { _, l := confOf(w); return l }), gone)
}

// Members closing together are removed one commit apart, not one
// heartbeat apart: with a 1 s heartbeat, five readers closing at once all
// get their Left well within LeaveTimeout (2 s). Paced by the heartbeat,
// the third and later ones timed out.
func TestLeave_ReadersClosingTogetherAreNotPacedByTheHeartbeat(t *testing.T) {
	n := newMemNet()
	p := leaveParams()
	p.Heartbeat, p.HeartbeatJitter, p.ElectionTimeout = time.Second, 100*time.Millisecond, 3*time.Second
	p.LeaveTimeout = 2 * time.Second
	w := writers(t, n, p, 1)[0]
	rs := readers(t, n, p, w, 5)
	closeTogether(t, rs, p.LeaveTimeout)
	if _, l := confOf(w); len(l) != 0 {
		t.Errorf("learners %x still in the configuration", l)
	}
}

// A room of two writers closing together, the second just added: the
// leader, the only voter, must not promote a learner that holds nothing
// yet (it may be closing before it applied its own addition) to hand
// over to it: the group would have a second voter that never answers and
// commit nothing until the leader's leave timed out. Both close well
// within LeaveTimeout. Before, the leader's Close took the whole
// LeaveTimeout in most runs (under -race).
func TestLeave_TwoWritersClosingTogether(t *testing.T) {
	n := newMemNet()
	p := leaveParams()
	p.LeaveTimeout = 3 * time.Second
	gs := writers(t, n, p, 2)
	testutil.Eventually(t, 10*time.Second, func() bool {
		v, l := confOf(gs[0])
		return len(v) == 1 && len(l) == 1
	}, "one voter and one writer learner")
	closeTogether(t, gs, p.LeaveTimeout)
}

// closeTogether closes gs at once and fails for each whose Close took
// leaveTimeout or longer: its graceful leave timed out.
func closeTogether(t *testing.T, gs []*Group[int64, struct{}, int64], leaveTimeout time.Duration) {
	t.Helper()
	took := make([]time.Duration, len(gs))
	var wg sync.WaitGroup
	for i, g := range gs {
		wg.Go(func() {
			start := time.Now()
			_ = g.Close()
			took[i] = time.Since(start)
		})
	}
	wg.Wait()
	for i, d := range took {
		if d >= leaveTimeout {
			t.Errorf("member %d: Close took %v: its leave timed out (LeaveTimeout %v)", i, d, leaveTimeout)
		}
	}
}

// A Join of a group whose last handle is closing (its graceful leave can
// take LeaveTimeout) waits for the leave, then starts the group afresh.
// It failed with "already attached" (review probe), or with a data dir
// on the store's lock.
func TestLeave_JoinWhileTheLastCloseLeaves(t *testing.T) {
	n := newMemNet()
	gs := threeCounters(t, n)
	a := gs[1]
	n.partition([]peer.ID{a.c.self}) // a's leave waits LeaveTimeout for a leader it cannot reach
	closed := make(chan struct{})
	go func() { _ = a.Close(); close(closed) }()
	cs := &a.s.core
	testutil.Eventually(t, 5*time.Second, func() bool {
		cs.mu.Lock()
		defer cs.mu.Unlock()
		return cs.groups[a.id] == nil
	}, "the last Close did not start")
	g, err := Join[int64, struct{}, int64](a.s, KeyFromSecret("counter"), &counter{}, WithParams(TestParams()))
	if err != nil {
		t.Fatalf("Join while the last Close leaves: %v", err)
	}
	t.Cleanup(func() { _ = g.Close() })
	select {
	case <-a.c.done:
	default:
		t.Fatal("Join returned before the leaving group stopped")
	}
	<-closed
	if g.c == a.c {
		t.Fatal("Join returned the leaving group")
	}
}
