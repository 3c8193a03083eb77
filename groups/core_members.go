package groups

import (
	"cmp"
	"math/rand/v2"
	"slices"

	"github.com/libp2p/go-libp2p/core/peer"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.etcd.io/raft/v3/tracker"

	"github.com/mosaik-go/mosaik/groups/pb"
)

// Membership, bootstrap and merges. Every cluster (a raft configuration
// history) has a random non-zero epoch, chosen when a node bootstraps it;
// a fresh node has epoch 0 and takes the epoch of the first cluster whose
// raft messages reach it. Members exchange CoreStatus frames on bond up and
// every 2 heartbeats.
//
//   - Bootstrap: a fresh writer bootstraps a singleton cluster after the
//     bootstrap delay, unless a bonded peer belongs to a live cluster (it
//     waits to be added) or a bonded fresh writer has a lower raft id (that
//     one bootstraps, this one is added).
//   - Joining: the leader adds every bonded peer of epoch 0 or its own as
//     a learner, promotes caught-up writers so that voters are 1, 3 or 5,
//     demotes one voter of an even set, and removes members whose bond has
//     been down for RemoveAfter, or that asked to leave (core_leave.go).
//     One change at a time, ConfChangeV2.
//   - Rivals: when two leaders of different epochs see each other's status,
//     the one with the lower (last term, last index, epoch) discards its
//     raft state and state machine (its epoch joins its lost set, announced
//     as lost_epoch) and rejoins as a fresh node. Its followers discard too
//     when their leader (or, with no leader, any peer) announces their
//     epoch lost with a log no older than theirs (lost_term).
//   - A half of the voters gone: a writer that has known no leader for
//     RemoveAfter, while every other voter of a configuration half (all
//     voters, or the incoming or the outgoing ones of a joint step) has
//     been gone that long (maybeForceEpoch has the exact rule), and that
//     has the most up-to-date log (last term, last index, then applied
//     index, raft id) among bonded writers of its epoch, starts a new epoch
//     from its whole log (applied state plus tail) as the single voter and
//     announces the old epoch lost (core_force.go). If the old voters were only
//     partitioned away and still have a leader, that leader ignores the
//     announcement, and when the two leaders see each other the cluster
//     that was forked from (parent_epoch) wins: the forced epoch discards
//     its writes. Its writes were committed by a minority, so a partition
//     longer than RemoveAfter that isolates every voter from a writer can
//     accept writes on that writer's side that are later discarded (and
//     reported); RemoveAfter is long by default (15 s) for that reason.

func (c *groupCore) maybeBootstrap() {
	if c.leaderUp() {
		c.noLeader = c.now
	}
	if c.epoch != 0 {
		c.maybeForceEpoch()
		return
	}
	if c.cfg.role != RoleWriter {
		return
	}
	delay := int64(c.p.ticks(c.p.BootstrapDelay))
	if c.cfg.reluctant {
		delay *= int64(c.p.ReluctantFactor)
	}
	if c.now-c.freshSince < delay {
		return
	}
	for _, ps := range c.peers {
		if !ps.up {
			continue
		}
		if ps.status == nil {
			return // wait to hear what the peer is
		}
		e := ps.status.GetEpoch()
		if e != 0 && e != c.lostEpoch {
			return // a cluster exists: its leader adds this node
		}
		if e == 0 && ps.role == RoleWriter && bootsFirst(ps.status.GetReluctant(), ps.id, c.cfg.reluctant, c.selfID) {
			return // the first fresh writer (eager before reluctant, then lowest id) bootstraps
		}
	}
	c.bootstrap()
}

func (c *groupCore) bootstrap() {
	c.epoch = newEpoch(c.lost)
	if err := c.rn.Bootstrap([]raft.Peer{{ID: c.selfID}}); err != nil {
		c.log.Warn("bootstrap failed", "err", err)
		c.epoch = 0
		return
	}
	// Raft campaigns only once the bootstrap configuration is applied.
	if err := c.safeReady(); err != nil {
		c.fatal = err
		return
	}
	_ = c.rn.Campaign()
	c.epochPending = true
	c.log.Info("bootstrapped a new cluster", "epoch", c.epoch)
	c.broadcastStatus()
}

