package groups

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/mosaik-go/mosaik/groups/pb"
)

// handCore is a core driven by hand, without its goroutine: the tests
// below step it deterministically.
func handCore(t *testing.T, self peer.ID, opts ...Option) *groupCore {
	t.Helper()
	cfg := defaultConfig()
	cfg.params = TestParams()
	cfg.tick = make(chan time.Time)
	for _, o := range opts {
		o(&cfg)
	}
	s := &Service{self: self}
	c, err := newGroupCore(s, [32]byte{1}, cfg, &typedMachine[int64, struct{}, int64]{sm: &counter{}, codec: CBOR[int64]{}, log: s.logger()})
	if err != nil {
		t.Fatal(err)
	}
	c.tr = nullTransport{}
	return c
}

func (c *groupCore) step(t *testing.T) {
	t.Helper()
	if err := c.processReady(); err != nil {
		t.Fatal(err)
	}
}

// Time enters as ticks: a lone fresh writer bootstraps after exactly the
// bootstrap delay in ticks (tripled when reluctant), and leads at once.
func TestCore_BootstrapAfterDelayTicks(t *testing.T) {
	for _, reluctant := range []bool{false, true} {
		var opts []Option
		if reluctant {
			opts = append(opts, WithReluctant())
		}
		c := handCore(t, "a", opts...)
		delay := c.p.ticks(c.p.BootstrapDelay)
		if reluctant {
			delay *= c.p.ReluctantFactor
		}
		for i := 1; i < delay; i++ {
			c.onTick()
			c.step(t)
			if c.epoch != 0 {
				t.Fatalf("reluctant=%v: bootstrapped after %d of %d ticks", reluctant, i, delay)
			}
		}
		c.onTick()
		c.step(t)
		if c.epoch == 0 || c.state != raft.StateLeader {
			t.Fatalf("reluctant=%v: not leading after the delay (epoch %d, %v)", reluctant, c.epoch, c.state)
		}
	}
}

// A fresh writer waits while a bonded peer belongs to a cluster, and
// while a bonded fresh writer comes first.
func TestCore_BootstrapWaits(t *testing.T) {
	for name, st := range map[string]*pb.CoreStatus{
		"member of a cluster":  {Epoch: 7},
		"earlier fresh writer": {Epoch: 0},
	} {
		self, other := peer.ID("a"), peer.ID("b")
		if raftID(self) < raftID(other) {
			self, other = other, self // other must have the lower raft id
		}
		c := handCore(t, self)
		c.onBond(bondEvent{p: other, up: true, role: RoleWriter})
		c.peers[other].status = st
		for range 3 * c.p.ticks(c.p.BootstrapDelay) {
			c.onTick()
			c.step(t)
		}
		if c.epoch != 0 {
			t.Fatalf("%s: bootstrapped anyway", name)
		}
	}
	if !bootsFirst(false, 9, true, 1) || bootsFirst(true, 1, false, 9) || !bootsFirst(false, 1, false, 9) {
		t.Fatal("bootstrap order: eager before reluctant, then lowest id")
	}
}

// leaderBondedToX is a one-node group's core, leading, with writer x
// bonded (not a member), and its term.
func leaderBondedToX(t *testing.T) (*groupCore, uint64) {
	t.Helper()
	c := handCore(t, "a")
	c.bootstrap()
	c.step(t)
	term := c.rn.BasicStatus().GetTerm()
	c.onBond(bondEvent{p: "x", up: true, role: RoleWriter})
	return c, term
}

// A raft message from a bonded peer that is not a member, with an absurd
// term, is dropped and counted and changes nothing.
func TestCore_NonMemberRaftIgnored(t *testing.T) {
	c, term := leaderBondedToX(t)
	m, _ := proto.Marshal(&raftpb.Message{Type: raftpb.MessageType_MsgVote.Enum(), From: new(raftID("x")), To: new(c.selfID), Term: new(uint64(1 << 40)), LogTerm: new(uint64(1 << 40)), Index: new(uint64(1 << 40))})
	body, _ := proto.Marshal(&pb.CoreRaft{Epoch: c.epoch, Message: m})
	before := c.dropped.Load()
	c.onFrame(frame{from: "x", kind: kindRaft, body: body})
	c.step(t)
	if c.rn.BasicStatus().GetTerm() != term || c.state != raft.StateLeader {
		t.Fatal("a non-member's message changed the term or the role")
	}
	if c.dropped.Load() != before+1 {
		t.Fatal("the message was not counted as dropped")
	}
	// From an unbonded peer, frames are dropped too.
	c.onFrame(frame{from: "y", kind: kindRaft, body: body})
	if c.dropped.Load() != before+2 {
		t.Fatal("a frame from an unbonded peer was not dropped")
	}
}

