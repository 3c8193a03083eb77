package groups

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/mosaik-go/mosaik/groups/pb"
	"github.com/mosaik-go/mosaik/internal/testutil"
)

// tickDriver is the injected raft clock of a memnet cluster: every round
// it hands one tick to each registered group, in turn, and counts rounds.
// A group that has not taken its tick holds the round up, so no group runs
// ahead of another by more than one tick.
type tickDriver struct {
	mu    sync.Mutex
	chans []chan time.Time
	n     atomic.Int64
	stop  chan struct{}
	done  chan struct{}
}

// newTickDriver starts the clock; it stops at test cleanup, before the
// groups registered after it close (cleanups run last in, first out).
func newTickDriver(t *testing.T) *tickDriver {
	d := &tickDriver{stop: make(chan struct{}), done: make(chan struct{})}
	go d.run()
	t.Cleanup(func() { close(d.stop); <-d.done })
	return d
}

// option returns a new clock channel for one group, registered for ticks.
func (d *tickDriver) option() Option {
	ch := make(chan time.Time)
	d.mu.Lock()
	d.chans = append(d.chans, ch)
	d.mu.Unlock()
	return withTicker(ch)
}

func (d *tickDriver) run() {
	defer close(d.done)
	for {
		d.mu.Lock()
		chans := slices.Clone(d.chans)
		d.mu.Unlock()
		for _, ch := range chans {
			select {
			case ch <- time.Time{}:
			case <-d.stop:
				return
			}
		}
		d.n.Add(1)
		// Paces the injected clock so frames flow between ticks as they
		// would at the real tick (20 ms); the bounds below are in ticks.
		select {
		case <-time.After(time.Millisecond):
		case <-d.stop:
			return
		}
	}
}

// onCore runs fn on g's group goroutine and waits for it.
func onCore[C, Q, R any](t testing.TB, g *Group[C, Q, R], fn func(c *groupCore)) {
	t.Helper()
	done := make(chan struct{})
	if err := g.c.do(tctx(t, 5*time.Second), func() { fn(g.c); close(done) }); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-g.c.done:
		t.Fatal("group ended")
	}
}

// rewriteRaftFrom makes memnet pass every raft message that from sends
// through fn (to is the receiver), which may change it in place and
// reports whether it did; changed messages are encoded again.
func rewriteRaftFrom(n *memNet, from peer.ID, fn func(to peer.ID, m *raftpb.Message) bool) {
	n.setRewriteFrame(func(src, to peer.ID, kind byte, body []byte) []byte {
		var env pb.CoreRaft
		var m raftpb.Message
		if src != from || kind != kindRaft || proto.Unmarshal(body, &env) != nil || proto.Unmarshal(env.GetMessage(), &m) != nil {
			return nil
		}
		if !fn(to, &m) {
			return nil
		}
		var err error
		if env.Message, err = proto.Marshal(&m); err != nil {
			panic(err)
		}
		if body, err = proto.Marshal(&env); err != nil {
			panic(err)
		}
		return body
	})
}

// raftOf decodes the raft message of a kindRaft frame.
func raftOf(kind byte, body []byte) (*raftpb.Message, bool) {
	if kind != kindRaft {
		return nil, false
	}
	var env pb.CoreRaft
	var m raftpb.Message
	if proto.Unmarshal(body, &env) != nil || proto.Unmarshal(env.GetMessage(), &m) != nil {
		return nil, false
	}
	return &m, true
}

// confChanges returns the changes of e when it is a ConfChangeV2 entry.
func confChanges(e *raftpb.Entry) ([]*raftpb.ConfChangeSingle, bool) {
	if e.GetType() != raftpb.EntryType_EntryConfChangeV2 {
		return nil, false
	}
	var cc raftpb.ConfChangeV2
	if proto.Unmarshal(e.GetData(), &cc) != nil {
		return nil, false
	}
	return cc.GetChanges(), true
}

type counterGroup = *Group[int64, struct{}, int64]

// A group grows from one voter to three in one joint step: incoming
// {0,1,2}, outgoing {0}. The leader n0, the only outgoing voter, is cut
// off inside that step: its frames that would let the others leave the
// joint configuration (the auto-leave entry) are held, so the cut lands in
// the joint step every run. n1 and n2 must not stay leaderless: one of
// them forces a new epoch (the outgoing half is gone) within RemoveAfter
// and a few election timeouts, the cluster commits, n0 does not fork an
// epoch of its own meanwhile, and when n0 returns it discards its old log
// (its uncommitted tail reported) and becomes a member again.
//
// With stale set, n1 never learns that the joint entry committed: it still
// sees n0 as the only voter and itself as a learner, while n2 (the higher
// applied index) is in the joint configuration. n1 defers to n2, so n2
// must be the one to force.
func TestJoint_OutgoingVoterLost(t *testing.T)          { testJointCut(t, false) }
func TestJoint_OutgoingVoterLostStaleConf(t *testing.T) { testJointCut(t, true) }

