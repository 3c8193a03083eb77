package groups

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/catalog"
)

// Consistency of a query.
type Consistency uint8

const (
	// Weak reads this node's applied state: fast, possibly stale, works
	// offline.
	Weak Consistency = iota
	// Strong is linearizable: the leader confirms its leadership with a
	// quorum (raft ReadIndex), this node waits until it has applied up to
	// that index, then reads locally.
	Strong
)

// IndexRange is an inclusive range of log indexes.
type IndexRange struct{ First, Last uint64 }

// Bonds is the set of peers this node is bonded with in the group, and a
// channel closed at the next change of that set.
type Bonds struct {
	Peers   []peer.ID
	Changed <-chan struct{}
}

// Group is a handle to a joined group. Safe for concurrent use; calls from
// one goroutine enter the group in order. Close it when done: the group
// ends on this node when its last handle closes.
type Group[C, Q, R any] struct {
	s     *Service
	id    catalog.ID
	j     *joined
	c     *groupCore
	sm    StateMachine[C, Q, R]
	codec Codec[C]

	closeOnce sync.Once
	closed    chan struct{}
}

func newHandle[C, Q, R any](s *Service, id catalog.ID, j *joined) *Group[C, Q, R] {
	return &Group[C, Q, R]{
		s: s, id: id, j: j, c: j.c,
		sm: j.sm.(StateMachine[C, Q, R]), codec: j.codec.(Codec[C]),
		closed: make(chan struct{}),
	}
}

// ID is the group id.
func (g *Group[C, Q, R]) ID() catalog.ID { return g.id }

// StateMachine is the state machine the group applies its log to on this
// node: the one given to the Join that started it, which a later Join of
// the same id (another handle to the running group) does not replace.
func (g *Group[C, Q, R]) StateMachine() StateMachine[C, Q, R] { return g.sm }

// Leader is the leader this node knows, if any.
func (g *Group[C, Q, R]) Leader() (peer.ID, bool) {
	v, _ := g.c.view.get()
	return v.leader, v.leader != ""
}

// IsLeader reports whether this node leads the group.
func (g *Group[C, Q, R]) IsLeader() bool {
	v, _ := g.c.view.get()
	return v.isLeader
}

// Bonds returns the peers bonded now and a channel closed when that set
// changes.
func (g *Group[C, Q, R]) Bonds() Bonds {
	p, ch := g.c.view.bonds()
	return Bonds{Peers: p, Changed: ch}
}

// Committed is the last committed index applied on this node.
func (g *Group[C, Q, R]) Committed() uint64 {
	v, _ := g.c.view.get()
	return v.committed
}

// LogPosition is the last entry of the local log (possibly uncommitted).
func (g *Group[C, Q, R]) LogPosition() Position {
	v, _ := g.c.view.get()
	return v.log
}

// When returns the group's condition waiters.
func (g *Group[C, Q, R]) When() When { return When{g.c} }

func (g *Group[C, Q, R]) encode(cmds []C) ([][]byte, error) {
	if len(cmds) == 0 {
		return nil, ErrNoCommands
	}
	raw := make([][]byte, len(cmds))
	size := 0
	for i, cmd := range cmds {
		b, err := g.codec.Encode(cmd)
		if err != nil {
			return nil, fmt.Errorf("%w: command %d: %w", ErrEncoding, i, err)
		}
		raw[i] = b
		size += len(b) + commandOverhead
	}
	if max := g.c.cfg.maxBatch; size > max {
		return nil, fmt.Errorf("%w: %d command(s) take %d bytes with framing, over the %d one call may send (the bond frame limit)", ErrTooLarge, len(cmds), size, max)
	}
	return raw, nil
}

// MaxBatchBytes is the most one Feed or Execute call may send: its encoded
// commands plus a little framing per command must fit in one bond frame
// (a follower forwards a call to its leader in one frame, and a leader
// replicates a command in one append), so that no call can break the
// group's bonds. Larger calls fail with ErrTooLarge.
func (g *Group[C, Q, R]) MaxBatchBytes() int { return g.c.cfg.maxBatch }

