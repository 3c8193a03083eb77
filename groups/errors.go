package groups

import (
	"errors"
	"fmt"

	"github.com/mosaik-go/mosaik"
)

var (
	// ErrOffline is matched by every *OfflineError: the group has no
	// reachable leader (or this node lost leadership) and the call gave up.
	ErrOffline = errors.New("groups: offline")
	// ErrTerminated is returned by calls on a closed handle or on a group
	// that ended (closed, or its state machine panicked). It wraps
	// mosaik.ErrClosed.
	ErrTerminated = fmt.Errorf("groups: group terminated: %w", mosaik.ErrClosed)
	// ErrEncoding wraps codec failures of commands.
	ErrEncoding = errors.New("groups: encoding")
	// ErrNoCommands is returned by FeedMany/ExecuteMany with no commands.
	ErrNoCommands = errors.New("groups: no commands")
	// ErrTooLarge is returned by Feed and Execute (and their Many forms)
	// when the encoded commands of one call exceed what a bond frame
	// carries (BondParams.MaxFrameSize less a little framing; see
	// Group.MaxBatchBytes). Nothing is sent: split the batch, or store
	// large values elsewhere and replicate a reference.
	ErrTooLarge = errors.New("groups: commands too large")
	// ErrNotApplied is returned by Execute when the log slot its command
	// was given is committed with another entry (its leader was deposed
	// before the command committed): the command was not applied there.
	ErrNotApplied = errors.New("groups: command lost its log slot and was not applied")
	// ErrTypeMismatch is returned by Join when the group id is already
	// joined on this node with other command, query or result types.
	ErrTypeMismatch = errors.New("groups: group already joined with other types")
	// ErrApplyPanic is wrapped by ErrTerminated-matching errors when the
	// state machine panicked in Apply.
	ErrApplyPanic = errors.New("groups: state machine panicked")
	// ErrInvalidParams is wrapped by Params.Validate errors.
	ErrInvalidParams = errors.New("groups: invalid params")
	// ErrNotForced is wrapped by ForceNewEpoch's refusals: the node is no
	// writer, the group has a leader, or a bonded writer holds a more
	// up-to-date log.
	ErrNotForced = errors.New("groups: new epoch not forced")
)

// OfflineError hands back the commands of a call that could not reach a
// leader in time. Outcome tells whether they may still be applied: a
// forwarded command that timed out, or a leader deposed after appending
// it, may commit later (at-least-once if the caller retries).
type OfflineError[C any] struct {
	Commands []C
	// MayApply is true when the commands may have been appended to the
	// log and could still commit.
	MayApply bool
	// Reason says why (no leader, forward timeout, not leader, deposed).
	Reason string
}

func (e *OfflineError[C]) Error() string {
	return fmt.Sprintf("groups: offline (%s), %d command(s) handed back", e.Reason, len(e.Commands))
}

// Unwrap makes errors.Is(err, ErrOffline) hold.
func (e *OfflineError[C]) Unwrap() error { return ErrOffline }

// offline is the untyped form the core produces; the typed handle turns it
// into *OfflineError[C] with the caller's commands.
type offline struct {
	mayApply bool
	reason   string
}

func (o *offline) Error() string { return "groups: offline (" + o.reason + ")" }
func (o *offline) Unwrap() error { return ErrOffline }
