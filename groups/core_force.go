package groups

import (
	"fmt"
	"slices"

	"github.com/libp2p/go-libp2p/core/peer"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/mosaik-go/mosaik/groups/pb"
)

// Forced epochs (PROTOCOL §21.5): a cluster that lost a whole half of its
// configuration restarts from one surviving writer's log as a new epoch.
//
// Which writer forces. Among the bonded writers of the epoch, the one with
// the most up-to-date log in raft's own order (last term, then last
// index; then the applied index, then the raft id, to break ties) forces,
// and it keeps its whole log: its applied state plus the tail beyond it
// (applyTail). By raft's log matching and leader completeness, the log
// that is highest in that order holds every committed entry that any of
// the logs compared holds: a log whose last entry has a term above that
// of a committed entry was written by a leader holding it; one of the same
// term and at least its index holds it; any other is lower than a log that
// holds it. So no committed entry held by a bonded writer is lost.
//
// The rule was the highest applied index, forcing from the applied state
// alone. That lost committed entries, and could deadlock: in the joint
// step {0,1,2}/{0}, n1 holds the leave-joint entry and a later entry X
// that n0 committed with n1's ack (so a client may have been told it
// succeeded), but never learned that the leave entry committed; n2 applied
// it ({0,1,2}) without X. With n0 lost, n1 finds the outgoing half gone
// but deferred to n2 (higher applied), n2 finds no half gone, and n2
// cannot win n1's vote: both waited for n0, and forcing from either
// applied state would have dropped X. Now n1, the longer log, forces and
// X survives. With equal logs the applied index decides, as before.
//
// Whether to force: only a side that holds a majority of the incoming
// voters (maybeForceEpoch). Who forces, among bonded writers of one epoch,
// and from what: above. So:
//
// (a) A minority never forces. A forced epoch is a decision taken on one
// side of a possible partition, and "gone" cannot be told from
// "unreachable". A side that reaches a strict majority of the incoming
// voters (the voters, outside a joint step) is the only side that can
// hold one, so at most one side of any split forces, and the old cluster
// cannot commit on the other side either (every raft decision needs a
// majority of the incoming voters). Until session 17 a writer cut off
// from every other voter forced after RemoveAfter: a lone voter or
// learner of a live three-voter cluster forked an epoch of its own,
// committed alone, and had its writes discarded on heal. Now it stays
// offline and catches up on heal, nothing discarded. The price is raft's:
// a cluster that lost a majority of its voters for good (two of three
// crashed, or the one voter of a young cluster) stays offline until they
// return or an operator who knows they are dead calls ForceNewEpoch.
//
// (b) Uncommitted tail entries take effect. The tail may hold entries no
// majority acknowledged (an entry n0 appended before it was lost, which
// only n1 received). raft itself lets such an entry commit later (a new
// leader holding it commits it with its first entry), so a caller must
// already expect it: such calls ended with a timeout or an OfflineError
// with MayApply. This node's own pending calls fail with MayApply before
// the tail is applied. Followers that discard their log to join the new
// epoch (wipe) fail theirs with MayApply too, as their commands may be in
// the forcer's tail or applied state.
//
// (c) The writers that do not force follow the new epoch: on its
// lost_epoch announcement they discard their log and state (wipe, counted
// and reported as discarded, the whole log, though the new epoch keeps
// what the forcer held) and rejoin as fresh members, catching up by
// snapshot. The forcer reports the entries of its log that it could not
// keep (none: data entries are applied, configuration entries of the old
// epoch are dropped since the new epoch has its own configuration).