// Per-command framing counted against batchLimit: a command's tag and
// length prefix in a forward frame take at most 6 bytes. An append of one
// entry adds about 60 bytes of entry headers plus the message's own, well
// inside batchLimit's headroom; an append of many stays within raft's
// MaxSizePerMsg (maxSizePerMsg), at most half the limit.
const commandOverhead = 16

// batchLimit is the batch bound of a bond frame limit: the frame less the
// headers of a forward or append message around the commands.
func batchLimit(frame int) int { return frame - min(4<<10, frame/8) }

func (g *Group[C, Q, R]) live() error {
	select {
	case <-g.closed:
		return ErrTerminated
	default:
		return nil
	}
}

// typed turns the core's offline error into *OfflineError[C].
func (g *Group[C, Q, R]) typed(err error, cmds []C) error {
	var o *offline
	if errors.As(err, &o) {
		return &OfflineError[C]{Commands: cmds, MayApply: o.mayApply, Reason: o.reason}
	}
	return err
}

type callResult struct {
	first uint64
	err   error
}

func (g *Group[C, Q, R]) await(ctx context.Context, ch <-chan callResult) (callResult, error) {
	select {
	case r := <-ch:
		return r, r.err
	case <-g.c.done:
		select {
		case r := <-ch:
			return r, r.err
		default:
		}
		return callResult{}, g.c.termErr()
	case <-ctx.Done():
		return callResult{}, ctx.Err()
	}
}

// Feed appends cmd to the log and returns its index once assigned (the
// leader appended it), without waiting for commit.
func (g *Group[C, Q, R]) Feed(ctx context.Context, cmd C) (uint64, error) {
	r, err := g.FeedMany(ctx, []C{cmd})
	return r.First, err
}

// FeedMany appends cmds as one contiguous run and returns its indexes.
// Errors: *OfflineError (no leader, forward timeout: the commands are
// handed back; MayApply says if they may still commit), ErrNoCommands,
// ErrEncoding, ErrTooLarge, ErrTerminated, or ctx's error (outcome unknown).
func (g *Group[C, Q, R]) FeedMany(ctx context.Context, cmds []C) (IndexRange, error) {
	if err := g.live(); err != nil {
		return IndexRange{}, err
	}
	raw, err := g.encode(cmds)
	if err != nil {
		return IndexRange{}, err
	}
	ch := make(chan callResult, 1)
	if err := g.c.do(ctx, func() {
		g.c.feed(raw, func(first uint64, err error) { ch <- callResult{first, err} })
	}); err != nil {
		return IndexRange{}, err
	}
	r, err := g.await(ctx, ch)
	if err != nil {
		return IndexRange{}, g.typed(err, cmds)
	}
	return IndexRange{r.first, r.first + uint64(len(cmds)) - 1}, nil
}

// Execute appends cmd and waits until it is committed and applied on this
// node, at the index it was given. If that index ends up holding another
// entry (its leader was deposed before commit) it fails with
// ErrNotApplied; it never reports success for a command that was not
// applied.
func (g *Group[C, Q, R]) Execute(ctx context.Context, cmd C) (uint64, error) {
	r, err := g.ExecuteMany(ctx, []C{cmd})
	return r.Last, err
}

// ExecuteMany is Execute for a contiguous run of commands; it succeeds
// only if all of them were applied. Errors are FeedMany's plus
// ErrNotApplied; an *OfflineError from a deposed leader has MayApply set.
func (g *Group[C, Q, R]) ExecuteMany(ctx context.Context, cmds []C) (IndexRange, error) {
	if err := g.live(); err != nil {
		return IndexRange{}, err
	}
	raw, err := g.encode(cmds)
	if err != nil {
		return IndexRange{}, err
	}
	ch := make(chan callResult, 1)
	if err := g.c.do(ctx, func() {
		var first uint64
		g.c.execute(raw, func(f uint64) { first = f }, func(err error) { ch <- callResult{first, err} })
	}); err != nil {
		return IndexRange{}, err
	}
	r, err := g.await(ctx, ch)
	if err != nil {
		return IndexRange{}, g.typed(err, cmds)
	}
	return IndexRange{r.first, r.first + uint64(len(cmds)) - 1}, nil
}

