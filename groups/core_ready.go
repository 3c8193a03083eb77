package groups

import (
	"encoding/binary"
	"fmt"
	"slices"
	"time"
	"unsafe"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/mosaik-go/mosaik/groups/pb"
)

// recentKeep applied entries keep their request ids, so an Execute whose
// index is acked after the entry was applied can still be matched.
const recentKeep = 4096

// processReady drains raft's Ready in etcd's order: persist, send, apply,
// Advance. An error ends the group on this node.
func (c *groupCore) processReady() error {
	c.flushProposals()
	if err := c.drainReady(); err != nil {
		return err
	}
	if c.resumed && c.maybeResume() {
		if err := c.drainReady(); err != nil {
			return err
		}
	}
	if c.epochPending && c.state == raft.StateLeader {
		c.epochPending = false
		c.proposeEpoch()
		return c.drainReady()
	}
	return nil
}

func (c *groupCore) drainReady() error {
	for c.fatal == nil && c.rn.HasReady() {
		rd := c.rn.Ready()
		if rd.SoftState != nil {
			c.onSoftState(*rd.SoftState)
		}
		rd.Snapshot = c.withSteppedData(rd.Snapshot)
		if err := c.saveAndSend(rd); err != nil {
			return err
		}
		if rd.Snapshot != nil && !raft.IsEmptySnap(rd.Snapshot) {
			if err := c.installSnapshot(rd.Snapshot); err != nil {
				return err
			}
		}
		if err := c.applyEntries(rd.CommittedEntries); err != nil {
			return err
		}
		c.maybeUnfence()
		for _, rs := range rd.ReadStates {
			c.onReadState(rs)
		}
		c.rn.Advance(rd)
		c.maybeSnapshot()
		if len(c.reads) > 0 {
			c.askWaitingReads() // a request made here goes out in the next round
		}
	}
	c.checkReads()
	return c.fatal
}

// saveAndSend persists a Ready and sends its messages: a leader's appends
// before the Save (sendEarly), everything else after it.
func (c *groupCore) saveAndSend(rd raft.Ready) error {
	early := c.sendEarly(rd)
	if err := c.store.Save(rd.HardState, rd.Snapshot, rd.Entries); err != nil {
		return fmt.Errorf("%w: log store: %w", ErrTerminated, err)
	}
	if !raft.IsEmptyHardState(rd.HardState) {
		c.saved = hardVote{term: rd.HardState.GetTerm(), vote: rd.HardState.GetVote(), known: true}
	}
	if len(c.assign) > 0 || len(c.fwdAssign) > 0 {
		c.assignIndexes(rd.Entries)
	}
	for _, m := range rd.Messages {
		if !early || m.GetType() != raftpb.MessageType_MsgApp {
			c.sendRaft(m)
		}
	}
	return nil
}

// hardVote is the term and vote of the last hard state this node saved.
type hardVote struct {
	term, vote uint64
	known      bool // false until the first save, and after a forced epoch
}

// sendEarly sends a leader's appends before the Ready is saved, and
// reports whether it did. The leader's fsync and its followers' fsyncs
// then overlap, and a write waits for one fsync in series instead of two
// (Raft thesis §10.2.1; etcd raft allows messages to go while the same
// Ready's entries are being persisted). raft counts the leader's own
// entries toward the quorum when it appends them, but applies committed
// entries only in a later Ready, by which time this Save has returned.
//
// It requires the hard state's term and vote to be on disk already, as
// etcd raft does for any message: a new term or vote is saved first.
// Everything else in the Ready (votes, responses, heartbeats, snapshots)
// still goes after the Save.
func (c *groupCore) sendEarly(rd raft.Ready) bool {
	if c.state != raft.StateLeader || len(rd.Entries) == 0 {
		return false
	}
	if !raft.IsEmptyHardState(rd.HardState) && (!c.saved.known ||
		rd.HardState.GetTerm() != c.saved.term || rd.HardState.GetVote() != c.saved.vote) {
		return false
	}
	n := 0
	for _, m := range rd.Messages {
		if m.GetType() == raftpb.MessageType_MsgApp {
			c.sendRaft(m)
			n++
		}
	}
	return n > 0
}