func bootsFirst(aReluctant bool, a uint64, bReluctant bool, b uint64) bool {
	if aReluctant != bReluctant {
		return !aReluctant
	}
	return a < b
}

func newEpoch(lost map[uint64]bool) uint64 {
	for {
		if e := rand.Uint64(); e != 0 && !lost[e] {
			return e
		}
	}
}

func (c *groupCore) onStatus(from peer.ID, ps *peerState, st *pb.CoreStatus) {
	if c.epoch == 0 {
		return
	}
	// My cluster was abandoned by its leader, or by anyone while I know no
	// leader: follow it into a fresh start. A merge lost with a log older
	// than mine does not speak for the cluster: a leader deposed on a
	// minority side (CheckQuorum had not yet stepped it down) that then
	// lost a merge abandoned an epoch whose majority has elected another
	// leader since, and every elected leader appends an entry at its own
	// term, so that majority's logs end at a later term than the
	// announcement's (lost_term, the abandoner's last log term). A
	// failed election raises a member's raft term but not its log's: the
	// comparison is of log terms. A forced epoch's announcement has no
	// bound (lost_term 0).
	lt := st.GetLostTerm()
	if mine, _ := c.lastPos(); st.GetLostEpoch() == c.epoch && (lt == 0 || lt >= mine) &&
		c.state != raft.StateLeader && (!c.leaderUp() || c.lead == ps.id) {
		c.wipe("peer "+from.ShortString()+" abandoned this cluster", 0)
		return
	}
	e := st.GetEpoch()
	if c.state != raft.StateLeader || !st.GetIsLeader() || e == 0 || e == c.epoch {
		return
	}
	switch {
	case st.GetParentEpoch() == c.epoch:
		return // they forked off this live cluster: they give way
	case c.parent == e:
		c.wipe("the cluster this node's epoch was forced from is alive: "+from.ShortString(), e)
		return
	}
	// An epoch this node abandoned is compared like any other: its leader
	// now is one its majority elected after this node left, and both
	// leaders must agree on which of them gives way, or the two clusters
	// never merge.
	mt, mi := c.lastPos()
	mine := [3]uint64{mt, mi, c.epoch}
	theirs := [3]uint64{st.GetLastTerm(), st.GetLastIndex(), e}
	if slices.Compare(mine[:], theirs[:]) < 0 {
		c.wipe("rival cluster of "+from.ShortString()+" has the higher log", e)
	}
}

// wipe discards this node's raft state and state machine and makes it a
// fresh node that a leader of another cluster (winner, if known) will add.
func (c *groupCore) wipe(reason string, winner uint64) {
	lt, li := c.lastPos()
	old := c.epoch
	c.lost[old] = true
	c.lostEpoch, c.lostTerm = old, lt
	c.epoch, c.parent = 0, 0
	delete(c.lost, winner)
	// The record before the log goes (a crash between leaves the old log
	// with a record that names its epoch, which a restart ignores).
	if err := c.saveEpochs(); err != nil {
		c.log.Warn("could not keep the epochs this node left in its data dir", "err", err)
	}
	// MayApply: a command of a pending call may be in the log of the
	// writer that forced the epoch this node follows (core_force.go), or
	// of a rival that goes on.
	c.failAll(&offline{mayApply: true, reason: "cluster discarded: " + reason})
	if err := c.sm.restore(c.initial); err != nil {
		c.fatal = err
		return
	}
	if err := c.resetRaft(); err != nil {
		c.fatal = err
		return
	}
	c.reportDiscard(li)
	c.log.Warn("discarded this node's log and state", "entries", li, "epoch", old, "reason", reason)
	c.broadcastStatus()
}

