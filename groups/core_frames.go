package groups

// The group goroutine's side of the bond layer: frames from bonded peers
// (raft messages, statuses, forwards and the rest), and the status this
// node sends them.

import (
	"fmt"
	"slices"

	"github.com/libp2p/go-libp2p/core/peer"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/mosaik-go/mosaik/groups/pb"
)

// takeBonds handles the queued bond events, in order.
func (c *groupCore) takeBonds() {
	c.bondMu.Lock()
	q := c.bondQ
	c.bondQ = nil
	c.bondMu.Unlock()
	for _, ev := range q {
		c.onBond(ev)
	}
}

// maxStatusFrame caps a CoreStatus frame: an honest one (a dozen integers
// and maxAnnouncedAnchors anchors) is well under 1 KiB. Without it a
// bonded peer's 4 MiB frame of empty anchors decoded into two million of
// them, about 200 MiB held until its next status (review probe).
const maxStatusFrame = 4 << 10

func (c *groupCore) onFrame(f frame) {
	c.inboxBytes.Add(-int64(len(f.body)))
	ps := c.peers[f.from]
	if ps == nil || !ps.up {
		// The bond layer calls BondUp before it delivers the bond's first
		// frame, but the two reach this goroutine on different channels:
		// take the queued bond events before judging the sender, or the
		// first frames of every new bond (a newcomer's status, which the
		// leader answers by adding it) would be lost and wait for the
		// next periodic status.
		c.takeBonds()
		ps = c.peers[f.from]
	}
	if ps == nil || !ps.up {
		c.drop()
		return
	}
	switch f.kind {
	case kindRaft:
		var m pb.CoreRaft
		if proto.Unmarshal(f.body, &m) != nil {
			c.drop()
			return
		}
		c.onRaft(ps, m.GetEpoch(), m.GetMessage())
	case kindStatus:
		var m pb.CoreStatus
		if len(f.body) > maxStatusFrame || proto.Unmarshal(f.body, &m) != nil {
			c.drop()
			return
		}
		// Only the first maxAnnouncedAnchors are read; the rest are not kept
		// (the status is held until the peer's next one).
		m.Snapshots = m.Snapshots[:min(len(m.Snapshots), maxAnnouncedAnchors)]
		ps.status = &m
		blank := m.GetEpoch() == 0 && m.GetLastIndex() == 0
		if blank && !ps.blank {
			ps.blankAt = c.now
		}
		ps.blank = blank
		c.onStatus(f.from, ps, &m)
		c.addOnStatus(ps)
		c.onStatusSnapshots(f.from, ps)
	case kindForward:
		var m pb.CoreForward
		if proto.Unmarshal(f.body, &m) != nil || m.GetOrigin() != ps.id {
			c.drop()
			return
		}
		c.onForward(f.from, &m)
	case kindForwardOK:
		var m pb.CoreForwardAck
		if proto.Unmarshal(f.body, &m) != nil {
			c.drop()
			return
		}
		c.onForwardAck(&m)
	case kindNotLeader:
		var m pb.CoreNotLeader
		if proto.Unmarshal(f.body, &m) != nil {
			c.drop()
			return
		}
		if fc := c.forwards[m.GetSeq()]; fc != nil {
			delete(c.forwards, m.GetSeq())
			fc.finish(0, &offline{reason: "peer is not the leader"})
		}
	case kindSnapFailed:
		c.onSnapFailed(ps, f.body)
	case kindLeave:
		c.onLeave(ps, f.body)
	case kindLeft:
		c.onLeft(ps, f.body)
	default:
		c.drop()
	}
}