// Query answers q from the state machine and returns the applied index the
// answer reflects. Weak reads the local state; Strong is linearizable and
// fails with ErrOffline when no leader confirms in Params.QueryTimeout, or
// when, past that timeout, this node knows no leader while it has yet to
// apply up to the confirmed index (it was cut off).
func (g *Group[C, Q, R]) Query(ctx context.Context, q Q, cons Consistency) (R, uint64, error) {
	var zero R
	if err := g.live(); err != nil {
		return zero, 0, err
	}
	type res struct {
		r   R
		at  uint64
		err error
	}
	ch := make(chan res, 1)
	run := func(at uint64) {
		defer func() {
			if p := recover(); p != nil {
				ch <- res{err: fmt.Errorf("groups: query panicked: %v", p)}
			}
		}()
		ch <- res{r: g.sm.Query(q), at: at}
	}
	err := g.c.do(ctx, func() {
		if cons == Weak {
			run(g.c.applied)
			return
		}
		g.c.strongRead(func(at uint64, err error) {
			if err != nil {
				ch <- res{err: err}
				return
			}
			run(at)
		})
	})
	if err != nil {
		return zero, 0, err
	}
	select {
	case r := <-ch:
		return r.r, r.at, r.err
	case <-g.c.done:
		return zero, 0, g.c.termErr()
	case <-ctx.Done():
		return zero, 0, ctx.Err()
	}
}