func (c *groupCore) reportDiscard(n uint64) {
	c.discarded += n
	c.met.add(c.met.discarded, int64(n))
	c.view.discard(n)
}

// goneFor reports whether member id has had no bond for at least n ticks.
func (c *groupCore) goneFor(id uint64, n int64) bool {
	if p, ok := c.byRaft[id]; ok {
		ps := c.peers[p]
		return !ps.up && c.now-ps.downAt >= n
	}
	since, ok := c.absent[id]
	if !ok {
		c.absent[id] = c.now
		return false
	}
	return c.now-since >= n
}

// manageMembers is the leader's membership controller, run every
// heartbeat: one configuration change at a time.
func (c *groupCore) manageMembers() {
	if c.leaving != nil {
		return // handing over (core_leave.go): no other change meanwhile
	}
	if c.ccAt != 0 && c.now-c.ccAt < int64(2*c.p.ticks(c.p.ElectionTimeout)) {
		return
	}
	if len(c.conf.GetVotersOutgoing()) > 0 {
		return // raft leaves the joint configuration by itself
	}
	after := int64(c.p.ticks(c.p.RemoveAfter))
	in := map[uint64]bool{}
	for _, id := range c.conf.GetVoters() {
		in[id] = true
		if id != c.selfID && c.goneFor(id, after) {
			c.changeConf(raftpb.ConfChangeType_ConfChangeRemoveNode, id)
			return
		}
	}
	var progress map[uint64]tracker.Progress
	for _, id := range c.conf.GetLearners() {
		in[id] = true
		wait := after
		if progress == nil {
			progress = c.rn.Status().Progress
		}
		if c.blankLearner(id, progress) {
			// It holds nothing to resume and counts in no quorum: gone for
			// a heartbeat (it closed or crashed before the first append or
			// snapshot reached it, so it could not ask to leave), it is
			// removed, and added again as the fresh learner it is if it
			// returns.
			wait = int64(c.p.ticks(c.p.Heartbeat))
		}
		if c.goneFor(id, wait) {
			c.changeConf(raftpb.ConfChangeType_ConfChangeRemoveNode, id)
			return
		}
	}
	// Add bonded fresh (or returning) peers as learners, lowest id first.
	var add []uint64
	for _, ps := range c.peers {
		if !in[ps.id] && !c.isLeaver(ps.id) && c.joinable(ps) {
			add = append(add, ps.id)
		}
	}
	if len(add) > 0 {
		c.changeConf(raftpb.ConfChangeType_ConfChangeAddLearnerNode, slices.Min(add))
		return
	}
	c.balanceVoters()
}

// blankLearner reports whether learner id is known to hold no log: the
// last status it sent this node said so, and it has acknowledged no entry
// to this leader since. Both are needed: raft resets every peer's Match
// when a node becomes leader, and a status can predate the log's arrival.
// A learner this node never bonded with is not known to be blank.
func (c *groupCore) blankLearner(id uint64, progress map[uint64]tracker.Progress) bool {
	p, ok := c.byRaft[id]
	return ok && c.peers[p].blank && progress[id].Match == 0
}

// joinable reports whether the leader adds ps as a learner once it is
// not in the configuration: bonded, and fresh or of this cluster.
func (c *groupCore) joinable(ps *peerState) bool {
	st := ps.status
	return ps.up && st != nil && (st.GetEpoch() == 0 || st.GetEpoch() == c.epoch) && st.GetLostEpoch() != c.epoch
}

// addOnStatus runs when a peer's status arrives: the leader adds a
// joinable peer as a learner at once, when no change is in flight, so a
// late joiner's sync starts a round trip after its bond rather than at
// the next heartbeat's manageMembers.
func (c *groupCore) addOnStatus(ps *peerState) {
	if c.state != raft.StateLeader || c.epoch == 0 || c.ccAt != 0 || c.leaving != nil || len(c.conf.GetVotersOutgoing()) > 0 ||
		c.isLeaver(ps.id) || !c.joinable(ps) {
		return
	}
	if slices.Contains(c.conf.GetVoters(), ps.id) || slices.Contains(c.conf.GetLearners(), ps.id) {
		c.removeWiped(ps)
		return
	}
	c.changeConf(raftpb.ConfChangeType_ConfChangeAddLearnerNode, ps.id)
}

