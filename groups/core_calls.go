package groups

import (
	"context"
	"encoding/binary"
	"errors"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/mosaik-go/mosaik/groups/pb"
)

// feedCall waits for the log index of a batch of commands.
type feedCall struct {
	n        int
	seq      uint64
	deadline int64 // tick; 0 for none
	done     func(first uint64, err error)
}

func (f *feedCall) finish(first uint64, err error) {
	if d := f.done; d != nil {
		f.done = nil
		d(first, err)
	}
}

// execCall waits for a batch to be applied locally with its own request ids.
type execCall struct {
	first, seq uint64
	n, got     int
	start      time.Time
	done       func(err error)
}

// readCall waits for a read index, then for it to be applied.
type readCall struct {
	deadline int64
	retry    int64    // tick at which the read index is asked again; 0 while not asked (askReadIndex)
	rctx     [16]byte // the request context raft echoes in its ReadState
	index    uint64
	have     bool
	done     func(index uint64, err error)
}

// do runs fn on the group goroutine. It fails with ErrTerminated once the
// group has ended, or with ctx's error.
func (c *groupCore) do(ctx context.Context, fn func()) error {
	select {
	case c.calls <- fn:
		return nil
	case <-c.done:
		return c.termErr()
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *groupCore) termErr() error {
	if err := c.view.err(); err != nil {
		return err
	}
	return ErrTerminated
}

func (c *groupCore) leaderPeer() peer.ID {
	switch c.lead {
	case 0:
		return ""
	case c.selfID:
		return c.self
	}
	return c.byRaft[c.lead]
}

// feed proposes cmds (on the leader) or forwards them (on a follower) and
// calls done with the first assigned index. It returns the batch's seq.
func (c *groupCore) feed(cmds [][]byte, done func(first uint64, err error)) uint64 {
	seq := c.nextSeq
	c.nextSeq += uint64(len(cmds))
	fc := &feedCall{n: len(cmds), seq: seq, done: done}
	lp := c.leaderPeer()
	switch {
	case c.state == raft.StateLeader:
		c.assign[seq] = fc
		c.queueProposal(c.selfID, seq, cmds, func(err error) {
			delete(c.assign, seq)
			fc.finish(0, &offline{reason: "proposal dropped: " + err.Error()})
		})
	case lp != "" && c.peers[lp] != nil && c.peers[lp].up:
		fc.deadline = c.now + int64(c.p.ticks(c.p.ForwardTimeout))
		c.forwards[seq] = fc
		if !c.send(lp, kindForward, &pb.CoreForward{Origin: c.selfID, Seq: seq, Commands: cmds}) {
			delete(c.forwards, seq)
			fc.finish(0, &offline{reason: "bond to the leader is full or gone"})
		}
	default:
		fc.finish(0, &offline{reason: "no leader"})
	}
	return seq
}

// pendingProp is a batch of commands queued for the next proposal.
type pendingProp struct {
	origin, seq uint64
	cmds        [][]byte
	fail        func(err error) // the proposal was dropped
}

// maxProposalBytes bounds the command bytes merged into one proposal, so
// that one proposal fits in one append message (MaxSizePerMsg).
const maxProposalBytes = 512 << 10

// queueProposal queues a batch for flushProposals, which runs before every
// Ready. The batches queued in one turn of the loop become one MsgProp:
// raft's leader sends one append per follower per MsgProp, so proposing
// each call on its own costs a follower message, a follower Ready and an
// ack per call, however many calls were waiting together.
func (c *groupCore) queueProposal(origin, seq uint64, cmds [][]byte, fail func(err error)) {
	for _, cmd := range cmds {
		c.propBytes += len(cmd)
	}
	c.props = append(c.props, pendingProp{origin: origin, seq: seq, cmds: cmds, fail: fail})
	if c.propBytes >= maxProposalBytes {
		c.flushProposals()
	}
}

// errDeposed is why dropQueued fails the batches of a deposed leader.
var errDeposed = errors.New("this node is no longer the leader")

// dropQueued fails every queued batch with err and empties the queue:
// none of them was proposed.
func (c *groupCore) dropQueued(err error) {
	props := c.props
	c.props, c.propBytes = nil, 0
	for _, p := range props {
		p.fail(err)
	}
}

// flushProposals proposes the queued batches as one MsgProp. Each batch
// stays contiguous (its entries are consecutive in the message), and each
// first entry carries its batch's seq for assignIndexes. raft takes the
// message whole or drops it whole: a dropped one fails every batch in it.
func (c *groupCore) flushProposals() {
	if len(c.props) == 0 {
		return
	}
	props := c.props
	c.props, c.propBytes = nil, 0
	var ents []*raftpb.Entry
	ok := props[:0]
	for _, p := range props {
		es, err := entriesOf(p.origin, p.seq, p.cmds)
		if err != nil {
			p.fail(err)
			continue
		}
		ents = append(ents, es...)
		ok = append(ok, p)
	}
	if len(ents) == 0 {
		return
	}
	if err := c.rn.Step(&raftpb.Message{Type: raftpb.MessageType_MsgProp.Enum(), From: new(c.selfID), Entries: ents}); err != nil {
		for _, p := range ok {
			p.fail(err)
		}
	}
}

func entriesOf(origin, seq uint64, cmds [][]byte) ([]*raftpb.Entry, error) {
	ents := make([]*raftpb.Entry, len(cmds))
	for i, cmd := range cmds {
		data, err := proto.Marshal(&pb.CoreEntry{Origin: origin, Seq: seq + uint64(i), Command: cmd})
		if err != nil {
			return nil, err
		}
		ents[i] = &raftpb.Entry{Data: data}
	}
	return ents, nil
}

// execute is feed plus the wait for the batch to be applied locally with
// its own request ids at the assigned indexes.
func (c *groupCore) execute(cmds [][]byte, assigned func(first uint64), done func(err error)) {
	start := time.Now()
	var seq uint64
	seq = c.feed(cmds, func(first uint64, err error) {
		if err != nil {
			done(err)
			return
		}
		if assigned != nil {
			assigned(first)
		}
		c.awaitExec(&execCall{first: first, seq: seq, n: len(cmds), start: start, done: done})
	})
}

// awaitExec waits for the entries of ec, assigned from ec.first, to be
// applied: those applied already are matched now, the others when they
// are. Another call may wait on the same index (two leaders in turn gave
// it out): whichever entry is applied there answers both.
func (c *groupCore) awaitExec(ec *execCall) {
	for k := range ec.n {
		idx := ec.first + uint64(k)
		if idx > c.applied {
			c.execs[idx] = append(c.execs[idx], ec)
			continue
		}
		r, ok := c.recent[idx]
		if !ok {
			c.failExec(ec, &offline{mayApply: true, reason: "entry applied before its ack and no longer tracked"})
			return
		}
		c.matchExec(ec, idx, r != [2]uint64{}, r[0], r[1])
		if ec.done == nil {
			return
		}
	}
}

func (c *groupCore) matchExec(ec *execCall, idx uint64, isCmd bool, origin, seq uint64) {
	if ec.done == nil {
		return
	}
	if !isCmd || origin != c.selfID || seq != ec.seq+(idx-ec.first) {
		c.failExec(ec, ErrNotApplied)
		return
	}
	ec.got++
	if ec.got == ec.n {
		c.met.commitLatency.Record(context.Background(), time.Since(ec.start).Seconds(), c.met.attrs)
		d := ec.done
		ec.done = nil
		d(nil)
	}
}

// pendingExecs lists the executes awaiting apply, each once.
func (c *groupCore) pendingExecs() []*execCall {
	var out []*execCall
	seen := map[*execCall]bool{}
	for _, ecs := range c.execs {
		for _, ec := range ecs {
			if !seen[ec] {
				seen[ec] = true
				out = append(out, ec)
			}
		}
	}
	return out
}

func (c *groupCore) failExec(ec *execCall, err error) {
	for k := range ec.n {
		idx := ec.first + uint64(k)
		if w := slices.DeleteFunc(c.execs[idx], func(x *execCall) bool { return x == ec }); len(w) > 0 {
			c.execs[idx] = w
		} else {
			delete(c.execs, idx)
		}
	}
	if d := ec.done; d != nil {
		ec.done = nil
		d(err)
	}
}

// assignIndexes finds this node's (or forwarded) batches among newly
// appended entries: the first entry of a batch carries the batch's seq.
func (c *groupCore) assignIndexes(ents []*raftpb.Entry) {
	for _, e := range ents {
		if e.GetType() != raftpb.EntryType_EntryNormal || len(e.GetData()) == 0 {
			continue
		}
		var ce pb.CoreEntry
		if proto.Unmarshal(e.GetData(), &ce) != nil {
			continue
		}
		if ce.GetOrigin() == c.selfID {
			if fc := c.assign[ce.GetSeq()]; fc != nil {
				delete(c.assign, ce.GetSeq())
				fc.finish(e.GetIndex(), nil)
			}
			continue
		}
		k := [2]uint64{ce.GetOrigin(), ce.GetSeq()}
		if to, ok := c.fwdAssign[k]; ok {
			delete(c.fwdAssign, k)
			c.send(to.p, kindForwardOK, &pb.CoreForwardAck{Seq: k[1], FirstIndex: e.GetIndex(), Count: to.n})
		}
	}
}

func (c *groupCore) onForward(from peer.ID, m *pb.CoreForward) {
	if c.state != raft.StateLeader || len(m.GetCommands()) == 0 {
		c.send(from, kindNotLeader, &pb.CoreNotLeader{Seq: m.GetSeq(), Leader: c.lead})
		return
	}
	k := [2]uint64{m.GetOrigin(), m.GetSeq()}
	c.fwdAssign[k] = fwdTo{p: from, n: uint32(len(m.GetCommands()))}
	c.queueProposal(m.GetOrigin(), m.GetSeq(), m.GetCommands(), func(error) {
		delete(c.fwdAssign, k)
		c.send(from, kindNotLeader, &pb.CoreNotLeader{Seq: m.GetSeq(), Leader: c.lead})
	})
}

func (c *groupCore) onForwardAck(m *pb.CoreForwardAck) {
	fc := c.forwards[m.GetSeq()]
	if fc == nil || int(m.GetCount()) != fc.n {
		return
	}
	delete(c.forwards, m.GetSeq())
	fc.finish(m.GetFirstIndex(), nil)
}

// strongRead asks raft for a read index (a follower's request goes to the
// leader inside raft) and calls done once it is applied here.
func (c *groupCore) strongRead(done func(index uint64, err error)) {
	if !c.leaderUp() {
		done(0, &offline{reason: "no leader"})
		return
	}
	c.readSeq++
	id := c.readSeq
	rc := &readCall{deadline: c.now + int64(c.p.ticks(c.p.QueryTimeout)), done: done}
	binary.BigEndian.PutUint64(rc.rctx[:8], c.selfID)
	binary.BigEndian.PutUint64(rc.rctx[8:], id)
	c.reads[id] = rc
	c.askReadIndex(rc)
}

// askReadIndex asks raft for rc's read index, once raft can take the
// answer: raft drops a read-index answer from a peer outside this node's
// configuration (RawNode.Step: ErrStepPeerNotFound), and a node that has
// just joined knows its leader (from its first heartbeat or append) before
// it has applied the entries that put the leader in its configuration.
// Asked then, the read lost its answer and waited for the retry, two
// heartbeats (a second with the default parameters: most `mosaik-node map
// get` calls took that long). Until then the read waits unasked (retry 0)
// and askWaitingReads asks it after each Ready; its deadline runs as
// before.
func (c *groupCore) askReadIndex(rc *readCall) {
	if c.lead == 0 || (c.lead != c.selfID && !c.inConf(c.lead)) {
		rc.retry = 0
		return
	}
	rc.retry = c.now + c.readRetry()
	c.rn.ReadIndex(rc.rctx[:])
}

// askWaitingReads asks the reads that wait for the leader to be known and
// in this node's configuration (askReadIndex).
func (c *groupCore) askWaitingReads() {
	for _, rc := range c.reads {
		if rc.retry == 0 && !rc.have {
			c.askReadIndex(rc)
		}
	}
}

// readRetry is how long, in ticks, a read index may take before it is
// asked again: two heartbeats (the leader confirms its leadership with one
// round of heartbeats). Raft sends a follower's request to the leader once
// and drops it while it knows no leader; a lost request or answer would
// otherwise fail the read only at QueryTimeout. Asking again is safe: any
// read index the leader returns after the read began serves it.
func (c *groupCore) readRetry() int64 { return int64(2 * c.p.ticks(c.p.Heartbeat)) }

func (c *groupCore) onReadState(rs raft.ReadState) {
	if len(rs.RequestCtx) != 16 || binary.BigEndian.Uint64(rs.RequestCtx[:8]) != c.selfID {
		return
	}
	if rc := c.reads[binary.BigEndian.Uint64(rs.RequestCtx[8:])]; rc != nil {
		rc.index, rc.have = rs.Index, true
	}
}

func (c *groupCore) checkReads() {
	for id, rc := range c.reads {
		if rc.have && c.applied >= rc.index {
			delete(c.reads, id)
			rc.done(c.applied, nil)
		}
	}
}

func (c *groupCore) expireCalls() {
	for seq, fc := range c.forwards {
		if c.now >= fc.deadline {
			delete(c.forwards, seq)
			fc.finish(0, &offline{mayApply: true, reason: "forward timed out"})
		}
	}
	for id, rc := range c.reads {
		switch {
		case rc.have:
			// Waiting to apply up to its read index: it goes on while a
			// leader is known (entries on their way), but a node cut off
			// from the leader would wait for the caller's ctx alone.
			if c.now >= rc.deadline && !c.leaderUp() {
				delete(c.reads, id)
				rc.done(0, &offline{reason: "lost the leader before applying up to the read index"})
			}
		case c.now >= rc.deadline:
			delete(c.reads, id)
			rc.done(0, &offline{reason: "read index timed out"})
		case rc.retry != 0 && c.now >= rc.retry:
			c.askReadIndex(rc)
		}
	}
}

// failAll fails every pending call with err.
func (c *groupCore) failAll(err error) {
	for seq, fc := range c.assign {
		delete(c.assign, seq)
		fc.finish(0, err)
	}
	for seq, fc := range c.forwards {
		delete(c.forwards, seq)
		fc.finish(0, err)
	}
	for _, ec := range c.pendingExecs() {
		c.failExec(ec, err)
	}
	for id, rc := range c.reads {
		delete(c.reads, id)
		rc.done(0, err)
	}
	clear(c.fwdAssign)
	clear(c.recent)
	c.props, c.propBytes = nil, 0
}
