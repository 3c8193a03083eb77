package groups

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/internal/testutil"
)

// confOf returns the voters and learners this node's core knows.
func confOf[C, Q, R any](g *Group[C, Q, R]) (voters, learners []uint64) {
	ch := make(chan [2][]uint64, 1)
	if g.c.do(context.Background(), func() {
		ch <- [2][]uint64{slices.Clone(g.c.conf.GetVoters()), slices.Clone(g.c.conf.GetLearners())}
	}) != nil {
		return nil, nil
	}
	c := <-ch
	return c[0], c[1]
}

// A member whose bond stays down past RemoveAfter is removed, and the
// voters stay odd: 3 voters less one is 1 voter and 1 learner.
func TestMembership_RemovesDepartedKeepsOdd(t *testing.T) {
	n := newMemNet()
	gs := threeCounters(t, n)
	gone := gs[2]
	goneID := gone.c.selfID
	_ = gone.Close()
	testutil.Eventually(t, 15*time.Second, func() bool {
		v, l := confOf(gs[0])
		return len(v) == 1 && len(l) == 1 && !slices.Contains(v, goneID) && !slices.Contains(l, goneID)
	}, "departed member not removed, or voters not odd")
	if _, err := gs[1].Execute(tctx(t, 5*time.Second), 1); err != nil {
		t.Fatal(err)
	}
	// A new writer brings the group back to three voters.
	g3 := joinCounter(t, n.service(t, "3", false))
	if err := g3.When().Online(tctx(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 15*time.Second, func() bool { v, _ := confOf(gs[0]); return len(v) == 3 }, "not back to three voters")
}

// Readers are learners: they never vote, yet they execute (forwarded) and
// read strongly.
func TestMembership_ReadersStayLearners(t *testing.T) {
	n := newMemNet()
	g0 := joinCounter(t, n.service(t, "0", false))
	if err := g0.When().IsLeader(tctx(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	var readers []*Group[int64, struct{}, int64]
	for _, name := range []string{"r1", "r2", "r3"} {
		g := joinCounter(t, n.service(t, name, false), WithRole(RoleReader))
		if err := g.When().Online(tctx(t, 10*time.Second)); err != nil {
			t.Fatal(err)
		}
		readers = append(readers, g)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { _, l := confOf(g0); return len(l) == 3 }, "readers not added as learners")
	if _, err := readers[0].Execute(tctx(t, 5*time.Second), 5); err != nil {
		t.Fatal(err)
	}
	if v, _, err := readers[1].Query(tctx(t, 5*time.Second), struct{}{}, Strong); err != nil || v != 5 {
		t.Fatalf("strong read on a reader = %d, %v", v, err)
	}
	testutil.Never(t, 500*time.Millisecond, 50*time.Millisecond, func() string {
		if v, _ := confOf(g0); len(v) != 1 {
			return "a reader was promoted to voter"
		}
		return ""
	})
}

// When the only voter closes, the surviving writer takes over with the
// state (the closing voter promotes it and hands leadership over: its
// graceful leave) and the group goes on.
func TestMembership_AllVotersGone(t *testing.T) {
	n := newMemNet()
	g0 := joinCounter(t, n.service(t, "0", false))
	if err := g0.When().IsLeader(tctx(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	g1 := joinCounter(t, n.service(t, "1", false))
	g2 := joinCounter(t, n.service(t, "2", false), WithRole(RoleReader))
	for _, g := range []*Group[int64, struct{}, int64]{g1, g2} {
		if err := g.When().Online(tctx(t, 10*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	r, err := g1.ExecuteMany(tctx(t, 5*time.Second), []int64{10, 20})
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range []*Group[int64, struct{}, int64]{g1, g2} {
		if err := g.When().Committed(tctx(t, 5*time.Second), r.Last); err != nil {
			t.Fatal(err)
		}
	}
	if v, _ := confOf(g0); len(v) != 1 {
		t.Fatalf("voters %v, want only n0", v)
	}
	_ = g0.Close() // the only voter
	if err := g1.When().IsLeader(tctx(t, 15*time.Second)); err != nil {
		t.Fatal("the surviving writer did not take over:", err)
	}
	if err := g2.When().LeaderIs(tctx(t, 15*time.Second), g1.c.self); err != nil {
		t.Fatal("the reader did not follow the new epoch:", err)
	}
	if _, err := g1.Execute(tctx(t, 5*time.Second), 3); err != nil {
		t.Fatal(err)
	}
	for _, g := range []*Group[int64, struct{}, int64]{g1, g2} {
		testutil.Eventually(t, 10*time.Second, func() bool {
			v, _, err := g.Query(tctx(t, 2*time.Second), struct{}{}, Strong)
			return err == nil && v == 33
		}, "state lost across the new epoch")
	}
}

// A writer cut off from every voter for three times RemoveAfter is a
// minority: it must not start an epoch of its own (until session 17 it
// did, committed alone, and discarded those writes on heal), its writes
// fail, the live cluster goes on, and on heal it catches up with nothing
// discarded.
func TestMembership_CutOffWriterNeverCommits(t *testing.T) {
	n := newMemNet()
	gs := threeCounters(t, n)
	s3 := n.service(t, "3", false)
	g3 := joinCounter(t, s3)
	if err := g3.When().Online(tctx(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := gs[0].Execute(tctx(t, 5*time.Second), 1); err != nil {
		t.Fatal(err)
	}
	if v, _ := confOf(gs[0]); len(v) != 3 || slices.Contains(v, g3.c.selfID) {
		t.Fatalf("voters %v: n3 should be the learner", v)
	}
	epoch := epochOf(g3)
	n.partition([]peer.ID{s3.self}, []peer.ID{gs[0].c.self, gs[1].c.self, gs[2].c.self})
	cut := time.Now()
	p := TestParams()
	// n3 tries to write all along the partition: every attempt must fail.
	for time.Since(cut) < 3*p.RemoveAfter {
		if _, err := g3.Execute(tctx(t, p.RemoveAfter/2), 1000); err == nil {
			t.Fatalf("the cut-off writer committed alone %v after the cut", time.Since(cut))
		}
		if g3.IsLeader() || epochOf(g3) != epoch {
			t.Fatalf("the cut-off writer led or started an epoch of its own %v after the cut", time.Since(cut))
		}
	}
	if _, err := gs[0].Execute(tctx(t, 5*time.Second), 10); err != nil {
		t.Fatal("the live cluster does not commit:", err)
	}
	n.heal()
	testutil.Eventually(t, 15*time.Second, func() bool {
		v, _, err := g3.Query(tctx(t, 2*time.Second), struct{}{}, Strong)
		return err == nil && v == 11
	}, "n3 did not catch up with the live cluster's state")
	if v, _ := g3.c.view.get(); v.discards != 0 {
		t.Fatalf("n3 discarded %d entries: it must have had nothing of its own", v.discarded)
	}
	if v := weak(t, gs[0]); v != 11 {
		t.Fatalf("the live cluster lost writes: %d", v)
	}
}

// epochOf is the epoch g's node is in.
func epochOf[C, Q, R any](g *Group[C, Q, R]) uint64 {
	ch := make(chan uint64, 1)
	if g.c.do(context.Background(), func() { ch <- g.c.epoch }) != nil {
		return 0
	}
	return <-ch
}

// Learners that trail a steady stream of writes by more than a few entries
// (here, by delayed frames), but keep pace with it, are promoted.
func TestMembership_PromotesLearnersUnderLoad(t *testing.T) {
	n := newMemNet()
	g0 := joinCounter(t, n.service(t, "0", false))
	if err := g0.When().IsLeader(tctx(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	leader := g0.c.self // read once: the closure runs on other groups' goroutines, up to cleanup
	n.setFault(func(from, _ peer.ID, kind byte) (bool, time.Duration) {
		if from == leader && kind == kindRaft {
			return false, 20 * time.Millisecond
		}
		return false, 0
	})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				_, _ = g0.ExecuteMany(tctx(t, 5*time.Second), []int64{1, 1, 1, 1})
				// A steady stream, not a saturating one: unpaced writers on a
				// single-voter leader commit faster than any learner behind a
				// 20 ms link can follow, and such a learner is rightly never
				// promoted. Paced, the learners trail by far more than 16
				// entries (the old rule) but keep up.
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
	defer func() { close(stop); wg.Wait() }()
	joinCounter(t, n.service(t, "1", false))
	joinCounter(t, n.service(t, "2", false))
	start := time.Now()
	testutil.Eventually(t, 20*time.Second, func() bool { return voters(g0) == 3 }, "learners not promoted while writes flow")
	t.Logf("promoted after %v", time.Since(start))
}

// The pace marks move once per period, and a mark older than three
// periods is dropped rather than used as the yardstick.
func TestPace_Update(t *testing.T) {
	var p pace
	for _, step := range []struct {
		now        int64
		commit     uint64
		prev, mark uint64
	}{
		{1, 10, 0, 10},   // first mark
		{5, 20, 0, 10},   // within the period: unchanged
		{11, 30, 10, 30}, // one period on: the old mark becomes prev
		{21, 40, 30, 40},
		{60, 90, 0, 90}, // stale: dropped
	} {
		p.update(step.now, 10, step.commit)
		if p.prev != step.prev || p.mark != step.mark {
			t.Fatalf("at %d: prev %d mark %d, want %d %d", step.now, p.prev, p.mark, step.prev, step.mark)
		}
	}
}

// A learner that never acknowledged an entry (the leader's frames to it
// are dropped, so the log never reaches it) is removed a heartbeat after
// its bond ends, not after RemoveAfter: it holds nothing to resume and
// could not ask to leave, knowing no leader. A learner that holds the log
// keeps its place for RemoveAfter, so that a restart resumes it.
func TestMembers_BlankLearnerRemovedWhenItsBondEnds(t *testing.T) {
	n := newMemNet()
	p := leaveParams() // RemoveAfter 30 s
	w := writers(t, n, p, 1)[0]
	if _, err := w.Execute(tctx(t, 5*time.Second), 1); err != nil {
		t.Fatal(err)
	}
	held := readers(t, n, p, w, 1)[0]
	if err := held.When().Committed(tctx(t, 5*time.Second), w.Committed()); err != nil {
		t.Fatal(err)
	}
	leader, blankPeer := w.c.self, peer.ID("node-blank")
	n.setDropFrame(func(from, to peer.ID, _ byte, _ []byte) bool { return from == leader && to == blankPeer })
	blank := joinCounter(t, n.service(t, "blank", false), WithRole(RoleReader), WithParams(p))
	blankID := blank.c.selfID
	testutil.Eventually(t, 10*time.Second, func() bool { _, l := confOf(w); return slices.Contains(l, blankID) }, "the blank reader was not added")
	_ = blank.Close()
	n.partition([]peer.ID{leader}, []peer.ID{held.c.self})
	testutil.Eventually(t, 3*time.Second, func() bool { _, l := confOf(w); return !slices.Contains(l, blankID) }, "the blank learner is still listed")
	heldID := held.c.selfID
	testutil.Never(t, time.Second, 50*time.Millisecond, func() string {
		if _, l := confOf(w); !slices.Contains(l, heldID) {
			return "the learner holding the log was removed before RemoveAfter"
		}
		return ""
	})
}

// A new leader does not take a learner that holds the log for a blank one:
// raft resets every peer's progress when a node becomes leader, so the
// learner's acknowledged index alone says nothing then. A reader cut off
// as its leader closes keeps its place for RemoveAfter under the next one.
func TestMembers_LearnerHoldingTheLogSurvivesALeaderChange(t *testing.T) {
	n := newMemNet()
	p := leaveParams() // RemoveAfter 30 s
	ws := writers(t, n, p, 3)
	testutil.Eventually(t, 10*time.Second, func() bool { return settledVoters(ws[0]) == 3 }, "3 voters")
	r := readers(t, n, p, ws[0], 1)[0]
	if _, err := ws[0].Execute(tctx(t, 5*time.Second), 1); err != nil {
		t.Fatal(err)
	}
	if err := r.When().Committed(tctx(t, 5*time.Second), ws[0].Committed()); err != nil {
		t.Fatal(err)
	}
	// Every writer has had a status from the reader since it holds the log.
	testutil.Eventually(t, 5*time.Second, func() bool {
		for _, w := range ws {
			blank := make(chan bool, 1)
			if w.c.do(context.Background(), func() { ps := w.c.peers[r.c.self]; blank <- ps == nil || ps.blank }) != nil || <-blank {
				return false
			}
		}
		return true
	}, "a writer still takes the reader for blank")
	n.partition([]peer.ID{ws[0].c.self, ws[1].c.self, ws[2].c.self})
	var leader *Group[int64, struct{}, int64]
	var rest []*Group[int64, struct{}, int64]
	for _, w := range ws {
		if w.IsLeader() && leader == nil {
			leader = w
		} else {
			rest = append(rest, w)
		}
	}
	if leader == nil {
		t.Fatal("no leader among the writers")
	}
	closeTimed(t, leader)
	testutil.Eventually(t, 10*time.Second, func() bool { return rest[0].IsLeader() || rest[1].IsLeader() }, "no new leader")
	rID := r.c.selfID
	testutil.Never(t, 2*time.Second, 50*time.Millisecond, func() string {
		for _, w := range rest {
			if w.IsLeader() {
				if _, l := confOf(w); !slices.Contains(l, rID) {
					return "the new leader removed the reader holding the log before RemoveAfter"
				}
			}
		}
		return ""
	})
}

// A learner that is fetching its first snapshot holds no log yet, but it
// is not blank: its status names the transfer. When its bond to the
// leader drops for longer than a heartbeat, it keeps its place for
// RemoveAfter and its catch-up goes on once the bond returns, instead of
// being removed and starting the transfer over as a new learner.
func TestMembers_LearnerFetchingASnapshotSurvivesABondDrop(t *testing.T) {
	n := newMemNet()
	p := leaveParams() // RemoveAfter 30 s
	s0, g0, last, want := compactedLeader(t, n, p)
	// The learner's chunk requests wait until released: its transfer is
	// under way, not finished, while the bond drops.
	release := make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	n.setChunkFault(func(from, _ peer.ID, _ snapshotChunkRequest) error {
		if from == "node-1" {
			<-release
		}
		return nil
	})
	s1 := n.service(t, "1", false)
	g1, err := Join[bulkCmd, struct{}, bulkState](s1, KeyFromSecret("bulk"), &bulk{}, WithParams(p), WithRole(RoleReader))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g1.Close() })
	t.Cleanup(free) // runs before g1's Close
	id := g1.c.selfID
	testutil.Eventually(t, 10*time.Second, func() bool {
		fetching := make(chan bool, 1)
		if g0.c.do(context.Background(), func() {
			ps := g0.c.peers[s1.self]
			fetching <- ps != nil && ps.status != nil && ps.status.GetFetching() != 0
		}) != nil {
			return false
		}
		_, l := confOf(g0)
		return <-fetching && slices.Contains(l, id)
	}, "the learner never told the leader it is fetching a snapshot")
	n.partition([]peer.ID{s0.self}, []peer.ID{s1.self})
	testutil.Never(t, time.Second, 50*time.Millisecond, func() string {
		if _, l := confOf(g0); !slices.Contains(l, id) {
			return "the leader removed the learner fetching a snapshot a heartbeat after its bond dropped"
		}
		return ""
	})
	free()
	n.heal()
	catchUp(t, g1, last, want)
}

// A member cut off past RemoveAfter is removed; leadership then passes to
// a writer that joined after it left. Healed, the stale member (its
// configuration names neither the new leader nor the current voters) is
// added back by that leader and catches up: it takes the raft messages of
// the peer whose status says it leads this epoch. It dropped them all
// before and stayed behind for good (review probe: state 5 of 115, 134
// frames dropped).
func TestMembership_StaleMemberCatchesUpWithALeaderItNeverKnew(t *testing.T) {
	n := newMemNet()
	a := joinCounter(t, n.service(t, "a", false))
	if err := a.When().IsLeader(tctx(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	x := joinCounter(t, n.service(t, "x", false))
	if err := x.When().Online(tctx(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Execute(tctx(t, 5*time.Second), 5); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return weak(t, x) == 5 }, "x did not apply 5")
	xID := x.c.selfID
	n.partition([]peer.ID{x.c.self}, []peer.ID{a.c.self})
	testutil.Eventually(t, 15*time.Second, func() bool {
		v, l := confOf(a)
		return len(v) > 0 && !slices.Contains(v, xID) && !slices.Contains(l, xID)
	}, "x was not removed")
	d := joinCounter(t, n.service(t, "d", false))
	n.partition([]peer.ID{x.c.self}, []peer.ID{a.c.self, d.c.self})
	if err := d.When().Online(tctx(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Execute(tctx(t, 5*time.Second), 10); err != nil {
		t.Fatal(err)
	}
	_ = a.Close()
	if err := d.When().IsLeader(tctx(t, 15*time.Second)); err != nil {
		t.Fatal(err)
	}
	n.heal()
	if _, err := d.Execute(tctx(t, 5*time.Second), 100); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 20*time.Second, func() bool { return weak(t, x) == 115 }, "the stale member did not catch up with the new leader")
}

// The state a node keeps of a peer goes once the peer is gone for
// RemoveAfter and out of the configuration: short-lived readers coming and
// going do not grow it (review probe: 30 entries after 30 readers).
func TestMembers_GonePeersAreForgotten(t *testing.T) {
	n := newMemNet()
	a := joinCounter(t, n.service(t, "a", false))
	if err := a.When().IsLeader(tctx(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	peers := func() (int, int) {
		ch := make(chan [2]int, 1)
		if err := a.c.do(tctx(t, 5*time.Second), func() { ch <- [2]int{len(a.c.peers), len(a.c.byRaft)} }); err != nil {
			t.Fatal(err)
		}
		c := <-ch
		return c[0], c[1]
	}
	for i := range 5 {
		s := n.newService(fmt.Sprint("r", i), false)
		r := joinCounter(t, s, WithRole(RoleReader))
		if err := r.When().Online(tctx(t, 10*time.Second)); err != nil {
			t.Fatal(err)
		}
		_ = r.Close()
		_ = s.Close()
	}
	testutil.Eventually(t, 20*time.Second, func() bool { p, b := peers(); return p == 0 && b == 0 },
		"peers of readers that left are kept: %v", testutil.Lazy(func() any { p, b := peers(); return [2]int{p, b} }))
	if _, err := a.Execute(tctx(t, 5*time.Second), 1); err != nil {
		t.Fatal(err)
	}
}

// As above, but a voter of the stale member's old configuration is still
// bonded to it, and follows the new leader: its status vouches for that
// leader, whose messages the stale member then takes.
func TestMembership_StaleMemberFollowsALeaderVouchedFor(t *testing.T) {
	n := newMemNet()
	gs := threeCounters(t, n)
	a, b, x := gs[0], gs[1], gs[2]
	if _, err := a.Execute(tctx(t, 5*time.Second), 5); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return weak(t, x) == 5 }, "x did not apply 5")
	xID := x.c.selfID
	n.partition([]peer.ID{x.c.self}, []peer.ID{a.c.self, b.c.self})
	testutil.Eventually(t, 15*time.Second, func() bool {
		v, l := confOf(a)
		return len(v) > 0 && !slices.Contains(v, xID) && !slices.Contains(l, xID)
	}, "x was not removed")
	d := joinCounter(t, n.service(t, "d", false))
	n.partition([]peer.ID{x.c.self}, []peer.ID{a.c.self, b.c.self, d.c.self})
	testutil.Eventually(t, 15*time.Second, func() bool { v, _ := confOf(a); return slices.Contains(v, d.c.selfID) && len(v) == 3 }, "d is not a voter")
	if _, err := a.Execute(tctx(t, 5*time.Second), 10); err != nil {
		t.Fatal(err)
	}
	_ = a.Close()
	testutil.Eventually(t, 15*time.Second, func() bool {
		if b.IsLeader() {
			_ = b.c.do(context.Background(), func() { b.c.rn.TransferLeader(d.c.selfID) })
		}
		return d.IsLeader()
	}, "d did not lead")
	n.heal()
	if _, err := d.Execute(tctx(t, 5*time.Second), 100); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 20*time.Second, func() bool { return weak(t, x) == 115 }, "the stale member did not catch up with the leader its old voter follows")
}