// A bonded non-member whose status says it leads this epoch cannot
// depose a leader with a heartbeat of an absurd term: its status is its
// own word, taken only by a node that hears from no member (stranded).
func TestCore_NonMemberClaimingToLeadIgnored(t *testing.T) {
	c, term := leaderBondedToX(t)
	c.peers["x"].status = &pb.CoreStatus{IsLeader: true, Epoch: c.epoch}
	m, _ := proto.Marshal(&raftpb.Message{Type: raftpb.MessageType_MsgHeartbeat.Enum(), From: new(raftID("x")), To: new(c.selfID), Term: new(term + 1000)})
	body, _ := proto.Marshal(&pb.CoreRaft{Epoch: c.epoch, Message: m})
	before := c.dropped.Load()
	c.onFrame(frame{from: "x", kind: kindRaft, body: body})
	c.step(t)
	if got := c.rn.BasicStatus().GetTerm(); got != term || c.state != raft.StateLeader {
		t.Fatalf("a non-member claiming to lead moved the term %d -> %d, role %v", term, got, c.state)
	}
	if c.dropped.Load() != before+1 {
		t.Fatal("the message was not counted as dropped")
	}
}

// The inbox never blocks the bond layer: beyond its bound, frames are
// dropped and counted.
func TestCore_InboxBoundedNeverBlocks(t *testing.T) {
	c := handCore(t, "a")
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range inboxSize + 10 {
			c.Deliver("b", kindStatus, nil)
		}
		c.Deliver("b", kindRaft, make([]byte, maxCoreFrame+1))
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Deliver blocked")
	}
	if d := c.dropped.Load(); d != 11 {
		t.Fatalf("dropped %d, want 11", d)
	}
}

// The frames waiting for the group goroutine are bounded in bytes too:
// a member cannot queue 4096 frames of the bond layer's cap.
func TestCore_InboxBoundedInBytes(t *testing.T) {
	c := handCore(t, "a")
	big := make([]byte, 60<<20) // under maxCoreFrame; two fit, a third does not
	for range 3 {
		c.Deliver("b", kindRaft, big)
	}
	if d, q := c.dropped.Load(), len(c.frames); d != 1 || q != 2 {
		t.Fatalf("dropped %d, queued %d; want 1 and 2", d, q)
	}
	c.onFrame(<-c.frames) // taken (and dropped: b has no bond): its bytes are free again
	d0 := c.dropped.Load()
	c.Deliver("b", kindRaft, big)
	if d, q := c.dropped.Load(), len(c.frames); d != d0 || q != 2 {
		t.Fatalf("after taking one: %d more dropped, queued %d; want 0 and 2", d-d0, q)
	}
	if b := c.inboxBytes.Load(); b != 2*int64(len(big)) {
		t.Fatalf("inbox holds %d bytes, want %d", b, 2*len(big))
	}
}

// A follower's forward that reaches a non-leader gets an explicit reply,
// and the call fails at once with the commands handed back.
func TestCore_NotLeaderReplyFailsForward(t *testing.T) {
	c := handCore(t, "a")
	c.onBond(bondEvent{p: "b", up: true, role: RoleWriter})
	c.lead = raftID("b") // as if b led
	var got error
	seq := c.feed([][]byte{{1}}, func(_ uint64, err error) { got = err })
	if len(c.forwards) != 1 {
		t.Fatal("not forwarded")
	}
	body, _ := proto.Marshal(&pb.CoreNotLeader{Seq: seq})
	c.onFrame(frame{from: "b", kind: kindNotLeader, body: body})
	var o *offline
	if got == nil || !asOffline(got, &o) || o.mayApply {
		t.Fatalf("forward to a non-leader: %v", got)
	}
}

// Execute succeeds only when the applied entry at its index carries its
// own request id: another node's entry, or a new leader's empty entry, in
// that slot is ErrNotApplied.
func TestCore_ExecuteMatchesRequestID(t *testing.T) {
	c := handCore(t, "a")
	for name, tc := range map[string]struct {
		ce   *pb.CoreEntry
		want error
	}{
		"own entry":         {&pb.CoreEntry{Origin: c.selfID, Seq: 40}, nil},
		"other origin":      {&pb.CoreEntry{Origin: c.selfID + 1, Seq: 40}, ErrNotApplied},
		"other request":     {&pb.CoreEntry{Origin: c.selfID, Seq: 41}, ErrNotApplied},
		"empty leader slot": {nil, ErrNotApplied},
	} {
		got := errors.New("not called")
		ec := &execCall{first: 5, seq: 40, n: 1, done: func(err error) { got = err }}
		c.execs[5] = []*execCall{ec}
		c.setApplied(5, tc.ce)
		if !errors.Is(got, tc.want) && got != tc.want {
			t.Fatalf("%s: %v, want %v", name, got, tc.want)
		}
		if len(c.execs) != 0 {
			t.Fatalf("%s: exec left registered", name)
		}
	}
}

