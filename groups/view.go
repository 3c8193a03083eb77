package groups

import (
	"context"
	"slices"
	"sync"

	"github.com/libp2p/go-libp2p/core/peer"
	"go.etcd.io/raft/v3"
)

// Position is a place in the log: the term and index of its last entry.
type Position struct {
	Term  uint64
	Index uint64
}

// view is what the group goroutine publishes for handles and When.
type view struct {
	leader     peer.ID
	isLeader   bool
	online     bool
	term       uint64
	committed  uint64 // applied here (everything applied is committed)
	log        Position
	bonds      []peer.ID
	discards   uint64 // number of discard events
	discarded  uint64 // entries discarded in total
	terminated bool
	err        error

	// For Service.Status only: changes to these alone do not wake When
	// waiters.
	raftRole RaftRole
	commit   uint64 // raft's commit index as this node knows it
	epoch    uint64
	voters   int
	learners int
	snapshot uint64
}

// viewState is the published view. Lock order: viewState.mu is a leaf; no
// other lock is taken while holding it.
type viewState struct {
	mu        sync.Mutex
	v         view
	changed   chan struct{} // closed and replaced on every change
	bondsChan chan struct{} // closed and replaced when the bond set changes
}

func (s *viewState) init() {
	s.changed = make(chan struct{})
	s.bondsChan = make(chan struct{})
}

func (s *viewState) get() (view, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.v, s.changed
}

func (s *viewState) set(v view) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v.discards, v.discarded = s.v.discards, s.v.discarded
	v.terminated, v.err = s.v.terminated, s.v.err
	bondsChanged := !slices.Equal(v.bonds, s.v.bonds)
	if bondsChanged {
		close(s.bondsChan)
		s.bondsChan = make(chan struct{})
	} else {
		v.bonds = s.v.bonds
	}
	notify := bondsChanged || v.leader != s.v.leader || v.isLeader != s.v.isLeader || v.online != s.v.online ||
		v.term != s.v.term || v.committed != s.v.committed || v.log != s.v.log
	s.v = v
	if notify {
		close(s.changed)
		s.changed = make(chan struct{})
	}
}

func (s *viewState) discard(n uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.v.discards++
	s.v.discarded += n
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *viewState) terminate(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.v.terminated {
		return
	}
	s.v.terminated, s.v.err = true, err
	s.v.online, s.v.isLeader, s.v.leader = false, false, ""
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *viewState) err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.v.err
}

func (s *viewState) bonds() ([]peer.ID, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.v.bonds), s.bondsChan
}

// publish copies the goroutine's state into the view.
func (c *groupCore) publish() {
	t, i := c.lastPos()
	hs := c.rn.BasicStatus().HardState
	v := view{
		// A learner keeps its last leader forever; report none once the
		// bond to it is down.
		leader:    c.leaderPeerIfUp(),
		isLeader:  c.state == raft.StateLeader,
		online:    c.leaderUp() && c.epoch != 0,
		term:      hs.GetTerm(),
		committed: c.applied,
		log:       Position{Term: t, Index: i},
		raftRole:  c.raftRole(),
		commit:    hs.GetCommit(),
		epoch:     c.epoch,
		voters:    len(c.conf.GetVoters()),
		learners:  len(c.conf.GetLearners()) + len(c.conf.GetLearnersNext()),
		snapshot:  c.snapIndex,
	}
	for p, ps := range c.peers {
		if ps.up {
			v.bonds = append(v.bonds, p)
		}
	}
	slices.Sort(v.bonds)
	c.view.set(v)
}

func (c *groupCore) leaderPeerIfUp() peer.ID {
	if !c.leaderUp() {
		return ""
	}
	return c.leaderPeer()
}

// When waits for conditions on a group. Every method blocks until the
// condition holds (at once if it already does), ctx ends (ctx.Err()) or
// the group terminates (ErrTerminated). Safe for concurrent use.
type When struct{ c *groupCore }

func (w When) wait(ctx context.Context, cond func(v view) bool) (view, error) {
	for {
		v, ch := w.c.view.get()
		if cond(v) {
			return v, nil
		}
		if v.terminated {
			return v, w.c.termErr()
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return v, ctx.Err()
		}
	}
}

// LeaderElected returns the leader as soon as one is known.
func (w When) LeaderElected(ctx context.Context) (peer.ID, error) {
	v, err := w.wait(ctx, func(v view) bool { return v.leader != "" })
	return v.leader, err
}

// LeaderChanged returns the next leader other than the one known now
// (transitions to "no leader" are ignored; never immediate).
func (w When) LeaderChanged(ctx context.Context) (peer.ID, error) {
	now, _ := w.c.view.get()
	v, err := w.wait(ctx, func(v view) bool { return v.leader != "" && v.leader != now.leader })
	return v.leader, err
}

// LeaderOtherThan waits until a leader other than p is known, and returns
// it (at once if one is known already). Unlike LeaderChanged it does not
// depend on the leader known at call time: "wait for a new leader after
// closing the old one" is LeaderOtherThan(ctx, old).
func (w When) LeaderOtherThan(ctx context.Context, p peer.ID) (peer.ID, error) {
	v, err := w.wait(ctx, func(v view) bool { return v.leader != "" && v.leader != p })
	return v.leader, err
}

// LeaderIs waits until p is the leader.
func (w When) LeaderIs(ctx context.Context, p peer.ID) error {
	_, err := w.wait(ctx, func(v view) bool { return v.leader == p })
	return err
}

// IsLeader waits until this node is the leader.
func (w When) IsLeader(ctx context.Context) error {
	_, err := w.wait(ctx, func(v view) bool { return v.isLeader })
	return err
}

// Online waits until this node knows a leader (or is it).
func (w When) Online(ctx context.Context) error {
	_, err := w.wait(ctx, func(v view) bool { return v.online })
	return err
}

// Offline waits until this node knows no leader.
func (w When) Offline(ctx context.Context) error {
	_, err := w.wait(ctx, func(v view) bool { return !v.online })
	return err
}

// Committed waits until the locally applied committed index reaches i.
func (w When) Committed(ctx context.Context, i uint64) error {
	_, err := w.wait(ctx, func(v view) bool { return v.committed >= i })
	return err
}

// LogAdvances waits until the local log position moves past its current
// value, and returns the new position.
func (w When) LogAdvances(ctx context.Context) (Position, error) {
	now, _ := w.c.view.get()
	v, err := w.wait(ctx, func(v view) bool {
		return v.log.Term > now.log.Term || (v.log.Term == now.log.Term && v.log.Index > now.log.Index)
	})
	return v.log, err
}

// Discarded waits for the next time this node discards its log and state
// because a rival cluster won (or a new epoch was forced), and returns the
// number of entries discarded then.
func (w When) Discarded(ctx context.Context) (uint64, error) {
	now, _ := w.c.view.get()
	v, err := w.wait(ctx, func(v view) bool { return v.discards > now.discards })
	return v.discarded - now.discarded, err
}

// Terminated returns a channel closed when the group has ended on this
// node (closed by its last handle, or its state machine panicked).
func (w When) Terminated() <-chan struct{} { return w.c.done }
