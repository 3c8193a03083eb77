package groups

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/mosaik-go/mosaik/groups/pb"
)

// capCounter is a counter whose snapshots are captured (SnapshotCapturer)
// and written only when the test releases them.
type capCounter struct {
	counter
	started chan int64 // the captured value, when a writer starts
	release chan struct{}
}

func (c *capCounter) CaptureSnapshot() func(w io.Writer) error {
	v := c.v
	return func(w io.Writer) error {
		c.started <- v
		<-c.release
		return CBOREncoder(w).Encode(v)
	}
}

// A machine that can be captured is snapshotted on another goroutine: the
// group applies on while the snapshot is written, then stores it at the
// captured index, with the captured state.
func TestCore_CapturedSnapshotWrittenWhileApplying(t *testing.T) {
	m := &capCounter{started: make(chan int64, 1), release: make(chan struct{})}
	c := leadingSnapCore(t, m)
	add := func(n int) {
		t.Helper()
		for range n {
			c.execute([][]byte{{0x01}}, func(uint64) {}, func(err error) {
				if err != nil {
					t.Errorf("execute: %v", err)
				}
			})
			c.step(t)
		}
	}
	for range 20 {
		if c.snapBuilding != 0 {
			break
		}
		add(1)
	}
	at := c.snapBuilding
	if at == 0 {
		t.Fatal("no snapshot started on another goroutine")
	}
	var captured int64
	select {
	case captured = <-m.started:
	case <-time.After(10 * time.Second):
		t.Fatal("the snapshot writer did not start")
	}
	// The writer is blocked; the group applies on.
	before := m.v
	add(6)
	if m.v != before+6 {
		t.Fatalf("counter %d, want %d: applying waited for the snapshot", m.v, before+6)
	}
	if c.snapIndex >= at {
		t.Fatal("the snapshot was stored before it was written")
	}
	close(m.release)
	select {
	case fn := <-c.calls:
		fn()
	case <-time.After(10 * time.Second):
		t.Fatal("the written snapshot never came back to the group")
	}
	if c.snapIndex != at {
		t.Fatalf("snapshot index %d, want the captured %d", c.snapIndex, at)
	}
	snap, err := c.store.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	cs, err := decodeSnapshotData(snap.GetData())
	if err != nil {
		t.Fatal(err)
	}
	var got int64
	if err := CBORDecoder(bytes.NewReader(cs.GetState())).Decode(&got); err != nil || got != captured {
		t.Fatalf("stored state %d (%v), want the captured %d (the counter is at %d now)", got, err, captured, m.v)
	}
	// Another snapshot is due already (6 more entries): it starts.
	select {
	case <-m.started:
	case <-time.After(10 * time.Second):
		t.Fatal("the next due snapshot did not start")
	}
	c.snapWG.Wait()
}

// While a snapshot is owed after a configuration change, raft is told no
// snapshot is available: the stored one lacks the new member.
func TestCore_SnapshotGatedUntilConfSnapshotStored(t *testing.T) {
	c := leadingCore(t)
	if _, err := c.store.CreateSnapshot(c.applied, c.conf, mustSnapData(t, c)); err != nil {
		t.Fatal(err)
	}
	c.snapIndex = c.applied
	g := gatedStorage{c}
	if _, err := g.Snapshot(); err != nil {
		t.Fatalf("no change owed: %v", err)
	}
	c.confSnapAt = c.applied + 1
	if _, err := g.Snapshot(); !errors.Is(err, raft.ErrSnapshotTemporarilyUnavailable) {
		t.Fatalf("snapshot owed: %v, want ErrSnapshotTemporarilyUnavailable", err)
	}
	c.snapIndex = c.confSnapAt
	if _, err := g.Snapshot(); err != nil {
		t.Fatalf("owed snapshot stored: %v", err)
	}
}

