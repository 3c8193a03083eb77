package groups

import (
	"fmt"
	"math"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/mosaik-go/mosaik/groups/pb"
)

// recover opens the configured log store and resumes from what it holds:
// the state machine from the latest snapshot, the epoch from that
// snapshot or from the log's epoch entry, and raft from its hard state
// (committed entries after the snapshot are applied again by raft).
func (c *groupCore) recover() error {
	st, err := c.cfg.openStore(c.id, false)
	if err != nil {
		return fmt.Errorf("groups: opening the log store: %w", err)
	}
	c.store = st
	c.conf = &raftpb.ConfState{}
	c.freshSince = c.now
	snap, err := st.Snapshot()
	if err != nil {
		return fmt.Errorf("groups: reading the stored snapshot: %w", err)
	}
	var applied uint64
	if !raft.IsEmptySnap(snap) {
		cs, err := decodeSnapshotData(snap.GetData())
		if err == nil {
			err = c.sm.restore(cs.GetState())
		}
		if err != nil {
			return fmt.Errorf("groups: restoring the stored snapshot: %w", err)
		}
		c.epoch = cs.GetEpoch()
		applied = snap.GetMetadata().GetIndex()
		c.conf = proto.CloneOf(snap.GetMetadata().GetConfState())
	}
	if c.epoch == 0 {
		if c.epoch, err = c.scanEpoch(); err != nil {
			return err
		}
	}
	if err := c.loadEpochs(); err != nil {
		// Bookkeeping, not raft state: the node runs without it, as it
		// did before it ever left an epoch.
		c.log.Warn("could not read the epochs this node left from its data dir", "err", err)
	}
	if li, _ := st.LastIndex(); c.epoch == 0 && li > 0 {
		// Entries but no epoch: the node stopped between its first
		// entries (a bootstrap's configuration, or the first entries a
		// joining learner received) and the epoch entry, which comes before
		// any command. It names no cluster, and resumed it would lead its
		// one-voter configuration of epoch 0 and take the epoch of the
		// first cluster that talks to it: start fresh instead.
		c.log.Warn("the log store holds entries but no epoch (stopped right after a bootstrap or a join); starting fresh", "last_index", li)
		return c.resetRaft()
	}
	c.applied, c.snapIndex = applied, applied
	if err := c.resetRaftOn(applied); err != nil {
		return err
	}
	if li, _ := st.LastIndex(); li == 0 && applied == 0 {
		c.voteFenced = true // a new data dir, or one whose log was lost
	} else if li > 0 {
		c.resumed = true
		c.log.Info("resumed from the log store", "epoch", c.epoch, "snapshot", applied, "last_index", li)
	}
	return nil
}

// maybeResume shortens the first election of a writer restarted over its
// log. It decides once, after the entries the stored log commits are
// applied, so it reads the configuration the log commits (raft also
// refuses to campaign while configuration changes remain to apply):
//
//   - as its group's only voter it campaigns at once: no other node can
//     lead or vote, and waiting for the election timeout (2 to 4 s with
//     the default parameters) only kept the group offline;
//   - as one of several voters it skips all but two ticks of the
//     election timeout, as etcd does for a restarted member: when the
//     whole group restarts, a leader comes about an election timeout
//     sooner. A live leader is not disturbed: with PreVote and
//     CheckQuorum, members that heard from it within an election timeout
//     refuse the pre-vote. The ticks skipped are those of an eager node,
//     so a reluctant one still campaigns after the eager ones.
//
// It reports whether it campaigned.
func (c *groupCore) maybeResume() bool {
	if c.applied < c.rn.BasicStatus().HardState.GetCommit() {
		return false // the restart's first Readies apply them
	}
	c.resumed = false
	voters := c.conf.GetVoters()
	if c.cfg.role != RoleWriter || c.epoch == 0 || c.state != raft.StateFollower || !c.isVoter(c.selfID) {
		return false
	}
	if len(voters) == 1 && len(c.conf.GetVotersOutgoing()) == 0 {
		c.log.Info("the group's only voter: taking the lead at once")
		_ = c.rn.Campaign()
		return true
	}
	for range c.p.ticks(c.p.ElectionTimeout) - 2 {
		c.rn.Tick()
	}
	return false
}

// scanEpoch finds the epoch entry in the stored log (0 if none).
func (c *groupCore) scanEpoch() (uint64, error) {
	first, err := c.store.FirstIndex()
	if err != nil {
		return 0, err
	}
	last, err := c.store.LastIndex()
	if err != nil {
		return 0, err
	}
	for lo := first; lo <= last; lo += 256 {
		ents, err := c.store.Entries(lo, min(lo+256, last+1), math.MaxUint64)
		if err != nil {
			return 0, fmt.Errorf("groups: scanning the stored log: %w", err)
		}
		for _, e := range ents {
			if e.GetType() != raftpb.EntryType_EntryNormal || len(e.GetData()) == 0 {
				continue
			}
			var ce pb.CoreEntry
			if proto.Unmarshal(e.GetData(), &ce) == nil && ce.GetEpoch() != 0 {
				return ce.GetEpoch(), nil
			}
		}
	}
	return 0, nil
}

// proposeEpoch appends the epoch entry of a cluster this node just
// created (bootstrap or forced epoch), once it leads. A loss (the node
// deposed first) only means a restart must find the epoch in a snapshot.
func (c *groupCore) proposeEpoch() {
	data, _ := proto.Marshal(&pb.CoreEntry{Origin: c.selfID, Epoch: c.epoch})
	err := c.rn.Step(&raftpb.Message{Type: raftpb.MessageType_MsgProp.Enum(), From: new(c.selfID), Entries: []*raftpb.Entry{{Data: data}}})
	if err != nil {
		c.log.Warn("epoch entry not proposed", "err", err)
	}
}