// removeWiped removes a member whose status says it holds no log at all
// (it discarded its cluster: wipe) while raft's progress says it held
// entries. raft never lowers a member's match index, so it would go on
// sending from where the member was, the member rejecting every append;
// removed, it is added again as a fresh learner and sent a snapshot.
func (c *groupCore) removeWiped(ps *peerState) {
	st := ps.status
	if st.GetEpoch() != 0 || st.GetLastIndex() != 0 || ps.id == c.selfID {
		return
	}
	if pr, ok := c.rn.Status().Progress[ps.id]; ok && pr.Match > 0 {
		c.log.Info("removing a member that discarded its log", "node", ps.id, "match", pr.Match)
		c.changeConf(raftpb.ConfChangeType_ConfChangeRemoveNode, ps.id)
	}
}

// pace marks the leader's commit index once per election timeout, so that
// a learner counts as caught up when it has everything committed one to
// two election timeouts ago. A fixed lag in entries is not enough: under a
// steady stream of writes a learner that fsyncs each append stays a few
// dozen entries behind for good, and would never be promoted.
type pace struct {
	at         int64  // tick of the last mark
	mark, prev uint64 // commit index at the last mark and the one before
}

func (p *pace) update(now, every int64, commit uint64) {
	switch {
	case p.at == 0 || now-p.at >= 3*every:
		// Stale (this node was not leading, or waited on a change): a mark
		// from long ago would let a far-behind learner count as caught up.
		p.at, p.prev, p.mark = now, 0, commit
	case now-p.at >= every:
		p.at, p.prev, p.mark = now, p.mark, commit
	}
}

// balanceVoters promotes caught-up writer learners until voters are
// min(5, writers) made odd, and demotes a voter of an even, all-alive set
// that cannot grow.
func (c *groupCore) balanceVoters() {
	st := c.rn.Status()
	alive := 0
	var live []uint64
	for _, v := range c.conf.GetVoters() {
		if v == c.selfID || c.isUp(v) {
			alive++
			if v != c.selfID {
				live = append(live, v)
			}
		}
	}
	voters := len(c.conf.GetVoters())
	c.pace.update(c.now, int64(c.p.ticks(c.p.ElectionTimeout)), st.GetCommit())
	ready := c.readyLearners(st)
	target := min(5, alive+len(ready))
	if target%2 == 0 {
		target--
	}
	switch {
	case voters < target && len(ready) > 0:
		slices.SortFunc(ready, func(a, b uint64) int { return cmp.Compare(st.Progress[b].Match, st.Progress[a].Match) })
		n := min(target-voters, len(ready))
		c.changeConf(raftpb.ConfChangeType_ConfChangeAddNode, ready[:n]...)
	case voters%2 == 0 && alive == voters && voters > target && len(live) > 0:
		slices.SortFunc(live, func(a, b uint64) int { return cmp.Compare(st.Progress[a].Match, st.Progress[b].Match) })
		c.changeConf(raftpb.ConfChangeType_ConfChangeAddLearnerNode, live[0])
	}
}

// readyLearners are the bonded writer learners caught up enough to vote,
// less those that asked to leave.
// A learner that has acknowledged nothing (Match 0) is never ready, even
// while the whole log is shorter than the slack of 16 entries: promoted
// blank, it holds no state and no configuration, so if the leader is lost
// in the joint step that promotes it (which commits on the outgoing voters
// alone), it can neither be elected nor force an epoch (§21.5).
func (c *groupCore) readyLearners(st raft.Status) []uint64 {
	var ready []uint64
	for _, l := range c.conf.GetLearners() {
		p, ok := c.byRaft[l]
		if !ok || !c.peers[p].up || c.peers[p].role != RoleWriter || c.isLeaver(l) {
			continue // a learner that asked to leave is no candidate
		}
		pr, ok := st.Progress[l]
		if ok && pr.Match > 0 && (pr.Match+16 >= st.GetCommit() || pr.State == tracker.StateReplicate && c.pace.prev > 0 && pr.Match >= c.pace.prev) {
			ready = append(ready, l)
		}
	}
	return ready
}

