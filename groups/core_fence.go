package groups

import "go.etcd.io/raft/v3/raftpb"

// Vote fence. A node's raft id is derived from its peer ID, so a node that
// lost its log (a memory store across a restart, a removed data dir, a
// wipe) comes back under the id of a voter that may have acknowledged
// entries it no longer holds. Raft's safety rests on voters keeping what
// they acknowledged: such a node granting its vote lets a candidate
// lacking a committed entry win. In a group of three, a lagging voter and
// the restarted one elect the laggard, and an acknowledged write is lost
// (while the old leader, which holds it, is merely cut off).
//
// So a node whose log started empty grants no vote (pre-vote or vote) and
// seeks none (its own requests are not sent; with PreVote it never raises
// its term) until it has committed an entry of its leader's current term.
// Then its log holds every entry committed before it came back: the
// leader's log holds all of them (leader completeness), an entry of the
// leader's term at index i means the two logs match up to i (log
// matching), and everything committed before this node came back lies at
// or below such an entry of a later term, or is that leader's own and
// below its commit index.
//
// The fence narrows the hole; it does not close it. The node's term and
// vote are lost too, and its acknowledgements of appends still count: a
// deposed leader that has not yet stepped down (five voters, the node
// restarted within an election timeout of the new leader's election) can
// lift the fence with its own term's commit, or count the node's fresh
// acknowledgements towards a quorum the node already gave, in its last
// life, to the newer leader. Closing it takes a raft id per incarnation
// for stores that lose their log, so that a restarted node joins as the
// new learner it is (not done: the id is in the wire format, §21.2).
//
// A group that bootstraps or is forced is unaffected: a lone voter's
// campaign needs no message, and the entry it then commits in its term
// lifts its fence. The price is liveness where safety cannot be known:
// when the old leader is gone and the survivors are a laggard and a node
// that came back empty, no leader is elected until the leader returns, or
// the laggard forces a new epoch from its log once the leader was gone,
// and the other blank, for RemoveAfter (halfGone counts a bonded voter
// that stays blank as gone). A forced epoch keeps every entry the laggard
// holds, and a returning old leader discards its epoch and rejoins, so
// the replicas agree; what only the gone leader held is lost, as in any
// forced epoch.

// fenced reports whether a raft message of type t must be neither taken
// nor sent by this node now: a vote or pre-vote request, or a leadership
// transfer, while the vote fence holds.
func (c *groupCore) fenced(t raftpb.MessageType) bool {
	if !c.voteFenced {
		return false
	}
	switch t {
	case raftpb.MessageType_MsgVote, raftpb.MessageType_MsgPreVote, raftpb.MessageType_MsgTimeoutNow:
		return true
	}
	return false
}

// maybeUnfence lifts the vote fence once this node has committed an entry
// of its current term (see above).
func (c *groupCore) maybeUnfence() {
	if !c.voteFenced {
		return
	}
	hs := c.rn.BasicStatus().HardState
	if hs.GetCommit() == 0 {
		return
	}
	if t, err := c.store.Term(hs.GetCommit()); err == nil && t == hs.GetTerm() {
		c.voteFenced = false
		c.log.Debug("vote fence lifted: the log holds everything committed", "commit", hs.GetCommit(), "term", t)
	}
}