// buildSnapshotData and decodeSnapshotData are the one place where
// snapshot bytes are made and consumed; on the wire they travel in chunks
// (core_snapshot.go).
func (c *groupCore) buildSnapshotData() ([]byte, error) {
	hm, ok := c.sm.(headRoomMachine)
	if !ok {
		state, err := c.sm.snapshot()
		if err != nil {
			return nil, err
		}
		return proto.Marshal(&pb.CoreSnapshot{Epoch: c.epoch, State: state})
	}
	b, err := hm.snapshotAfter(snapshotHeadRoom)
	if err != nil {
		return nil, err
	}
	return frameSnapshotData(c.epoch, b, snapshotHeadRoom), nil
}

// headRoomMachine is a machine that writes its snapshot after room bytes
// of its buffer (typedMachine), so the CoreSnapshot framing goes in front
// of the state instead of copying a state of many megabytes into a
// second buffer.
type headRoomMachine interface {
	snapshotAfter(room int) ([]byte, error)
}

// snapshotHeadRoom fits CoreSnapshot's framing before its state: a tag
// and a varint for the epoch, a tag and a varint for the state's length.
const snapshotHeadRoom = 2 * (1 + binary.MaxVarintLen64)

// frameSnapshotData encodes CoreSnapshot{Epoch: epoch, State: b[room:]}
// in place, as proto.Marshal does (fields in order, zero fields left
// out), and returns it: a slice of b.
func frameSnapshotData(epoch uint64, b []byte, room int) []byte {
	state := b[room:]
	var head []byte
	if epoch != 0 {
		head = protowire.AppendTag(head, 1, protowire.VarintType)
		head = protowire.AppendVarint(head, epoch)
	}
	if len(state) > 0 {
		head = protowire.AppendTag(head, 2, protowire.BytesType)
		head = protowire.AppendVarint(head, uint64(len(state)))
	}
	start := room - len(head)
	copy(b[start:room], head)
	return b[start:]
}

// decodeSnapshotData decodes a CoreSnapshot as proto.Unmarshal does (the
// last of a repeated field wins, unknown fields and fields of another
// wire type are skipped), except that State aliases data instead of
// copying megabytes of state: snapshot data is never modified.
func decodeSnapshotData(data []byte) (*pb.CoreSnapshot, error) {
	var s pb.CoreSnapshot
	for b := data; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, fmt.Errorf("groups: snapshot data: %w", protowire.ParseError(n))
		}
		if num > protowire.MaxValidNumber {
			return nil, fmt.Errorf("groups: snapshot data: field number %d", num)
		}
		switch {
		case num == 1 && typ == protowire.VarintType:
			v, m := protowire.ConsumeVarint(b[n:])
			if m < 0 {
				return nil, fmt.Errorf("groups: snapshot data: %w", protowire.ParseError(m))
			}
			s.Epoch, n = v, n+m
		case num == 2 && typ == protowire.BytesType:
			v, m := protowire.ConsumeBytes(b[n:])
			if m < 0 {
				return nil, fmt.Errorf("groups: snapshot data: %w", protowire.ParseError(m))
			}
			s.State, n = v[:len(v):len(v)], n+m
		default:
			m := protowire.ConsumeFieldValue(num, typ, b[n:])
			if m < 0 {
				return nil, fmt.Errorf("groups: snapshot data: %w", protowire.ParseError(m))
			}
			n += m
		}
		b = b[n:]
	}
	return &s, nil
}

func (c *groupCore) checkSnapshot(s *raftpb.Snapshot) error {
	_, err := decodeSnapshotData(s.GetData())
	return err
}