// maybeForceEpoch forces a new epoch (forceEpoch) when this node's
// cluster can no longer decide anything although this side of it holds a
// majority of its incoming voters: the other half of a joint
// configuration (the outgoing voters) has lost every voter other than
// this node for RemoveAfter. A joint decision needs a majority of both
// halves, so a half with no live voter left stops the cluster for good,
// even when a majority of the other half is alive: growing from one voter
// to three is the joint step {0,1,2}/{0}, and with n0 lost there n1 and
// n2 never elect a leader; shrinking is {0}/{0,1,2}. The same holds for a
// node whose applied configuration is stale (it still lists the joint
// step while others applied the leave entry): it may be the one holding
// the longest log (see above).
//
// Guards, besides that: a writer, no leader known for RemoveAfter, no
// bonded peer of this epoch that knows a leader (a partial partition: the
// cluster lives on where this node cannot see it), and the most
// up-to-date log among bonded writers of this epoch (see above; one node
// forces, the others follow it, see onStatus).
//
// Partitions. "Gone" means unreachable, which a partition cannot tell
// from dead. The majority rule makes that safe: the voters this node
// reaches (itself and bonded voters of its epoch) must be a strict
// majority of the incoming half, so the side it cannot reach holds none,
// can neither commit in the old epoch nor force, and at most one side of
// any split forks. In {0,1,2}/{0} split {0} | {1,2}, n0 waits and n1 or
// n2 forces; n0 then follows the announced lost epoch and rejoins, its
// uncommitted tail reported. Outside a joint step a side with a majority
// of the voters elects a leader by raft alone, so no forced epoch starts
// there: a node cut off from every other voter stays offline (see (a)).
//
// A writer defers to a higher log for RemoveAfter at most. The writer it
// defers to may find no half gone under its own applied configuration
// (newer or older than this node's) and be unable to win an election
// either: it lost a majority of its voters but no whole half, say a
// learner with a longer log whose applied configuration still lists a
// live voter among dead ones. It then neither forces nor leads, and
// CoreStatus does not say whether a peer would force. After RemoveAfter
// of deferring with no leader and no lost_epoch announced, this node
// forces from its own log, as the applied-index rule did: the higher
// log's tail is lost, and reported when that writer follows the new
// epoch (wipe). Growing from one voter to three never needs this (the
// highest log there either finds the lone outgoing voter gone or wins
// the others' votes).
func (c *groupCore) maybeForceEpoch() {
	if !c.mustForce() {
		c.deferredAt = 0
		return
	}
	knows, higher, _ := c.forceScan()
	if knows != "" {
		c.deferredAt = 0
		return
	}
	if higher != "" {
		if c.deferredAt == 0 {
			c.deferredAt = c.now
		}
		if c.now-c.deferredAt < int64(c.p.ticks(c.p.RemoveAfter)) {
			return // that writer's log is more up to date: it forces
		}
		c.log.Warn("forcing a new epoch from this node's log: the bonded writer with a higher log neither forced nor led")
	}
	c.deferredAt = 0
	if err := c.forceEpoch("a half of the voters is gone"); err != nil {
		c.log.Warn("could not force a new epoch; trying again", "err", err)
	}
}

// mustForce reports whether rules 1 to 3 of maybeForceEpoch hold: a
// writer with no leader for RemoveAfter, a half of its configuration
// gone, and a strict majority of the incoming voters reachable.
func (c *groupCore) mustForce() bool {
	if c.cfg.role != RoleWriter || c.leaderUp() || c.state == raft.StateLeader {
		return false
	}
	after := int64(c.p.ticks(c.p.RemoveAfter))
	in, out := c.conf.GetVoters(), c.conf.GetVotersOutgoing()
	if c.now-c.noLeader < after || len(in) == 0 {
		return false
	}
	if !c.halfGone(in, after) && !c.halfGone(out, after) {
		return false
	}
	// A minority never forces: the side this node cannot reach may hold
	// the live cluster (see above).
	return majorityOf(in, func(v uint64) bool { return v == c.selfID || c.isUp(v) })
}

// forceScan looks at the bonded peers of this epoch: the first that
// knows a leader other than this node (the cluster lives on beyond this
// node's reach), and the first writer among them that ranks above this
// node, with its status ("" and nil when there is none).
func (c *groupCore) forceScan() (knowsLeader, higher peer.ID, hst *pb.CoreStatus) {
	lt, li := c.lastPos()
	mine := forceRank{lt, li, c.applied, c.selfID}
	for p, ps := range c.peers {
		st := ps.status
		if !ps.up || st == nil || st.GetEpoch() != c.epoch {
			continue
		}
		if l := st.GetLeader(); l != 0 && l != c.selfID && knowsLeader == "" {
			knowsLeader = p
		}
		if ps.role == RoleWriter && higher == "" && (forceRank{st.GetLastTerm(), st.GetLastIndex(), st.GetApplied(), ps.id}).above(mine) {
			higher, hst = p, st
		}
	}
	return knowsLeader, higher, hst
}