// leaderUp reports whether a leader is known and bonded (a learner keeps
// its last leader forever, since it never campaigns).
func (c *groupCore) leaderUp() bool {
	return c.lead != 0 && (c.lead == c.selfID || c.isUp(c.lead))
}

func (c *groupCore) isUp(id uint64) bool {
	p, ok := c.byRaft[id]
	return ok && c.peers[p].up
}

func (c *groupCore) changeConf(t raftpb.ConfChangeType, ids ...uint64) {
	cc := &raftpb.ConfChangeV2{}
	for _, id := range ids {
		cc.Changes = append(cc.Changes, &raftpb.ConfChangeSingle{Type: t.Enum(), NodeId: new(id)})
	}
	if err := c.rn.ProposeConfChange(cc); err != nil {
		c.log.Debug("conf change not proposed", "err", err)
		return
	}
	c.ccAt = c.now
	c.log.Info("membership change proposed", "change", t.String(), "nodes", ids)
}

// forgetGone drops the state of peers whose bond has been down for
// RemoveAfter and whom the group no longer needs (not in the
// configuration, not leaving, not the leader). Short-lived members (a
// command-line reader) left an entry on every node for good, and the
// loops over peers each heartbeat and tick grew with them (review probe:
// 30 entries after 30 readers came and went). A peer that bonds again
// starts afresh, as a new one does.
func (c *groupCore) forgetGone() {
	after := int64(c.p.ticks(c.p.RemoveAfter))
	for p, ps := range c.peers {
		if ps.up || c.now-ps.downAt < after || c.inConf(ps.id) || c.leavers[ps.id] || ps.id == c.lead {
			continue
		}
		delete(c.peers, p)
		delete(c.byRaft, ps.id)
	}
}

func (c *groupCore) onBond(ev bondEvent) {
	ps := c.peers[ev.p]
	if ps == nil {
		id := raftID(ev.p)
		if other, taken := c.byRaft[id]; id == c.selfID || (taken && other != ev.p) {
			// Two peers on one raft node id would receive each other's
			// messages: refuse the newcomer (a 2^-64 event, or an attack
			// on the id derivation), loudly.
			c.log.Warn("groups: peer ignored, its raft node id collides", "peer", ev.p, "raft_id", id, "err", errNoNode)
			return
		}
		ps = &peerState{id: id}
		c.peers[ev.p] = ps
		c.byRaft[ps.id] = ev.p
	}
	if ev.up {
		ps.up, ps.role = true, ev.role
		c.sendStatus(ev.p)
	} else {
		ps.up, ps.downAt = false, c.now
		ps.status = nil
		c.rn.ReportUnreachable(ps.id)
		if ps.id == c.lead && c.state == raft.StateFollower {
			c.leaderLost()
		}
	}
}

// leaderLost speeds up failover when the bond to the leader ends (a
// departure, or heartbeats missed): followers forget the leader, so they
// grant pre-votes at once instead of honouring its lease, and the first
// live voter (lowest raft id) campaigns without waiting for its election
// timeout. On the minority side of a partition the pre-vote fails and
// nothing changes.
func (c *groupCore) leaderLost() {
	_ = c.rn.ForgetLeader()
	if !slices.Contains(c.conf.GetVoters(), c.selfID) {
		return
	}
	for _, v := range c.conf.GetVoters() {
		if v < c.selfID && v != c.lead && c.isUp(v) {
			return
		}
	}
	_ = c.rn.Campaign()
}