func TestParams_Validate(t *testing.T) {
	for _, p := range []Params{DefaultParams(), TestParams()} {
		if err := p.Validate(); err != nil {
			t.Fatal(err)
		}
	}
	bad := []func(*Params){
		func(p *Params) { p.Tick = 0 },
		func(p *Params) { p.HeartbeatJitter = 0 },
		func(p *Params) { p.HeartbeatJitter = p.Heartbeat },
		func(p *Params) { p.MissedHeartbeats = 0 },
		func(p *Params) { p.ElectionTimeout = p.Heartbeat },
		func(p *Params) { p.RemoveAfter = p.Heartbeat },
		func(p *Params) { p.SnapshotEntries = 0 },
		func(p *Params) { p.ReluctantFactor = 0 },
	}
	for i, f := range bad {
		p := DefaultParams()
		f(&p)
		if err := p.Validate(); !errors.Is(err, ErrInvalidParams) {
			t.Fatalf("case %d: %v", i, err)
		}
	}
}

// A frame that reaches the group goroutine before its bond's BondUp event
// (they travel on different channels, but BondUp is called first) is
// handled, not dropped: a newcomer's first status is what makes the leader
// add it, and losing it cost a status period.
func TestCore_FrameBeforeQueuedBondUpIsHandled(t *testing.T) {
	c := handCore(t, "a")
	c.BondUp("b", RoleReader) // queued, not yet taken by the loop
	body, _ := proto.Marshal(&pb.CoreStatus{Epoch: 7})
	before := c.dropped.Load()
	c.onFrame(frame{from: "b", kind: kindStatus, body: body})
	if c.dropped.Load() != before {
		t.Fatal("the frame was dropped")
	}
	ps := c.peers["b"]
	if ps == nil || !ps.up || ps.status.GetEpoch() != 7 {
		t.Fatalf("peer b after its first status: %+v", ps)
	}
}

// A writer restarted over its log, as its group's only voter, leads at
// its first Ready instead of after an election timeout (2 to 4 s with the
// default parameters, during which a lone replicated collection was
// offline after every restart). As one of several voters it campaigns
// within two ticks to one election timeout and two ticks of its restart,
// instead of one to two election timeouts, and never at its first tick
// (the entries its log commits are applied first).
func TestCore_RestartedVoterElectsSooner(t *testing.T) {
	stores := &keptStores{m: map[string]*memStore{}}
	a := handCore(t, "a", stores.opener("a"))
	for i := 0; i < a.p.ticks(a.p.BootstrapDelay) && a.state != raft.StateLeader; i++ {
		a.onTick()
		a.step(t)
	}
	if a.state != raft.StateLeader || len(a.conf.GetVoters()) != 1 {
		t.Fatalf("a did not bootstrap a group of its own: %v, voters %v", a.state, a.conf.GetVoters())
	}
	epoch := a.epoch

	again := handCore(t, "a", stores.opener("a"))
	if again.epoch != epoch || again.state != raft.StateFollower {
		t.Fatalf("restarted core: epoch %d (want %d), %v", again.epoch, epoch, again.state)
	}
	again.onTick()
	again.step(t)
	if again.state != raft.StateLeader {
		t.Fatalf("restarted only voter after one tick: %v, want leader", again.state)
	}

	// A second voter in the stored configuration.
	again.changeConf(raftpb.ConfChangeType_ConfChangeAddNode, raftID("b"))
	again.step(t)
	if n := len(again.conf.GetVoters()); n != 2 {
		t.Fatalf("voters after adding b: %d, want 2", n)
	}
	et := again.p.ticks(again.p.ElectionTimeout)
	// raft draws the timeout in [et, 2·et): without the shortcut, five
	// restarts all campaigning by et+1 ticks would take five draws below
	// et+2 (one chance in 10^5 with et = 20).
	for r := range 5 {
		c := handCore(t, "a", stores.opener("a"))
		ticks := 0
		for c.state == raft.StateFollower && ticks <= et+1 {
			c.onTick()
			c.step(t)
			ticks++
		}
		if c.state != raft.StatePreCandidate || ticks < 2 || ticks > et+1 {
			t.Fatalf("restart %d: %v after %d ticks, want a pre-vote campaign after 2 to %d", r, c.state, ticks, et+1)
		}
	}
}

