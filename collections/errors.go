package collections

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/mosaik-go/mosaik/groups"
)

var (
	// ErrOffline is matched by a *MutationError when no leader could be
	// reached in time. It wraps groups.ErrOffline.
	ErrOffline = fmt.Errorf("collections: offline: %w", groups.ErrOffline)
	// ErrEncoding is matched by a *MutationError when an argument does
	// not encode.
	ErrEncoding = errors.New("collections: encoding")
	// ErrTerminated is returned once the collection is closed on this
	// node (or its group ended). It wraps groups.ErrTerminated, and so
	// mosaik.ErrClosed.
	ErrTerminated = fmt.Errorf("collections: terminated: %w", groups.ErrTerminated)
	// ErrOutOfRange is matched by a *MutationError for an index past the
	// end of a Vec, refused before anything is sent.
	ErrOutOfRange = errors.New("collections: index out of range")
	// ErrNotApplied: the command lost its log slot to another entry (its
	// leader was deposed before it committed); it was not applied.
	ErrNotApplied = fmt.Errorf("collections: not applied: %w", groups.ErrNotApplied)
	// ErrTooLarge is matched by a *MutationError whose command (a value,
	// or an Extend's whole batch) is larger than one call may send (the
	// group's bond frame limit, 4 MiB less framing by default), refused
	// before anything is sent: split the batch, or store large values
	// elsewhere and replicate a reference. It wraps groups.ErrTooLarge.
	ErrTooLarge = fmt.Errorf("collections: too large: %w", groups.ErrTooLarge)
)

// MutationError is returned by a mutation that did not commit. It hands
// the mutation's argument back, so the caller can retry or report it.
// Match the cause with errors.Is (ErrOffline, ErrEncoding, ErrOutOfRange,
// ErrTerminated, ErrNotApplied, ErrTooLarge, or a context error).
type MutationError[A any] struct {
	// Collection is the collection's name; Op the operation.
	Collection, Op string
	// Arg is the operation's argument, handed back.
	Arg A
	// MayApply is true when the command may have reached the log and
	// could still commit (a forward timed out, a leader was deposed after
	// appending it, the caller's context ended or the group ended on this
	// node while the command was in flight): a retry is then
	// at-least-once.
	MayApply bool
	// Err is the cause.
	Err error
}

func (e *MutationError[A]) Error() string {
	return fmt.Sprintf("collections: %s on %q: %v", e.Op, e.Collection, e.Err)
}

// Unwrap returns the cause.
func (e *MutationError[A]) Unwrap() error { return e.Err }

// wrapErr turns a groups error of an Execute into a *MutationError.
func wrapErr[S, A any](c *core[S], op string, arg A, err error) error {
	me := &MutationError[A]{Collection: c.name, Op: op, Arg: arg}
	var off *groups.OfflineError[command]
	switch {
	case errors.As(err, &off):
		me.MayApply = off.MayApply
		me.Err = fmt.Errorf("%w (%s)", ErrOffline, off.Reason)
	case errors.Is(err, groups.ErrOffline):
		me.Err = fmt.Errorf("%w (%v)", ErrOffline, err)
	case errors.Is(err, groups.ErrTerminated):
		// The group ended while the command was in flight (execute
		// refuses before sending when it had already ended): the
		// other members may still commit it.
		me.MayApply = true
		me.Err = fmt.Errorf("%w (%v)", ErrTerminated, err)
	case errors.Is(err, groups.ErrNotApplied):
		me.Err = ErrNotApplied
	case errors.Is(err, groups.ErrEncoding):
		me.Err = fmt.Errorf("%w: %v", ErrEncoding, err)
	case errors.Is(err, groups.ErrTooLarge):
		me.Err = fmt.Errorf("%w: %s", ErrTooLarge, strings.TrimPrefix(err.Error(), groups.ErrTooLarge.Error()+": "))
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		// The caller gave up waiting, not the group: the command may
		// already be in the log.
		me.MayApply = true
		me.Err = err
	default:
		me.Err = err
	}
	return me
}

// encodingErr is the *MutationError of an argument that does not encode.
func encodingErr[S, A any](c *core[S], op string, arg A, err error) error {
	return &MutationError[A]{Collection: c.name, Op: op, Arg: arg, Err: fmt.Errorf("%w: %v", ErrEncoding, err)}
}

// MayApply reports whether err is a *MutationError whose command may still
// commit (MayApply set), whatever its argument type: a retry after such
// an error is at-least-once.
func MayApply(err error) bool {
	var m interface{ mayApply() bool }
	return errors.As(err, &m) && m.mayApply()
}

func (e *MutationError[A]) mayApply() bool { return e.MayApply }