// forceNow forces a new epoch at an operator's word (ForceNewEpoch):
// the guards of maybeForceEpoch less the ones only the operator can
// answer (how long the voters have been gone, whether a majority of them
// is reachable).
func (c *groupCore) forceNow() error {
	switch {
	case c.cfg.role != RoleWriter:
		return fmt.Errorf("%w: this node is a reader; only a writer can hold the group", ErrNotForced)
	case c.state == raft.StateLeader:
		return fmt.Errorf("%w: this node leads the group", ErrNotForced)
	case c.leaderUp():
		return fmt.Errorf("%w: the group has a leader (%s)", ErrNotForced, c.leaderPeer())
	}
	switch knows, higher, st := c.forceScan(); {
	case knows != "":
		return fmt.Errorf("%w: bonded member %s knows a leader", ErrNotForced, knows)
	case higher != "":
		lt, li := c.lastPos()
		return fmt.Errorf("%w: bonded writer %s holds a more up-to-date log (last term %d, index %d; this node %d, %d): force there",
			ErrNotForced, higher, st.GetLastTerm(), st.GetLastIndex(), lt, li)
	}
	c.log.Warn("forcing a new epoch at the operator's word (ForceNewEpoch)")
	c.deferredAt = 0
	if err := c.forceEpoch("an operator forced it (ForceNewEpoch)"); err != nil {
		return err
	}
	return c.fatal
}

// forceRank orders the writers that could force: raft's up-to-date order
// of their logs (last term, last index), then the applied index, then the
// raft id.
type forceRank [4]uint64

func (r forceRank) above(o forceRank) bool { return slices.Compare(r[:], o[:]) > 0 }

// halfGone reports whether every voter of a configuration half other
// than this node has been gone for n ticks, the half being neither empty
// nor just this node.
func (c *groupCore) halfGone(half []uint64, n int64) bool {
	if len(half) == 0 || (len(half) == 1 && half[0] == c.selfID) {
		return false
	}
	for _, v := range half {
		if v != c.selfID && !c.goneFor(v, n) && !c.blankFor(v, n) {
			return false
		}
	}
	return true
}

// blankFor reports whether voter id is bonded but has held no log for n
// ticks: it came back empty (a memory store across a crash) and, fenced
// (core_fence.go), votes for nobody until a leader catches it up. For a
// forced epoch it is as gone as a voter whose bond is down; it still
// counts as reachable in the majority test, so the side it is on is the
// only one that can force.
func (c *groupCore) blankFor(id uint64, n int64) bool {
	p, ok := c.byRaft[id]
	if !ok {
		return false
	}
	ps := c.peers[p]
	return ps.up && ps.blank && c.now-ps.blankAt >= n
}

// majorityOf reports whether more than half of voters satisfy in.
func majorityOf(voters []uint64, in func(uint64) bool) bool {
	n := 0
	for _, v := range voters {
		if in(v) {
			n++
		}
	}
	return 2*n > len(voters)
}

