package groups

import (
	"slices"

	"github.com/libp2p/go-libp2p/core/peer"
	"go.etcd.io/raft/v3"

	"github.com/mosaik-go/mosaik/catalog"
)

// RaftRole is this node's place in a group's raft cluster.
type RaftRole uint8

const (
	// RaftNonMember: not in the raft configuration. A fresh node waiting
	// to bootstrap or to be added, or one that lost a merge and waits to
	// be added to the winning cluster.
	RaftNonMember RaftRole = iota
	// RaftFollower is a voter that follows a leader (or waits for one).
	RaftFollower
	// RaftLearner replicates and applies but does not vote: every reader,
	// and a writer until the leader promotes it.
	RaftLearner
	// RaftPreCandidate is a voter asking whether it could win an election
	// (PreVote) without raising the term; on the minority side of a
	// partition a voter stays here.
	RaftPreCandidate
	// RaftCandidate is a voter that raised the term and asks for votes.
	RaftCandidate
	// RaftLeader leads the cluster.
	RaftLeader
)

func (r RaftRole) String() string {
	switch r {
	case RaftNonMember:
		return "non-member"
	case RaftFollower:
		return "follower"
	case RaftLearner:
		return "learner"
	case RaftPreCandidate:
		return "pre-candidate"
	case RaftCandidate:
		return "candidate"
	case RaftLeader:
		return "leader"
	default:
		return "unknown"
	}
}

// Status is a snapshot of one group joined on this node, for status pages
// and diagnostics. It is a plain value that no longer changes once
// returned; fields from the core and from the bond layer are read a few
// microseconds apart, so the two may disagree around a bond change.
type Status struct {
	ID   catalog.ID
	Role Role     // this node's role (Join's WithRole)
	Raft RaftRole // this node's raft state
	// Leader is the leader this node knows and is bonded to ("" when
	// none); Online is Leader != "" for a node in a cluster.
	Leader peer.ID
	Online bool
	Term   uint64
	// CommitIndex is raft's commit index as this node knows it;
	// AppliedIndex is what its state machine has applied (Group.Committed).
	CommitIndex  uint64
	AppliedIndex uint64
	// SnapshotIndex is the index of the last snapshot this node stored
	// or installed (0: none); it serves that snapshot to joining members.
	SnapshotIndex uint64
	Log           Position // the last entry of the local log, committed or not
	// Voters and Learners count the current raft configuration (the
	// incoming one during a joint change), as this node knows it.
	Voters, Learners int
	// Epoch names the cluster this node belongs to: each bootstrap or
	// forced restart draws a random one; 0 while the node belongs to none.
	Epoch uint64
	// Peers are the peers the group's core counts as bonded (Group.Bonds).
	Peers []peer.ID
	// Bonds are the bond layer's bonds of this group, in peer order (empty
	// when the service's bond layer is not libp2p, as in the core's
	// tests).
	Bonds []BondInfo
	// Discarded counts entries this node discarded in lost merges since it
	// joined (see When.Discarded).
	Discarded uint64
	// Ended is set once the group has ended on this node on its own (a
	// state machine panic, Err says why) while handles remain open.
	Ended bool
	Err   error
	// Description is what the group's state machine says of itself, when
	// it implements Describer (nil otherwise).
	Description *Description
}

// Describer is an optional interface of a StateMachine: Service.Status
// includes the Description of a machine that implements it. Unlike the
// StateMachine methods, Describe is called from any goroutine,
// concurrently with Apply: it must be safe for that, fast and
// non-blocking (read a value the machine published).
type Describer interface {
	Describe() Description
}

// Description is a state machine's account of itself for status pages.
type Description struct {
	// Kind names the machine's type (a collection's "map", "vec", ...);
	// Name the instance (a collection's name).
	Kind, Name string
	// Items is the number of items in the state, Version the log index
	// the described state is at.
	Items   int
	Version uint64
}

// Status returns one Status per group joined on this node, in group id
// order. It does not block on the groups: it reads what each group's
// goroutine last published. Safe for concurrent use.
func (s *Service) Status() []Status {
	type joinedGroup struct {
		id   catalog.ID
		role Role
		c    *groupCore
		sm   any
	}
	cs := &s.core
	cs.mu.Lock()
	js := make([]joinedGroup, 0, len(cs.groups))
	for id, j := range cs.groups {
		js = append(js, joinedGroup{id, j.role, j.c, j.sm})
	}
	cs.mu.Unlock()
	slices.SortFunc(js, func(a, b joinedGroup) int { return a.id.Compare(b.id) })

	// Bond locks are taken after the registry lock is released: the
	// snapshot needs no consistency between the two.
	bonds := map[catalog.ID][]BondInfo{}
	for _, gb := range s.BondStatus().Groups {
		bonds[gb.Group] = gb.Bonds
	}
	out := make([]Status, 0, len(js))
	for _, j := range js {
		v, _ := j.c.view.get()
		var desc *Description
		if d, ok := j.sm.(Describer); ok {
			dd := d.Describe()
			desc = &dd
		}
		out = append(out, Status{
			ID: j.id, Role: j.role, Raft: v.raftRole,
			Leader: v.leader, Online: v.online, Term: v.term,
			CommitIndex: v.commit, AppliedIndex: v.committed, SnapshotIndex: v.snapshot, Log: v.log,
			Voters: v.voters, Learners: v.learners, Epoch: v.epoch,
			Peers: slices.Clone(v.bonds), Bonds: bonds[j.id],
			Discarded: v.discarded, Ended: v.terminated, Err: v.err,
			Description: desc,
		})
	}
	return out
}

// raftRole is this node's RaftRole; called on the group goroutine.
func (c *groupCore) raftRole() RaftRole {
	switch c.state {
	case raft.StateLeader:
		return RaftLeader
	case raft.StateCandidate:
		return RaftCandidate
	case raft.StatePreCandidate:
		return RaftPreCandidate
	}
	switch {
	case slices.Contains(c.conf.GetVoters(), c.selfID) || slices.Contains(c.conf.GetVotersOutgoing(), c.selfID):
		return RaftFollower
	case slices.Contains(c.conf.GetLearners(), c.selfID) || slices.Contains(c.conf.GetLearnersNext(), c.selfID):
		return RaftLearner
	}
	return RaftNonMember
}
