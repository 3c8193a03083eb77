package groups

import (
	"cmp"
	"slices"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/mosaik-go/mosaik/groups/pb"
)

// Graceful leave. A voter whose group ends on its node (the last handle
// closed) would otherwise stay in the configuration until its bond has
// been down for RemoveAfter: a group of one voter and other writers has no
// leader all that time, and a larger one runs a voter short. So before the
// loop stops, for at most Params.LeaveTimeout:
//
//   - a leader hands leadership over (raft's TransferLeader) to its most
//     caught-up live voter that is not leaving too; if every other live
//     voter is leaving, it removes them first; if it is the only voter, it
//     first promotes its most caught-up live writer learner, so there is
//     someone to hand over to. A leaving node takes no leadership handed
//     to it (it drops raft's MsgTimeoutNow), so members closing at once do
//     not pass leadership around among themselves;
//   - a follower (a voter, or one the leader just demoted to learner)
//     sends the leader a Leave frame every heartbeat; the
//     leader removes it (replacing it with a caught-up writer learner when
//     the voters would otherwise turn even) and, once it has applied a
//     configuration without it, answers Left;
//   - the node stops on Left, once its own applied configuration no longer
//     lists it, or at the timeout (the old behaviour: removal
//     after RemoveAfter, or a forced epoch when every voter is gone).
//
// A learner (a reader, or a writer not promoted) leaves the same way, as a
// follower: otherwise every short-lived member, such as a command-line
// client that joins to do one operation, would stay in the configuration
// for RemoveAfter. It counts in no quorum, so it goes at once when no
// leader is known, and the leader removes it even if its bond ends before
// the removal (it did not wait for Left).
//
// The leaver stays in the group until the leader has applied its removal,
// so a removal that needs its vote (a configuration of two voters) still
// commits, and the remaining members know the new configuration before it
// goes: none of them depends on a departed voter.

// Core frames of the graceful leave (PROTOCOL.md §21.3).
const (
	kindLeave byte = 0x26
	kindLeft  byte = 0x27
)

// leaveState is the leaving node's progress.
type leaveState struct {
	done   chan struct{}
	closed bool
	at     int64  // tick of the last Leave frame or promotion (0: none)
	to     uint64 // leader the last Leave frame went to
	// member: this node's applied configuration has listed it since the
	// leave began; until then, not being listed means not added yet
	// rather than removed.
	member bool
}

// leave runs the graceful leave for at most d, on the caller's goroutine
// (the group's loop keeps running). It returns at once when the group has
// ended or this node is in no configuration.
func (c *groupCore) leave(d time.Duration) {
	if d <= 0 {
		return
	}
	done := make(chan struct{})
	select {
	case c.calls <- func() { c.startLeave(done) }:
	case <-c.done:
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
	case <-c.done:
	case <-t.C:
		c.log.Info("graceful leave timed out: the group removes this node after RemoveAfter", "timeout", d)
	}
}

func (c *groupCore) startLeave(done chan struct{}) {
	if c.leaving != nil || c.epoch == 0 {
		close(done)
		return
	}
	member := c.inConf(c.selfID)
	if !member && !c.leaderUp() {
		close(done)
		return
	}
	// Not a member as this node applied its configuration, but a leader
	// is known: it may have added this node already (the addition not
	// applied here yet), so ask it all the same; it answers Left at once
	// when it does not list this node.
	c.leaving = &leaveState{done: done, member: member}
	c.log.Info("leaving the group", "epoch", c.epoch)
	c.stepLeave()
}

func (c *groupCore) finishLeave(why string) {
	if c.leaving.closed {
		return
	}
	c.leaving.closed = true
	close(c.leaving.done)
	c.log.Info("left the group", "why", why)
}

// isLeaver reports whether member id asked this leader to remove it and
// is still bonded: it must not be added back meanwhile.
func (c *groupCore) isLeaver(id uint64) bool {
	_, ok := c.leavers[id]
	return ok
}

func (c *groupCore) isVoter(id uint64) bool {
	return slices.Contains(c.conf.GetVoters(), id) || slices.Contains(c.conf.GetVotersOutgoing(), id)
}