func testJointCut(t *testing.T, stale bool) {
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

	// Hold back, in every frame of n0, the entry leaving the joint
	// configuration and any after it (the entries before it go through:
	// dropping whole frames also held back the joint entry itself whenever
	// the leader sent both in one append, and the joint step never
	// completed); with stale, also tell n1 no commit index at or past the
	// joint entry, so that it never applies it.
	leader, f1 := s0.self, s1.self
	var jointAt atomic.Uint64
	var held atomic.Int32
	rewriteRaftFrom(n, leader, func(to peer.ID, m *raftpb.Message) bool {
		changed := false
	entries:
		for i, e := range m.GetEntries() {
			ch, ok := confChanges(e)
			switch {
			case !ok:
			case len(ch) == 0:
				held.Add(1)
				m.Entries, changed = m.Entries[:i], true
				break entries
			case len(ch) > 1:
				jointAt.CompareAndSwap(0, e.GetIndex())
			}
		}
		if j := jointAt.Load(); stale && to == f1 && j != 0 && m.GetCommit() >= j {
			m.Commit, changed = new(j-1), true
		}
		return changed
	})
	g1 := joinCounter(t, s1, clk.option())
	g2 := joinCounter(t, s2, clk.option())
	gs := []counterGroup{g0, g1, g2}

	joint := func(g counterGroup) (in, out []uint64) {
		onCore(t, g, func(c *groupCore) {
			in, out = slices.Clone(c.conf.GetVoters()), slices.Clone(c.conf.GetVotersOutgoing())
		})
		return in, out
	}
	id0 := g0.c.selfID
	testutil.Eventually(t, 20*time.Second, func() bool {
		for i, g := range gs {
			in, out := joint(g)
			if i == 1 && stale {
				if len(out) != 0 || !slices.Equal(in, []uint64{id0}) {
					return false
				}
				continue
			}
			if len(in) != 3 || !slices.Equal(out, []uint64{id0}) {
				return false
			}
		}
		return true
	}, "every member in the joint configuration {0,1,2}/{0} (n1 before it, if stale)")
	if held.Load() == 0 {
		t.Fatal("the entry leaving the joint configuration was never held: the cut may miss the joint step")
	}
	// An entry n0 appends inside the joint step cannot commit without n1
	// or n2: n0's uncommitted tail, which it must report when it rejoins.
	if _, err := g0.Feed(tctx(t, 5*time.Second), 1000); err != nil {
		t.Fatal(err)
	}
	var oldEpoch, tail uint64
	onCore(t, g0, func(c *groupCore) {
		_, li := c.lastPos()
		oldEpoch, tail = c.epoch, li-c.rn.BasicStatus().HardState.GetCommit()
	})
	if tail < 2 {
		t.Fatalf("n0's uncommitted tail is %d entries, want the leave entry and the fed command", tail)
	}

	cutAt := clk.n.Load()
	n.partition([]peer.ID{s0.self}, []peer.ID{s1.self, s2.self})

	// One of n1 and n2 leads within RemoveAfter and a few election timeouts.
	lead := awaitSurvivorLeader(t, clk, cutAt, p, g1, g2, "n0 was cut off inside the joint step")
	var newEpoch uint64
	onCore(t, lead, func(c *groupCore) { newEpoch = c.epoch })
	if newEpoch == oldEpoch {
		t.Fatal("n1 or n2 leads the old epoch: the joint configuration cannot elect without n0")
	}
	if stale && lead != g2 {
		t.Fatal("n1 (stale configuration, lower applied index) forced the epoch, not n2")
	}
	if _, err := lead.Execute(tctx(t, 5*time.Second), 5); err != nil {
		t.Fatal("the new epoch does not commit:", err)
	}
	other := g1
	if lead == g1 {
		other = g2
	}
	testutil.Eventually(t, 20*time.Second, func() bool {
		v, _, err := other.Query(tctx(t, 2*time.Second), struct{}{}, Strong)
		return err == nil && v == 12
	}, "the other survivor did not join the new epoch")
	if _, err := other.Execute(tctx(t, 5*time.Second), 3); err != nil {
		t.Fatal(err)
	}

	// n0, cut off with a minority of the incoming half, does not fork an
	// epoch of its own, however long the cut lasts: the side of n1 and n2
	// replaces the cluster. (It has known no leader since it stepped down,
	// an election timeout after the cut; wait well past RemoveAfter.)
	bound := int64(p.ticks(p.RemoveAfter) + 4*p.ticks(p.ElectionTimeout))
	testutil.Eventually(t, 20*time.Second, func() bool { return clk.n.Load()-cutAt > 2*bound }, "the clock stopped")
	onCore(t, g0, func(c *groupCore) {
		if c.epoch != oldEpoch || c.state == raft.StateLeader {
			t.Errorf("n0 (cut off) is in epoch %x as %v: it forked while n1 and n2 replace the cluster", c.epoch, c.state)
		}
	})
	n.setRewriteFrame(nil)
	n.heal()
	testutil.Eventually(t, 20*time.Second, func() bool {
		var d uint64
		var e uint64
		onCore(t, g0, func(c *groupCore) { d, e = c.discarded, c.epoch })
		return d >= tail && e == newEpoch
	}, "n0 did not discard its old log (its uncommitted tail reported) and rejoin")
	testutil.Eventually(t, 20*time.Second, func() bool {
		in, _ := joint(lead)
		if !slices.Contains(in, id0) {
			return false
		}
		v, _, err := g0.Query(tctx(t, 2*time.Second), struct{}{}, Strong)
		return err == nil && v == 15
	}, "n0 is not a voter with the cluster's state again")
	for _, g := range gs {
		testutil.Eventually(t, 10*time.Second, func() bool { return weak(t, g) == 15 },
			"counter not 15 (7 + 5 + 3; n0's uncommitted 1000 discarded)")
	}
}

