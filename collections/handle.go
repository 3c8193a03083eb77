package collections

import (
	"context"
	"errors"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/groups"
)

// handle holds what every collection handle offers, writers and readers
// alike. Its methods are safe for concurrent use.
type handle[S any] struct{ c *core[S] }

// Name returns the collection's name.
func (h handle[S]) Name() string { return h.c.name }

// GroupID returns the id of the collection's group.
func (h handle[S]) GroupID() catalog.ID { return h.c.g.ID() }

// IsWriter reports whether this handle is a writer replica.
func (h handle[S]) IsWriter() bool { return h.c.writer }

// Version returns the version of the local state: the index of the last
// command applied here.
func (h handle[S]) Version() Version { return Version(h.c.m.version.Load()) }

// Len returns the number of items in the local state.
func (h handle[S]) Len() int { return int(h.c.m.size.Load()) }

// Rejected returns how many committed commands were no-ops here because
// they were invalid when applied (a hand-crafted command, or one whose
// arguments do not decode). Every replica that applied the same commands
// counts the same ones; the count is not in snapshots, so a replica
// caught up by one counts from its anchor on.
func (h handle[S]) Rejected() uint64 { return h.c.m.rejected.Load() }

// Leader returns the group's leader, if one is known.
func (h handle[S]) Leader() (peer.ID, bool) { return h.c.g.Leader() }

// Sync waits until the local state holds every mutation committed before
// the call, and returns its version: reads after Sync are linearizable.
// It needs a reachable leader (else an error matching ErrOffline).
func (h handle[S]) Sync(ctx context.Context) (Version, error) {
	ctx, stop := h.c.bind(ctx)
	defer stop()
	v, _, err := h.c.g.Query(ctx, struct{}{}, groups.Strong)
	if err != nil {
		switch {
		case closedErr(ctx) != nil:
			return 0, ErrTerminated
		case errors.Is(err, groups.ErrTerminated):
			return 0, ErrTerminated
		case errors.Is(err, groups.ErrOffline):
			return 0, errors.Join(ErrOffline, err)
		}
		return 0, err
	}
	return v, nil
}

// ForceNewEpoch restarts the collection's group from this writer's state
// as a new epoch in which it is the only voter: for an operator who knows
// that the writers this node cannot reach are gone for good (a group that
// lost a majority of its voters commits nothing by itself, since a
// partition looks the same). See groups.Group.ForceNewEpoch, whose
// refusals (on a reader, while a leader is known, when a bonded writer
// holds a more up-to-date log) match groups.ErrNotForced.
func (h handle[S]) ForceNewEpoch(ctx context.Context) error {
	err := h.c.g.ForceNewEpoch(ctx)
	if errors.Is(err, groups.ErrTerminated) {
		return ErrTerminated
	}
	return err
}

// When returns the collection's conditions.
func (h handle[S]) When() When {
	return When{c: h.c.g.When(), m: h.c.m.watchVersion, closed: h.c.closed}
}

// Close leaves the collection on this node: it closes the collection's
// group handle (groups.Group.Close), so when it is the last, Close waits
// for the group's goroutine and, on a voter, at most the group's
// Params.LeaveTimeout for its graceful leave. Idempotent.
func (h handle[S]) Close() error { return h.c.close() }

// When waits for conditions on a collection. Every method blocks until
// the condition holds, ctx ends or the collection is closed
// (ErrTerminated).
type When struct {
	c      groups.When
	m      func() (Version, <-chan struct{})
	closed <-chan struct{} // the handle's: closed by its Close
}

// Online waits until a leader is known, so mutations can commit.
func (w When) Online(ctx context.Context) error { return w.group(ctx, w.c.Online) }

// Offline waits until no leader is known.
func (w When) Offline(ctx context.Context) error { return w.group(ctx, w.c.Offline) }

// group runs a wait of the group's, which ends with the group (another
// handle of the collection on the node may keep it running), so that it
// also ends when this handle closes.
func (w When) group(ctx context.Context, wait func(context.Context) error) error {
	select {
	case <-w.closed:
		return ErrTerminated
	default:
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { // ends when the wait does (cancel), at the latest
		select {
		case <-w.closed:
			cancel()
		case <-cctx.Done():
		}
	}()
	err := wait(cctx)
	if err != nil && ctx.Err() == nil {
		select {
		case <-w.closed:
			return ErrTerminated
		default:
		}
	}
	return termErr(err)
}

// Reaches waits until the local state is at version v or later.
func (w When) Reaches(ctx context.Context, v Version) error {
	for {
		cur, ch := w.m()
		if cur >= v {
			return nil
		}
		select {
		case <-ch:
		case <-w.c.Terminated():
			return ErrTerminated
		case <-w.closed:
			return ErrTerminated
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Updated waits for the next change of the local state (a mutation
// applied, or a snapshot installed) after the call and returns the new
// version. A change that lands between a read and this call is not seen;
// to wait for any change after a version v you read, without that race,
// use Reaches(ctx, v+1).
func (w When) Updated(ctx context.Context) (Version, error) {
	_, ch := w.m()
	select {
	case <-ch:
		v, _ := w.m()
		return v, nil
	case <-w.c.Terminated():
		return 0, ErrTerminated
	case <-w.closed:
		return 0, ErrTerminated
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

func termErr(err error) error {
	if errors.Is(err, groups.ErrTerminated) {
		return ErrTerminated
	}
	return err
}