// forceEpoch restarts this node as the single voter of a new epoch from
// its whole log: the applied state plus the tail beyond it (applyTail).
// why says what made it force, for the log and the pending calls.
//
// The epochs record (storage_epochs.go) is written first: without it a
// restarted forcer would neither announce the old epoch nor yield to it.
// When it cannot be written nothing else happens and the error is
// returned (the force is not started); other failures end the group
// (c.fatal).
func (c *groupCore) forceEpoch(why string) error {
	hs := c.rn.BasicStatus().HardState
	old := c.epoch
	next := newEpoch(c.lost)
	for next == old {
		next = newEpoch(c.lost)
	}
	// No term bound (lost_term 0): every member of the old epoch without
	// a leader follows the force, whatever its term; a live old cluster
	// is met by the parent rule instead (onStatus).
	rec := c.epochsRecord()
	rec.ParentEpoch, rec.ForcedEpoch, rec.LostEpoch, rec.LostTerm = old, next, old, 0
	rec.Lost = append(rec.Lost, old)
	if err := c.writeEpochs(rec); err != nil {
		return fmt.Errorf("groups: not forcing a new epoch: %w", err)
	}
	// Pending calls first: their commands may be in the tail, applied
	// below, or lost with the old epoch.
	c.failAll(&offline{mayApply: true, reason: why + "; starting a new epoch"})
	if err := c.applyTail(); err != nil {
		c.fatal = err
		return nil
	}
	_, li := c.lastPos()
	at := c.applied
	atTerm, _ := c.store.Term(at)
	c.lost[old] = true
	c.lostEpoch, c.lostTerm = old, 0
	c.epoch, c.parent = next, old
	data, err := c.buildSnapshotData()
	if err != nil {
		c.fatal = err
		return nil
	}
	snap := &raftpb.Snapshot{Data: data, Metadata: &raftpb.SnapshotMetadata{
		Index: new(at), Term: new(atTerm), ConfState: &raftpb.ConfState{Voters: []uint64{c.selfID}},
	}}
	if err := c.replaceStore(&raftpb.HardState{Term: new(hs.GetTerm()), Commit: new(at)}, snap); err != nil {
		c.fatal = err
		return nil
	}
	c.saved = hardVote{} // the vote was reset on disk
	if err := c.resetRaftOn(at); err != nil {
		c.fatal = err
		return nil
	}
	c.conf = snap.GetMetadata().GetConfState()
	c.applied, c.snapIndex = at, at
	_ = c.rn.Campaign()
	c.epochPending = true
	if li > at {
		c.reportDiscard(li - at) // applyTail stops only on an error: never so far
	}
	c.log.Warn("started a new epoch from this node's log", "why", why, "old_epoch", old, "epoch", c.epoch, "applied", at)
	c.broadcastStatus()
	return nil
}

// applyTail applies the entries of the log past the applied index, as if
// committed: command entries run on the state machine in order, every
// other entry is skipped. Configuration changes of the old epoch are
// skipped, not applied: the new epoch starts with its own configuration.
func (c *groupCore) applyTail() error {
	li, err := c.store.LastIndex()
	if err != nil {
		return fmt.Errorf("%w: log store: %w", ErrTerminated, err)
	}
	for c.applied < li {
		ents, err := c.store.Entries(c.applied+1, li+1, 4<<20)
		if err != nil {
			return fmt.Errorf("%w: reading the log tail: %w", ErrTerminated, err)
		}
		if len(ents) == 0 {
			return nil
		}
		tail := make([]*raftpb.Entry, len(ents))
		for i, e := range ents {
			if e.GetType() != raftpb.EntryType_EntryNormal {
				// An empty entry at its place, which applyEntries skips.
				e = &raftpb.Entry{Index: new(e.GetIndex()), Term: new(e.GetTerm())}
			}
			tail[i] = e
		}
		if err := c.applyEntries(tail); err != nil {
			return err
		}
	}
	return nil
}

// replaceStore makes the log store hold only hard state hs and snapshot
// snap. A store that can (replacer: a data dir's WAL) does it in one step:
// emptying the store and then saving would leave, after a crash between
// the two, an empty store where the forcer's log (perhaps the only copy
// of committed entries) was. Another store is reopened empty, then saved.
func (c *groupCore) replaceStore(hs *raftpb.HardState, snap *raftpb.Snapshot) error {
	if r, ok := c.store.(replacer); ok {
		if err := r.Replace(hs, snap); err != nil {
			return fmt.Errorf("%w: %w", ErrTerminated, err)
		}
		return nil
	}
	if err := c.resetRaft(); err != nil {
		return err
	}
	if err := c.store.Save(hs, snap, nil); err != nil {
		return fmt.Errorf("%w: log store: %w", ErrTerminated, err)
	}
	return nil
}