func (c *groupCore) installSnapshot(s *raftpb.Snapshot) error {
	// The snapshot fetched for this Ready, when it is the one raft
	// installs: its state may be staged already, and its hash is known.
	fs := c.snap.installing
	c.snap.installing = nil
	if fs != nil && !sameBytes(fs.snap.GetData(), s.GetData()) {
		fs = nil
	}
	cs, err := decodeSnapshotData(s.GetData())
	if err == nil {
		if st := cs.GetState(); fs != nil && fs.staged.matches(st) {
			err = fs.staged.stage.Commit(st)
		} else {
			err = c.sm.restore(st)
		}
	}
	if err != nil {
		return fmt.Errorf("%w: restoring a snapshot: %w", ErrTerminated, err)
	}
	if c.epoch == 0 {
		c.epoch = cs.GetEpoch()
	}
	idx := s.GetMetadata().GetIndex()
	c.conf = proto.CloneOf(s.GetMetadata().GetConfState())
	for i, ecs := range c.execs {
		if i <= idx {
			for _, ec := range slices.Clone(ecs) {
				c.failExec(ec, &offline{mayApply: true, reason: "entry reached this node inside a snapshot"})
			}
		}
	}
	c.applied, c.snapIndex = idx, idx
	c.lastSnap, c.smAt = nil, idx
	// The applied index jumped: setApplied's window no longer reaches
	// the entries applied before the snapshot, so they are dropped here.
	for i := range c.recent {
		if i+recentKeep <= idx {
			delete(c.recent, i)
		}
	}
	if c.snap.net != nil {
		// This node now holds the snapshot and serves it to the next member
		// that needs it.
		a := snapshotAnchor{Index: idx, Term: s.GetMetadata().GetTerm()}
		if fs != nil {
			c.snap.cache.putHashed(a, s.GetData(), fs.hash, time.Now())
		} else {
			c.snap.cache.put(a, s.GetData(), time.Now())
		}
	}
	c.log.Info("installed a snapshot", "index", idx)
	return nil
}

// sameBytes reports whether a and b are the same memory.
func sameBytes(a, b []byte) bool {
	return len(a) == len(b) && unsafe.SliceData(a) == unsafe.SliceData(b)
}

func (c *groupCore) applyEntries(ents []*raftpb.Entry) error {
	for i := 0; i < len(ents); {
		e := ents[i]
		switch e.GetType() {
		case raftpb.EntryType_EntryConfChange:
			cc := new(raftpb.ConfChange)
			if proto.Unmarshal(e.GetData(), cc) == nil {
				c.conf = c.rn.ApplyConfChange(cc)
			}
			c.confApplied(e.GetIndex())
			i++
			continue
		case raftpb.EntryType_EntryConfChangeV2:
			cc := new(raftpb.ConfChangeV2)
			if proto.Unmarshal(e.GetData(), cc) == nil {
				c.conf = c.rn.ApplyConfChange(cc)
			}
			c.confApplied(e.GetIndex())
			i++
			continue
		}
		// A run of decodable command entries of one term.
		var cmds [][]byte
		var ces []*pb.CoreEntry
		j := i
		for ; j < len(ents); j++ {
			x := ents[j]
			if x.GetType() != raftpb.EntryType_EntryNormal || len(x.GetData()) == 0 || x.GetTerm() != e.GetTerm() {
				break
			}
			ce := new(pb.CoreEntry)
			if proto.Unmarshal(x.GetData(), ce) != nil || ce.GetEpoch() != 0 {
				break
			}
			cmds = append(cmds, ce.GetCommand())
			ces = append(ces, ce)
		}
		if j == i {
			// An empty entry (a new leader's), an epoch entry, or an
			// undecodable one, which every member skips alike.
			var ce pb.CoreEntry
			if len(e.GetData()) > 0 && proto.Unmarshal(e.GetData(), &ce) == nil && ce.GetEpoch() != 0 {
				if c.epoch == 0 {
					c.epoch = ce.GetEpoch()
				}
			} else if len(e.GetData()) > 0 {
				c.log.Warn("skipping an undecodable log entry", "index", e.GetIndex())
			}
			c.setApplied(e.GetIndex(), nil)
			i++
			continue
		}
		c.smAt, c.smTick = e.GetIndex()+uint64(len(cmds))-1, c.now
		if err := c.applyRun(ApplyContext{Group: c.id, Term: e.GetTerm(), FirstIndex: e.GetIndex()}, cmds); err != nil {
			return err
		}
		for k, ce := range ces {
			c.setApplied(e.GetIndex()+uint64(k), ce)
		}
		i = j
	}
	return nil
}