func mustSnapData(t *testing.T, c *groupCore) []byte {
	t.Helper()
	b, err := c.buildSnapshotData()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A node that discarded its log gets heartbeats from a leader that still
// believes it holds entries: the commit index is clamped to its log, not
// a raft panic that ends the group on this node.
func TestCore_HeartbeatPastWipedLogIsClamped(t *testing.T) {
	c := handCore(t, "a")
	c.onBond(bondEvent{p: "b", up: true, role: RoleWriter})
	hb, _ := proto.Marshal(&raftpb.Message{
		Type: raftpb.MessageType_MsgHeartbeat.Enum(), From: new(raftID("b")), To: new(c.selfID),
		Term: new(uint64(5)), Commit: new(uint64(8)),
	})
	body, _ := proto.Marshal(&pb.CoreRaft{Epoch: 42, Message: hb})
	c.onFrame(frame{from: "b", kind: kindRaft, body: body})
	if c.fatal != nil {
		t.Fatalf("a heartbeat past the log ended the group: %v", c.fatal)
	}
	if got := c.rn.BasicStatus().HardState.GetCommit(); got != 0 {
		t.Fatalf("commit %d on an empty log", got)
	}
}

// A snapshot owed after a configuration change, with no command applied
// since the last snapshot, is that snapshot's bytes again (the state is
// the same), not a new write of the state by every member at once; a
// command in between makes it write the state anew.
func TestCore_ConfSnapshotReusesUnchangedState(t *testing.T) {
	c := leadingCore(t)
	add := func() { t.Helper(); executeOne(t, c) }
	stored := func() *raftpb.Snapshot {
		t.Helper()
		s, err := c.store.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	add()
	add()
	c.snapNow = true
	c.maybeSnapshot()
	first := stored()
	if first.GetMetadata().GetIndex() != c.applied || len(first.GetData()) == 0 {
		t.Fatalf("snapshot at %d, applied %d", first.GetMetadata().GetIndex(), c.applied)
	}

	cc := &raftpb.ConfChangeV2{Changes: []*raftpb.ConfChangeSingle{{Type: raftpb.ConfChangeType_ConfChangeAddLearnerNode.Enum(), NodeId: new(uint64(99))}}}
	if err := c.rn.ProposeConfChange(cc); err != nil {
		t.Fatal(err)
	}
	before := c.applied
	for range 5 {
		c.step(t)
	}
	if c.applied <= before || !slices.Contains(c.conf.GetLearners(), 99) {
		t.Fatalf("the learner was not added (applied %d, was %d; conf %v)", c.applied, before, c.conf)
	}
	c.snapNow = true
	c.maybeSnapshot()
	if c.snapBuilding != 0 {
		t.Fatal("a new snapshot is being written for an unchanged state")
	}
	again := stored()
	if again.GetMetadata().GetIndex() != c.applied || !slices.Contains(again.GetMetadata().GetConfState().GetLearners(), 99) {
		t.Fatalf("owed snapshot at %d (applied %d), conf %v", again.GetMetadata().GetIndex(), c.applied, again.GetMetadata().GetConfState())
	}
	if unsafe.SliceData(again.GetData()) != unsafe.SliceData(first.GetData()) {
		t.Fatal("the unchanged state was written again")
	}

	add()
	c.snapNow = true
	c.maybeSnapshot()
	c.snapWG.Wait()
	third := stored()
	if third.GetMetadata().GetIndex() != c.applied || bytes.Equal(third.GetData(), first.GetData()) {
		t.Fatalf("after a command: snapshot at %d (applied %d), same bytes: %v", third.GetMetadata().GetIndex(), c.applied, bytes.Equal(third.GetData(), first.GetData()))
	}
	cs, err := decodeSnapshotData(third.GetData())
	if err != nil {
		t.Fatal(err)
	}
	var got int64
	if err := CBORDecoder(bytes.NewReader(cs.GetState())).Decode(&got); err != nil || got != 3 {
		t.Fatalf("stored state %d (%v), want 3", got, err)
	}
}

// Once commands stop arriving for SnapshotQuiet after at least a quarter
// of SnapshotEntries changed the state, the state is snapshotted: a member
// joining after a burst of writes is sent that snapshot, not one every
// member writes for it. Fewer changes, a shorter quiet, or no change since
// the last snapshot take none.
func TestCore_QuietSnapshotAfterBurst(t *testing.T) {
	c := leadingCore(t)
	c.p.SnapshotEntries = 8 // a quarter: 2 entries
	c.p.SnapshotQuiet = 5 * c.p.Tick
	quiet := c.p.ticks(c.p.SnapshotQuiet)
	add := func() { t.Helper(); executeOne(t, c) }
	ticks := func(n int) {
		t.Helper()
		for range n {
			c.onTick()
			c.step(t)
		}
	}
	// Applied so far: the leader's own entries, which are no commands.
	base := c.snapIndex
	ticks(2 * quiet)
	if c.snapIndex != base {
		t.Fatalf("snapshot at %d without a command (was %d)", c.snapIndex, base)
	}
	add()
	c.snapIndex = c.applied - 1 // one entry since the last snapshot
	ticks(2 * quiet)
	if c.snapIndex != c.applied-1 {
		t.Fatalf("snapshot at %d after one entry, under a quarter of SnapshotEntries", c.snapIndex)
	}
	add()
	ticks(quiet - 1)
	if c.snapIndex == c.applied {
		t.Fatal("snapshot before the quiet interval ended")
	}
	ticks(1)
	if c.snapIndex != c.applied {
		t.Fatalf("no snapshot after the quiet interval: at %d, applied %d", c.snapIndex, c.applied)
	}
	at := c.snapIndex
	ticks(2 * quiet)
	if c.snapIndex != at {
		t.Fatalf("another snapshot at %d of an unchanged state", c.snapIndex)
	}
	c.p.SnapshotQuiet = 0
	add()
	add()
	ticks(2 * quiet)
	if c.snapIndex != at {
		t.Fatal("a quiet snapshot with SnapshotQuiet 0")
	}
}

// executeOne proposes one command on c and steps it.
func executeOne(t *testing.T, c *groupCore) {
	t.Helper()
	c.execute([][]byte{{0x01}}, func(uint64) {}, func(err error) {
		if err != nil {
			t.Errorf("execute: %v", err)
		}
	})
	c.step(t)
}

// failingCounter is a counter whose Snapshot fails while fail is set.
type failingCounter struct {
	counter
	fail atomic.Bool
}

func (f *failingCounter) Snapshot(w io.Writer) error {
	if f.fail.Load() {
		return errors.New("disk full")
	}
	return f.counter.Snapshot(w)
}

// A snapshot owed to a configuration change that fails keeps raft's
// snapshot gate closed (the stored snapshot lacks the new member, which
// refuses it) and is tried again an election timeout later, also on an
// idle group; it used to move the snapshot index, which opened the gate on
// the old snapshot until SnapshotEntries more entries made another due.
func TestCore_FailedConfSnapshotKeepsTheGateClosedAndRetries(t *testing.T) {
	c := leadingCore(t)
	fc := &failingCounter{}
	c.sm = &typedMachine[int64, struct{}, int64]{sm: fc, codec: CBOR[int64]{}, log: c.log}
	c.p.CompactionWindow = 0 // compacted at once: a new member needs a snapshot
	executeOne(t, c)
	c.snapNow = true
	c.maybeSnapshot()
	c.snapWG.Wait()
	executeOne(t, c) // the state changed since: the owed snapshot is written anew
	fc.fail.Store(true)
	cc := &raftpb.ConfChangeV2{Changes: []*raftpb.ConfChangeSingle{{Type: raftpb.ConfChangeType_ConfChangeAddLearnerNode.Enum(), NodeId: new(uint64(99))}}}
	if err := c.rn.ProposeConfChange(cc); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		c.step(t)
	}
	if !slices.Contains(c.conf.GetLearners(), 99) || c.confSnapAt == 0 {
		t.Fatalf("the learner was not added, or no snapshot owed (conf %v, owed at %d)", c.conf, c.confSnapAt)
	}
	if s, err := (gatedStorage{c}).Snapshot(); !errors.Is(err, raft.ErrSnapshotTemporarilyUnavailable) {
		t.Fatalf("after the failed snapshot raft may send the old one (index %d, conf %v): %v",
			s.GetMetadata().GetIndex(), s.GetMetadata().GetConfState(), err)
	}
	fc.fail.Store(false)
	for range c.p.ticks(c.p.ElectionTimeout) + 1 { // idle: only ticks
		c.onTick()
	}
	c.snapWG.Wait()
	s, err := (gatedStorage{c}).Snapshot()
	if err != nil || s.GetMetadata().GetIndex() < c.confSnapAt || !slices.Contains(s.GetMetadata().GetConfState().GetLearners(), 99) {
		t.Fatalf("no owed snapshot after the retry: %v, index %d (owed at %d), conf %v", err, s.GetMetadata().GetIndex(), c.confSnapAt, s.GetMetadata().GetConfState())
	}
}

// leadingSnapCore is a hand-driven lone core over sm, snapshotting every 4
// entries, leading.
func leadingSnapCore(t *testing.T, sm StateMachine[int64, struct{}, int64]) *groupCore {
	t.Helper()
	cfg := defaultConfig()
	cfg.params = TestParams()
	cfg.params.SnapshotEntries = 4
	cfg.tick = make(chan time.Time)
	s := &Service{self: "a"}
	c, err := newGroupCore(s, [32]byte{1}, cfg, &typedMachine[int64, struct{}, int64]{sm: sm, codec: CBOR[int64]{}, log: s.logger()})
	if err != nil {
		t.Fatal(err)
	}
	c.tr = nullTransport{}
	leadAlone(t, c)
	return c
}