// ForceNewEpoch restarts the group from this node's log as a new epoch in
// which this node is the only voter, for an operator who knows that the
// voters this node cannot reach are gone for good: a cluster that lost a
// majority of its voters (two of three crashed, or the one voter of a
// young cluster) commits nothing again, and never forces a new epoch by
// itself, since a partition looks the same from inside (PROTOCOL.md
// §21.5). The other members of the epoch, on hearing of the new one,
// discard their state and rejoin (When().Discarded); if the voters this
// node could not reach were alive after all, the two clusters meet when
// the partition heals and the one with the lower log discards its writes,
// reported. Pending calls on this node fail with an OfflineError whose
// MayApply is set.
//
// It refuses, with an error wrapping ErrNotForced, on a reader, when
// this node or a bonded member of its epoch knows a leader, or when a
// bonded writer holds a more up-to-date log (force on that node instead:
// forcing here would discard its tail). It returns once the new epoch is
// started; When().IsLeader then reports its leadership.
func (g *Group[C, Q, R]) ForceNewEpoch(ctx context.Context) error {
	if err := g.live(); err != nil {
		return err
	}
	ch := make(chan error, 1)
	if err := g.c.do(ctx, func() { ch <- g.c.forceNow() }); err != nil {
		return err
	}
	select {
	case err := <-ch:
		return err
	case <-g.c.done:
		return g.c.termErr()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close releases this handle; the group ends on this node (bonds closed,
// the group withdrawn from the catalog entry) when the last handle
// closes. Idempotent; when it is the last it waits for the group's
// goroutine, and first, if this node is a voter, for its graceful leave
// (at most Params.LeaveTimeout; see the package doc).
func (g *Group[C, Q, R]) Close() error {
	var err error
	g.closeOnce.Do(func() {
		close(g.closed)
		err = g.s.core.release(g.id, g.j)
	})
	return err
}

// typedMachine adapts a StateMachine[C, Q, R] to the core's byte view.
type typedMachine[C, Q, R any] struct {
	sm    StateMachine[C, Q, R]
	codec Codec[C]
	log   *slog.Logger
	// last is the size of the last snapshot, to size the next one's
	// buffer at once instead of doubling it (and copying) as it fills;
	// lastItems the item count of its state, when the machine is a
	// Describer (0 if not).
	last, lastItems atomic.Int64
}

// sizeHint is the buffer size for the next snapshot, of a state of items
// items (sizeHint's second result, 0 when the machine is no Describer):
// the last snapshot's size, scaled by how the item count grew since (a
// state grown by a quarter since the last snapshot would otherwise
// double a buffer of megabytes and copy it), and an eighth more.
func (t *typedMachine[C, Q, R]) sizeHint() (size, items int) {
	last := t.last.Load()
	if d, ok := t.sm.(Describer); ok {
		items = d.Describe().Items
		if li := t.lastItems.Load(); li > 0 && int64(items) > li {
			last = min(last*int64(items)/li, snapshotSizeHintCap)
		}
	}
	return int(last + last/8 + 512), items
}

// snapshotSizeHintCap bounds what sizeHint allocates ahead (the fetch's
// default MaxTotal): past it the buffer grows as written.
const snapshotSizeHintCap = 1 << 30

// wrote records the size and item count of a snapshot just written.
func (t *typedMachine[C, Q, R]) wrote(size, items int) {
	t.last.Store(int64(size))
	t.lastItems.Store(int64(items))
}

// apply decodes a run; a command that does not decode (the same on every
// member) is skipped with a warning, splitting the run around it.
func (t *typedMachine[C, Q, R]) apply(actx ApplyContext, raw [][]byte) {
	cmds := make([]C, 0, len(raw))
	start := actx.FirstIndex
	for i, b := range raw {
		v, err := t.codec.Decode(b)
		if err != nil {
			t.log.Warn("skipping a command that does not decode", "index", actx.FirstIndex+uint64(i), "err", err)
			if len(cmds) > 0 {
				t.sm.Apply(ApplyContext{Group: actx.Group, Term: actx.Term, FirstIndex: start}, cmds)
				cmds = cmds[:0:0]
			}
			start = actx.FirstIndex + uint64(i) + 1
			continue
		}
		cmds = append(cmds, v)
	}
	if len(cmds) > 0 {
		t.sm.Apply(ApplyContext{Group: actx.Group, Term: actx.Term, FirstIndex: start}, cmds)
	}
}

func (t *typedMachine[C, Q, R]) snapshot() ([]byte, error) {
	b, err := t.snapshotAfter(0)
	return b, err
}

// snapshotAfter returns room zero bytes followed by the state machine's
// snapshot, so that a caller can put a header in front of the state
// without copying it.
func (t *typedMachine[C, Q, R]) snapshotAfter(room int) (_ []byte, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("groups: state machine Snapshot panicked: %v", p)
		}
	}()
	size, items := t.sizeHint()
	b := bytes.NewBuffer(make([]byte, room, room+size))
	if err := t.sm.Snapshot(b); err != nil {
		return nil, err
	}
	t.wrote(b.Len()-room, items)
	return b.Bytes(), nil
}

func (t *typedMachine[C, Q, R]) capture(room int) func() ([]byte, error) {
	sc, ok := t.sm.(SnapshotCapturer)
	if !ok {
		return nil
	}
	write := sc.CaptureSnapshot()
	size, items := t.sizeHint()
	return func() (_ []byte, err error) {
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("groups: state machine snapshot writer panicked: %v", p)
			}
		}()
		b := bytes.NewBuffer(make([]byte, room, room+size))
		if err := write(b); err != nil {
			return nil, err
		}
		t.wrote(b.Len()-room, items) // sizes the next buffer
		return b.Bytes(), nil
	}
}

func (t *typedMachine[C, Q, R]) stage() (st RestoreStage) {
	sr, ok := t.sm.(StagedRestorer)
	if !ok {
		return nil
	}
	defer func() {
		if p := recover(); p != nil {
			st = nil
		}
	}()
	if st = sr.StageRestore(); st == nil {
		return nil
	}
	return safeStage{st}
}

// safeStage turns a stage's panics into errors, as restore does for
// Restore's.
type safeStage struct{ st RestoreStage }

func (s safeStage) Feed(prefix []byte) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("groups: state machine RestoreStage.Feed panicked: %v", p)
		}
	}()
	return s.st.Feed(prefix)
}

func (s safeStage) Commit(state []byte) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("groups: state machine RestoreStage.Commit panicked: %v", p)
		}
	}()
	return s.st.Commit(state)
}

func (t *typedMachine[C, Q, R]) restore(data []byte) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("groups: state machine Restore panicked: %v", p)
		}
	}()
	return t.sm.Restore(newSnapshotReader(data))
}
