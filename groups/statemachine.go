package groups

import (
	"bytes"
	"io"

	"github.com/mosaik-go/mosaik/catalog"
)

// StateMachine is the replicated state a group's log is applied to. All
// methods are called from the group's goroutine, one at a time, so an
// implementation needs no locking of its own.
//
// Apply must be deterministic: no clock, randomness or I/O. A panic in
// Apply ends the group on this node (calls fail with ErrTerminated
// wrapping ErrApplyPanic); the node itself keeps running.
type StateMachine[C, Q, R any] interface {
	// Signature names the machine's type and semantics; it is part of the
	// group id, so members with different machines never bond.
	Signature() catalog.ID
	// Apply applies a run of committed commands of one term, in log order.
	Apply(ctx ApplyContext, cmds []C)
	// Query answers a read-only question about the state.
	Query(q Q) R
	// Snapshot writes the whole state; Restore replaces the state with
	// one written by Snapshot. Restore(Snapshot of a fresh machine) must
	// reset the machine: the group uses it to discard a losing cluster's
	// state. Restore's reader also implements SnapshotBytes.
	Snapshot(w io.Writer) error
	Restore(r io.Reader) error
}

// SnapshotCapturer is an optional interface of a StateMachine whose
// state can be captured at once and written out later, such as one that
// keeps an immutable (persistent) state. The group then writes its
// snapshots on another goroutine while it goes on committing and
// applying, instead of stopping for the whole Snapshot; a large state no
// longer stalls the group (and the late joiner that waits for it).
type SnapshotCapturer interface {
	// CaptureSnapshot is called on the group goroutine, between two
	// Applies. It returns a function that writes the state as of this
	// call, exactly what Snapshot would write now. That function runs on
	// another goroutine while Apply goes on, so it must not read anything
	// that Apply changes.
	CaptureSnapshot() func(w io.Writer) error
}

// StagedRestorer is an optional interface of a StateMachine that builds
// its state from a snapshot while the snapshot is still being fetched,
// rather than decoding all of it once the last chunk arrived. The fetch
// feeds the stage as chunks arrive in order; once the whole snapshot is
// here, its hash matched and raft installs it, the group calls Commit in
// place of Restore. A stage that is never committed (the fetch failed,
// the hash did not match, raft took another snapshot) is dropped.
type StagedRestorer interface {
	// StageRestore is called on the group goroutine when a fetch starts.
	// It returns nil when the machine cannot stage this restore.
	StageRestore() RestoreStage
}

// RestoreStage builds a state aside from the machine's: until Commit,
// nothing that Apply, Query or the machine's readers see may change.
type RestoreStage interface {
	// Feed is given the state bytes received so far: each call a longer
	// prefix of the same bytes in the same memory, which the group never
	// modifies (the stage may keep references into them, as with
	// SnapshotBytes). The bytes are not verified yet. Feed runs on the
	// fetch's goroutine, one call at a time, while the group goes on
	// applying, so it must not touch what Apply changes. An error
	// abandons the stage (Restore then runs on the whole snapshot).
	Feed(prefix []byte) error
	// Commit runs on the group goroutine, after the last Feed, with the
	// whole state (the last prefix fed). It replaces the machine's state
	// exactly as Restore of those bytes would, with the same checks and
	// the same errors.
	Commit(state []byte) error
}

// SnapshotBytes is implemented by the reader a StateMachine's Restore
// is given: the snapshot is in memory, and SnapshotBytes returns its
// unread bytes without a copy. The group never modifies them, so the
// machine may keep references into them (strings or slices of its
// state) instead of copying a snapshot of many megabytes.
type SnapshotBytes interface {
	SnapshotBytes() []byte
}

// snapshotReader is the reader Restore is given.
type snapshotReader struct {
	*bytes.Reader
	b []byte
}

func newSnapshotReader(b []byte) snapshotReader { return snapshotReader{bytes.NewReader(b), b} }

// SnapshotBytes implements SnapshotBytes: the bytes not read yet.
func (r snapshotReader) SnapshotBytes() []byte {
	rest := r.b[len(r.b)-r.Len():]
	return rest[:len(rest):len(rest)]
}

// ApplyContext tells Apply where its commands sit in the log.
type ApplyContext struct {
	// Group is the group id.
	Group catalog.ID
	// Term is the raft term of every command of the run.
	Term uint64
	// FirstIndex is the log index of cmds[0]; cmds[i] is at FirstIndex+i.
	FirstIndex uint64
}

// Index returns the log index of the i-th command of the run.
func (a ApplyContext) Index(i int) uint64 { return a.FirstIndex + uint64(i) }

// NoOp is a state machine with no state, for groups used only for leader
// election and membership.
type NoOp struct{}

// Signature implements StateMachine.
func (NoOp) Signature() catalog.ID { return catalog.IDFromString("mosaik_noop_state_machine") }

// Apply implements StateMachine.
func (NoOp) Apply(ApplyContext, []struct{}) {}

// Query implements StateMachine.
func (NoOp) Query(struct{}) struct{} { return struct{}{} }

// Snapshot implements StateMachine.
func (NoOp) Snapshot(io.Writer) error { return nil }

// Restore implements StateMachine.
func (NoOp) Restore(io.Reader) error { return nil }