// leaveTurn runs once per turn of the loop, before raft's Ready: the
// leaver's next step and the leader's service of leavers.
func (c *groupCore) leaveTurn() {
	if c.leaving != nil {
		c.stepLeave()
	}
	if len(c.leavers) > 0 {
		c.serveLeavers()
	}
}

func (c *groupCore) stepLeave() {
	l := c.leaving
	if l.closed {
		return
	}
	if c.inConf(c.selfID) {
		l.member = true
	}
	if c.epoch == 0 || (l.member && !c.inConf(c.selfID)) {
		c.finishLeave("no longer a member")
		return
	}
	every := int64(c.p.ticks(c.p.Heartbeat))
	if c.state == raft.StateLeader {
		c.handOver()
		return
	}
	if !c.leaderUp() && !c.isVoter(c.selfID) {
		// A learner counts in no quorum: with no leader to ask, it goes
		// at once, and is removed after RemoveAfter as before (after a
		// heartbeat if it never got the log: manageMembers).
		c.finishLeave("no leader to ask")
		return
	}
	if !c.leaderUp() || c.lead == c.selfID || (l.to == c.lead && c.now-l.at < every) {
		return // no leader to ask yet, or asked it recently
	}
	l.to, l.at = c.lead, c.now
	c.send(c.byRaft[c.lead], kindLeave, &pb.CoreLeave{Epoch: c.epoch})
}

// handOver moves leadership to another live voter, promoting a writer
// learner first when this node is the only voter.
func (c *groupCore) handOver() {
	if c.rn.BasicStatus().LeadTransferee != 0 {
		return // a transfer is under way (raft aborts it after an election timeout)
	}
	st := c.rn.Status()
	// The best heir: one not leaving itself, then an eager one (a
	// reluctant node is meant to lead last), then the most caught up.
	rank := func(id uint64) []uint64 {
		eager := uint64(1)
		if ps := c.peers[c.byRaft[id]]; ps.status.GetReluctant() {
			eager = 0
		}
		stays := uint64(1)
		if c.isLeaver(id) {
			stays = 0
		}
		return []uint64{stays, eager, st.Progress[id].Match}
	}
	var best uint64
	for _, v := range c.conf.GetVoters() {
		if v != c.selfID && c.isUp(v) && (best == 0 || slices.Compare(rank(v), rank(best)) > 0) {
			best = v
		}
	}
	if best != 0 && c.isLeaver(best) {
		// Every live voter is leaving too: remove them first
		// (serveLeavers), then hand over to a writer learner or end.
		return
	}
	if best != 0 {
		c.rn.TransferLeader(best)
		c.log.Info("handing leadership over before leaving", "to", best)
		return
	}
	l := c.leaving
	if len(c.conf.GetVoters()) > 1 || len(c.conf.GetVotersOutgoing()) > 0 ||
		(l.at != 0 && c.now-l.at < int64(c.p.ticks(c.p.ElectionTimeout))) {
		return // other voters, none bonded (wait for them or the timeout), or a promotion pending
	}
	// The heir is a ready learner (holding the log: readyLearners). A
	// bonded writer learner that holds nothing yet (just added) is waited
	// for: promoted blank, it would be a second voter that may never
	// answer (it can be closing before it applied its own addition), and
	// the group could commit nothing until the leave timed out.
	waiting := false
	for _, id := range c.conf.GetLearners() {
		if c.isUp(id) && !c.isLeaver(id) && c.peers[c.byRaft[id]].role == RoleWriter {
			waiting = true
		}
	}
	for _, id := range c.readyLearners(st) {
		if best == 0 || st.Progress[id].Match > st.Progress[best].Match {
			best = id
		}
	}
	if best == 0 {
		if !waiting {
			c.finishLeave("no other writer to hand the group to")
		}
		return
	}
	l.at = c.now
	c.changeConf(raftpb.ConfChangeType_ConfChangeAddNode, best)
}