// Two executes of this node wait on one index: a leader deposed before
// commit gave index 5 to the first, the next leader gave it to the second.
// The entry applied at 5 answers both, the one whose request it is with
// success, the other with ErrNotApplied, in either order. The second used
// to replace the first, which then never returned.
func TestCore_TwoExecutesOnOneIndexAreBothAnswered(t *testing.T) {
	c := handCore(t, "a")
	for _, winner := range []int{0, 1} {
		got := []error{errors.New("not called"), errors.New("not called")}
		for i, seq := range []uint64{40, 50} {
			c.awaitExec(&execCall{first: c.applied + 1, seq: seq, n: 1, done: func(err error) { got[i] = err }})
		}
		c.setApplied(c.applied+1, &pb.CoreEntry{Origin: c.selfID, Seq: []uint64{40, 50}[winner]})
		for i, err := range got {
			if i == winner && err != nil || i != winner && !errors.Is(err, ErrNotApplied) {
				t.Fatalf("entry of call %d applied: call %d answered %v", winner, i, err)
			}
		}
		if len(c.execs) != 0 {
			t.Fatalf("%d indexes still awaited", len(c.execs))
		}
	}
}

// A node that stopped right after bootstrapping, before its epoch entry
// was written, restarts fresh: its log holds the bootstrap configuration
// and no epoch. Resumed, it led its own one-voter configuration with epoch
// 0 and took the epoch of the first cluster whose leader talked to it, a
// second leader in that epoch that committed alone.
func TestCore_LogWithoutEpochRestartsFresh(t *testing.T) {
	dir := t.TempDir()
	c := handCore(t, "a", WithDataDir(dir))
	c.bootstrap()
	if li, _ := c.store.LastIndex(); li == 0 || c.epoch == 0 {
		t.Fatalf("after bootstrap: last index %d, epoch %x", li, c.epoch)
	}
	_ = c.store.Close() // stopped before the epoch entry
	r := handCore(t, "a", WithDataDir(dir))
	t.Cleanup(func() { _ = r.store.Close() })
	if li, _ := r.store.LastIndex(); li != 0 || !r.fresh() || r.epoch != 0 {
		t.Fatalf("restarted: last index %d, fresh %v, epoch %x; want an empty store, fresh", li, r.fresh(), r.epoch)
	}
	for range 3 * r.p.ticks(r.p.ElectionTimeout) {
		r.rn.Tick()
		r.step(t)
	}
	if r.state == raft.StateLeader {
		t.Fatal("the restarted node leads a configuration of no epoch")
	}
}

// A status frame is read under a cap: a bonded peer's 4 MiB frame of
// empty anchors decoded into two million of them (about 200 MiB, held
// until its next status). An honest status with its anchors passes, and
// no more than maxAnnouncedAnchors of them are kept.
func TestCore_StatusFrameIsCapped(t *testing.T) {
	c := handCore(t, "a")
	c.BondUp("b", RoleWriter)
	huge := bytes.Repeat([]byte{0x5a, 0x00}, 1<<20) // field 11, empty: an empty anchor each
	before := c.dropped.Load()
	c.onFrame(frame{from: "b", kind: kindStatus, body: huge})
	if c.dropped.Load() != before+1 {
		t.Fatal("a 2 MiB status frame was not dropped")
	}
	if ps := c.peers["b"]; ps != nil && ps.status != nil {
		t.Fatalf("the oversize status was kept: %d anchors", len(ps.status.GetSnapshots()))
	}
	honest := &pb.CoreStatus{Epoch: 7, LastTerm: 3, LastIndex: 1 << 40, Committed: 1 << 40, Applied: 1 << 40, LostEpoch: 1 << 62, LostTerm: 1 << 40}
	for i := range 2 * maxAnnouncedAnchors {
		honest.Snapshots = append(honest.Snapshots, &pb.CoreAnchor{Index: 1<<40 + uint64(i), Term: 1 << 30, Hash: bytes.Repeat([]byte{1}, 32), Size: 1 << 40})
	}
	body, _ := proto.Marshal(honest)
	c.onFrame(frame{from: "b", kind: kindStatus, body: body})
	ps := c.peers["b"]
	if c.dropped.Load() != before+1 || ps == nil || ps.status.GetEpoch() != 7 {
		t.Fatalf("an honest status of %d bytes was dropped", len(body))
	}
	if n := len(ps.status.GetSnapshots()); n != maxAnnouncedAnchors {
		t.Fatalf("%d anchors kept, want %d", n, maxAnnouncedAnchors)
	}
}