// confApplied follows an applied configuration change. Once the log is
// compacted, a snapshot is taken at once: raft refuses a snapshot whose
// ConfState lacks the receiver, so a new member needs one made after it
// was added.
func (c *groupCore) confApplied(idx uint64) {
	c.ccAt = 0
	c.setApplied(idx, nil)
	if first, _ := c.store.FirstIndex(); first > 1 {
		c.snapNow = true
		c.confSnapAt = idx
	}
}

func (c *groupCore) applyRun(actx ApplyContext, cmds [][]byte) (err error) {
	defer func() {
		if r := recover(); r != nil {
			c.met.add(c.met.panics, 1)
			err = fmt.Errorf("%w: %w at index %d: %v", ErrTerminated, ErrApplyPanic, actx.FirstIndex, r)
		}
	}()
	c.sm.apply(actx, cmds)
	return nil
}

// setApplied records that index idx is applied; ce is its command entry,
// or nil for any other kind of entry.
func (c *groupCore) setApplied(idx uint64, ce *pb.CoreEntry) {
	c.applied = idx
	var origin, seq uint64
	if ce != nil {
		origin, seq = ce.GetOrigin(), ce.GetSeq()
	}
	c.recent[idx] = [2]uint64{origin, seq}
	if idx > recentKeep {
		delete(c.recent, idx-recentKeep)
	}
	if ecs := c.execs[idx]; ecs != nil {
		delete(c.execs, idx)
		for _, ec := range ecs {
			c.matchExec(ec, idx, ce != nil, origin, seq)
		}
	}
}

func (c *groupCore) onSoftState(ss raft.SoftState) {
	wasLeader := c.state == raft.StateLeader
	oldState, oldLead := c.state, c.lead
	c.state, c.lead = ss.RaftState, ss.Lead
	if c.state == raft.StateCandidate && oldState != raft.StateCandidate {
		c.met.add(c.met.elections, 1)
	}
	if c.lead != oldLead {
		if c.lead != 0 && c.lead != c.lastLead {
			c.met.add(c.met.leaderChanges, 1)
			c.lastLead = c.lead
		}
		// Forwards and reads in flight went to the old leader.
		for seq, fc := range c.forwards {
			delete(c.forwards, seq)
			fc.finish(0, &offline{mayApply: true, reason: "leader changed"})
		}
		for id, rc := range c.reads {
			if !rc.have {
				delete(c.reads, id)
				rc.done(0, &offline{reason: "leader changed"})
			}
		}
	}
	if wasLeader && c.state != raft.StateLeader {
		// A deposed leader fails its pending calls at once. Batches still
		// queued were never proposed: they fail as not applied (a
		// forwarded one with NotLeader), and leave the queue, so that they
		// are not proposed should this node lead again before the next
		// flush.
		c.dropQueued(errDeposed)
		// The rest were proposed and may be in the log, which a later
		// leader can commit: a local call fails with MayApply; a
		// forwarded batch gets no NotLeader, which its origin would read
		// as not applied, and no index (the entry there may be replaced):
		// the origin fails it with MayApply when it sees the leader
		// change, or at its forward timeout.
		dep := &offline{mayApply: true, reason: "leader deposed"}
		for seq, fc := range c.assign {
			delete(c.assign, seq)
			fc.finish(0, dep)
		}
		clear(c.fwdAssign)
		for _, ec := range c.pendingExecs() {
			c.failExec(ec, dep)
		}
		c.ccAt = 0
	}
	if c.state != oldState {
		c.log.Info("role changed", "from", oldState.String(), "to", c.state.String(), "leader", c.leaderPeer(), "epoch", c.epoch)
	}
}