// onLeave is the leader's side of a Leave frame.
func (c *groupCore) onLeave(ps *peerState, body []byte) {
	var m pb.CoreLeave
	if proto.Unmarshal(body, &m) != nil {
		c.drop()
		return
	}
	if c.state != raft.StateLeader || m.GetEpoch() != c.epoch {
		return // the leaver asks again once it knows this cluster's leader
	}
	if c.leavers == nil {
		c.leavers = map[uint64]bool{}
	}
	c.leavers[ps.id] = true
	c.serveLeavers()
}

// onLeft ends this node's leave when its leader confirms it.
func (c *groupCore) onLeft(ps *peerState, body []byte) {
	var m pb.CoreLeave
	if proto.Unmarshal(body, &m) != nil {
		c.drop()
		return
	}
	if c.leaving != nil && m.GetEpoch() == c.epoch && ps.id == c.lead {
		c.finishLeave("the leader removed this node")
	}
}

// serveLeavers answers Left to leavers the applied configuration no longer
// holds and proposes the removal of one that it does: at once when no
// change is pending, else at most once a heartbeat (raft turns a change
// proposed while another is pending into an empty entry: a later turn
// proposes it again).
func (c *groupCore) serveLeavers() {
	if c.state != raft.StateLeader {
		clear(c.leavers)
		return
	}
	settled := c.confSettled()
	var next uint64
	for id, answered := range c.leavers {
		switch {
		case !c.isUp(id) && (c.isVoter(id) || !c.inConf(id)):
			// Kept until then, so the leaver is not added back. A voter
			// gone before its removal is left to RemoveAfter (removing
			// it may need its vote); a learner that asked is removed
			// even once its bond has ended (it may not wait for Left).
			delete(c.leavers, id)
		case answered && !c.inConf(id) && settled:
			c.send(c.byRaft[id], kindLeft, &pb.CoreLeave{Epoch: c.epoch})
			c.leavers[id] = false
		case c.inConf(id) && (next == 0 || id < next):
			c.leavers[id] = true
			next = id
		}
	}
	// With no change of ours in flight and none of an earlier term
	// unapplied, the removal goes at once, so leavers closing together
	// (command-line clients) are removed one commit apart; otherwise it is
	// retried once a heartbeat.
	idle := c.ccAt == 0 && settled
	if next == 0 || len(c.conf.GetVotersOutgoing()) > 0 || (!idle && c.now-c.leaveAt < int64(c.p.ticks(c.p.Heartbeat))) {
		return
	}
	c.leaveAt = c.now
	c.removeLeaver(next)
}

// confSettled reports whether the leader's applied configuration includes
// everything committed before its term, so a member it does not list was
// really removed.
func (c *groupCore) confSettled() bool {
	hs := c.rn.BasicStatus().HardState
	t, err := c.store.Term(hs.GetCommit())
	return err == nil && t == hs.GetTerm() && c.applied >= hs.GetCommit()
}

// removeLeaver proposes the removal of id; a voter of an odd set is
// replaced by the most caught-up ready writer learner (one joint change),
// so the set stays odd; an even set just loses it.
func (c *groupCore) removeLeaver(id uint64) {
	cc := &raftpb.ConfChangeV2{Changes: []*raftpb.ConfChangeSingle{
		{Type: raftpb.ConfChangeType_ConfChangeRemoveNode.Enum(), NodeId: new(id)},
	}}
	var with uint64
	if c.isVoter(id) && len(c.conf.GetVoters())%2 == 1 {
		st := c.rn.Status()
		ready := slices.DeleteFunc(c.readyLearners(st), func(l uint64) bool { return l == id })
		if len(ready) > 0 {
			with = slices.MaxFunc(ready, func(a, b uint64) int { return cmp.Compare(st.Progress[a].Match, st.Progress[b].Match) })
			cc.Changes = append(cc.Changes, &raftpb.ConfChangeSingle{Type: raftpb.ConfChangeType_ConfChangeAddNode.Enum(), NodeId: new(with)})
		}
	}
	if err := c.rn.ProposeConfChange(cc); err != nil {
		c.log.Debug("conf change not proposed", "err", err)
		return
	}
	c.ccAt = c.now
	c.log.Info("removing a leaving member", "node", id, "replacement", with)
}