// The session-14 probe at test size: the leader of a group growing from
// one voter to three is cut off at the first moment it is in the joint
// configuration, or a few of its frames later, so the cut lands on
// followers before, inside or after the joint step. n1 and n2 must have a
// leader again within RemoveAfter and a few election timeouts every time,
// and it must commit. Cuts 0 to 2 land inside the joint step (both n1 and
// n2 in it, or one of them not yet holding any configuration) and stayed
// leaderless before forced epochs covered a lost half; later ones land
// after it. (Session 14 cut at the first moment the leader counted three
// voters: 9 of 60 and 3 of 40 cuts stayed leaderless.)
func TestJoint_CutAnywhereInJointStep(t *testing.T) {
	for after := range 6 {
		t.Run(fmt.Sprint(after), func(t *testing.T) { jointCutAfter(t, int32(after)) })
	}
}

// jointCutAfter cuts the leader off once it has sent after frames since it
// entered the joint configuration.
func jointCutAfter(t *testing.T, after int32) {
	n := newMemNet()
	clk := newTickDriver(t)
	p := TestParams()
	s0, s1, s2 := n.service(t, "0", false), n.service(t, "1", false), n.service(t, "2", false)
	g0 := joinCounter(t, s0, clk.option())
	if err := g0.When().IsLeader(tctx(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	leader := s0.self
	var sent atomic.Int32 // frames the leader sent since it entered the joint step (-1: not yet)
	sent.Store(-1)
	var cut atomic.Bool
	n.setDropFrame(func(from, to peer.ID, kind byte, body []byte) bool {
		if cut.Load() {
			return from == leader || to == leader
		}
		if from != leader {
			return false
		}
		if sent.Load() < 0 {
			m, ok := raftOf(kind, body)
			if !ok {
				return false
			}
			for _, e := range m.GetEntries() {
				// The leader proposes leaving the joint configuration as
				// soon as it has applied it: its first moment there.
				if ch, ok := confChanges(e); ok && len(ch) == 0 {
					sent.Store(0)
				}
			}
			if sent.Load() < 0 {
				return false
			}
		}
		if sent.Add(1) > after {
			cut.Store(true)
			return true
		}
		return false
	})
	g1 := joinCounter(t, s1, clk.option())
	g2 := joinCounter(t, s2, clk.option())
	testutil.Eventually(t, 20*time.Second, cut.Load, "the leader never entered the joint configuration")
	cutAt := clk.n.Load()
	n.partition([]peer.ID{s0.self}, []peer.ID{s1.self, s2.self})
	lead := awaitSurvivorLeader(t, clk, cutAt, p, g1, g2, "the cut")
	if _, err := lead.Execute(tctx(t, 5*time.Second), 1); err != nil {
		t.Fatal("the new leader does not commit:", err)
	}
}

// awaitSurvivorLeader waits until g1 or g2 leads and returns it, failing t
// (with both members' configurations) once more than RemoveAfter and four
// election timeouts of ticks have passed since cutAt.
func awaitSurvivorLeader(t *testing.T, clk *tickDriver, cutAt int64, p Params, g1, g2 counterGroup, what string) counterGroup {
	t.Helper()
	bound := int64(p.ticks(p.RemoveAfter) + 4*p.ticks(p.ElectionTimeout))
	for {
		elapsed := clk.n.Load() - cutAt
		var lead counterGroup
		for _, g := range []counterGroup{g1, g2} {
			onCore(t, g, func(c *groupCore) {
				if c.state == raft.StateLeader {
					lead = g
				}
			})
		}
		if lead != nil {
			return lead
		}
		if elapsed > bound {
			t.Fatalf("n1 and n2 have no leader %d ticks after %s (bound %d):\nn1 %s\nn2 %s", elapsed, what, bound, coreSummary(t, g1), coreSummary(t, g2))
		}
		time.Sleep(time.Millisecond) // poll the injected clock's progress
	}
}