func (c *groupCore) onRaft(ps *peerState, epoch uint64, data []byte) {
	// The epoch this node abandoned last is not rejoined (its announcement
	// also keeps that epoch's leader from adding it: joinable); an epoch
	// abandoned before that may be: a node that followed a forced epoch
	// which then gave way to its live parent rejoins the parent.
	if epoch == 0 || epoch == c.lostEpoch {
		c.drop()
		return
	}
	adopt := false
	if c.epoch == 0 {
		if !c.fresh() {
			// Entries of no epoch (recover starts such a store afresh):
			// adopting one now would make this node's own configuration
			// a member of that cluster.
			c.drop()
			return
		}
		adopt = true
	} else if epoch != c.epoch {
		c.drop()
		return
	}
	m := new(raftpb.Message)
	if proto.Unmarshal(data, m) != nil || m.GetFrom() != ps.id || m.GetTo() != c.selfID {
		c.drop()
		return
	}
	if c.fenced(m.GetType()) {
		return
	}
	if adopt {
		// A fresh node joins the first cluster that talks to it.
		c.epoch = epoch
	}
	if !c.fresh() && !c.inConf(ps.id) && ps.id != c.lead && !(leadsTo(ps, c.epoch, m.GetType()) && c.mayFollow(ps.id)) {
		// Members and the current leader only (a joining node learns the
		// configuration from its leader's entries): a non-member's raft
		// message, say with an absurd term, must not disturb the cluster.
		c.drop()
		return
	}
	if m.GetType() == raftpb.MessageType_MsgSnap && !c.onSnapMsg(c.byRaft[ps.id], m) {
		return // fetched first (or dropped)
	}
	if m.GetType() == raftpb.MessageType_MsgTimeoutNow && c.leaving != nil {
		// A leaving node takes no leadership handed to it (raft's
		// transfer): when members close at once, each would hand it to
		// another leaver and back, thousands of elections a second until
		// their leave timeouts. Raft treats the drop as a lost message and
		// aborts the transfer after an election timeout.
		return
	}
	defer func() {
		// Members are trusted, but a malformed message that makes raft
		// panic ends the group on this node, not the process.
		if r := recover(); r != nil {
			c.fatal = fmt.Errorf("%w: raft failed on a message from %x: %v", ErrTerminated, ps.id, r)
		}
	}()
	if m.GetType() == raftpb.MessageType_MsgHeartbeat {
		// A leader sends a heartbeat with a commit index of at most what
		// it believes this node holds. A node that discarded its log
		// (wipe) since holds less, and raft would panic on the commit
		// index; clamp it to the log, and let the leader learn of the
		// loss from this node's status (removeWiped).
		if _, li := c.lastPos(); m.GetCommit() > li {
			m.Commit = new(li)
		}
	}
	_ = c.rn.Step(m) // errors are for local or unknown-peer messages: ignored
}

// fresh reports whether this node belongs to no cluster yet.
func (c *groupCore) fresh() bool {
	li, _ := c.store.LastIndex()
	return li == 0 && len(c.conf.GetVoters()) == 0
}

func (c *groupCore) inConf(id uint64) bool {
	return slices.Contains(c.conf.GetVoters(), id) || slices.Contains(c.conf.GetLearners(), id) ||
		slices.Contains(c.conf.GetVotersOutgoing(), id) || slices.Contains(c.conf.GetLearnersNext(), id)
}

func (c *groupCore) send(p peer.ID, kind byte, m proto.Message) bool {
	body, err := proto.Marshal(m)
	if err != nil {
		return false
	}
	return c.tr.Send(p, kind, body)
}

func (c *groupCore) lastPos() (term, index uint64) {
	index, _ = c.store.LastIndex()
	term, _ = c.store.Term(index)
	return term, index
}

func (c *groupCore) status() *pb.CoreStatus {
	t, i := c.lastPos()
	return &pb.CoreStatus{
		Epoch: c.epoch, LastTerm: t, LastIndex: i,
		Committed: c.rn.BasicStatus().HardState.GetCommit(), Applied: c.applied,
		Leader: c.lead, IsLeader: c.state == raft.StateLeader,
		LostEpoch: c.lostEpoch, LostTerm: c.lostTerm, ParentEpoch: c.parent, Reluctant: c.cfg.reluctant,
		Snapshots: c.heldAnchors(), Fetching: c.snap.fetching,
	}
}

func (c *groupCore) sendStatus(p peer.ID) { c.send(p, kindStatus, c.status()) }

func (c *groupCore) broadcastStatus() {
	st := c.status()
	for p, ps := range c.peers {
		if ps.up {
			c.send(p, kindStatus, st)
		}
	}
}

// leadsTo reports whether a message of type t from ps is a leader's to a
// follower (entries, heartbeat, snapshot) and ps's status says it leads
// epoch. A member that was away past RemoveAfter, and removed, knows
// neither the leader that adds it back nor, when that leader joined after
// it left, any of the voters: without this it dropped every message of
// that leader and never caught up (its own messages the members drop).
// Taken only when mayFollow: a status is the sender's own word, and a
// heartbeat of an absurd term from a non-member that claims to lead would
// depose a healthy leader.
func leadsTo(ps *peerState, epoch uint64, t raftpb.MessageType) bool {
	switch t {
	case raftpb.MessageType_MsgApp, raftpb.MessageType_MsgHeartbeat, raftpb.MessageType_MsgSnap:
		return ps.status.GetIsLeader() && ps.status.GetEpoch() == epoch
	}
	return false
}

// mayFollow reports whether this node, not leading and without a bonded
// leader, may take the leader's messages of lead, a peer outside its
// configuration that claims to lead its epoch: when no other voter of its
// configuration is bonded (it hears from no one its configuration names),
// or when one of them reports lead as its leader.
func (c *groupCore) mayFollow(lead uint64) bool {
	if c.state == raft.StateLeader || c.leaderUp() {
		return false
	}
	stranded := true
	for _, ids := range [][]uint64{c.conf.GetVoters(), c.conf.GetVotersOutgoing()} {
		for _, id := range ids {
			if id == c.selfID || !c.isUp(id) {
				continue
			}
			if st := c.peers[c.byRaft[id]].status; st.GetLeader() == lead && st.GetEpoch() == c.epoch {
				return true
			}
			stranded = false
		}
	}
	return stranded
}
