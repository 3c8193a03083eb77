package collections

import (
	"context"

	"github.com/fxamacker/cbor/v2"
)

// Once op codes (PROTOCOL.md §22, Once commands).
const (
	onceWrite = 1 // A value; only the first valid write takes effect
)

// onceKind is Once's pure core.
type onceKind[T any] struct{}

func (onceKind[T]) empty() optState[T]              { return optState[T]{} }
func (onceKind[T]) clone(s optState[T]) optState[T] { return s }
func (onceKind[T]) size(s optState[T]) int          { return s.size() }
func (onceKind[T]) reports(uint8) bool              { return false }

func (onceKind[T]) encode(s optState[T], enc *cbor.Encoder) error { return encodeOpt(s, enc) }
func (onceKind[T]) decode(dec *cbor.Decoder) (optState[T], error) { return decodeOpt[T](dec) }

func (onceKind[T]) apply(s optState[T], c *command) (optState[T], outcome) {
	if c.Op != onceWrite {
		return s, invalid
	}
	n, ok := optDecode[T](c.A)
	if !ok {
		return s, invalid // an undecodable first write does not win
	}
	if s.set {
		return s, noop
	}
	return n, applied
}

// OnceReader is a read-only replica of a replicated write-once value: a
// raft learner that never votes. Reads are local and never block, except
// AwaitValue. Safe for concurrent use.
type OnceReader[T any] struct {
	handle[optState[T]]
}

// Once is a writer replica of a replicated write-once value: a raft voter
// (or a learner waiting to be promoted). The first write committed wins on
// every replica; later writes are no-ops, but still commit and return
// their version. (Two clusters formed by writers that started alone keep
// only the winner's first write when they merge: see the package doc.) It reads like a OnceReader. Safe for concurrent use.
type Once[T any] struct {
	OnceReader[T]
}

func onceParts[T any]() []string { return []string{typeTag[T]()} }

// NewOnce opens the write-once value called name on h as a writer replica.
// It does not wait for the network: watch When().Online.
func NewOnce[T any](h Host, name string, opts ...Option) (*Once[T], error) {
	c, err := open(h, "once", name, kind[optState[T]](onceKind[T]{}), true, onceParts[T](), opts)
	if err != nil {
		return nil, err
	}
	return &Once[T]{OnceReader[T]{handle[optState[T]]{c}}}, nil
}

// NewOnceReader opens the write-once value called name on h as a reader
// replica.
func NewOnceReader[T any](h Host, name string, opts ...Option) (*OnceReader[T], error) {
	c, err := open(h, "once", name, kind[optState[T]](onceKind[T]{}), false, onceParts[T](), opts)
	if err != nil {
		return nil, err
	}
	return &OnceReader[T]{handle[optState[T]]{c}}, nil
}

// Get returns the value, once written.
func (r *OnceReader[T]) Get() (T, bool) {
	s := r.c.state().state
	return s.v, s.set
}

// IsSome reports whether the value has been written.
func (r *OnceReader[T]) IsSome() bool { return r.c.state().state.set }

// IsEmpty reports whether the value is still unwritten.
func (r *OnceReader[T]) IsEmpty() bool { return !r.IsSome() }

// AwaitValue returns the value as soon as this replica holds it: at once
// when it does already, else after waiting for the collection to be
// online and then for the value to be applied here. It returns ctx's error
// when ctx ends first, ErrTerminated once the replica is closed.
func (r *OnceReader[T]) AwaitValue(ctx context.Context) (T, error) {
	if v, ok := r.Get(); ok {
		return v, nil
	}
	var zero T
	if err := r.When().Online(ctx); err != nil {
		return zero, err
	}
	for {
		// watch reads the state and the change channel together, so a
		// value applied between the check and the wait is not missed.
		p, changed := r.c.m.watch()
		if p.state.set {
			return p.state.v, nil
		}
		select {
		case <-changed:
		case <-r.c.g.When().Terminated():
			return zero, ErrTerminated
		case <-r.c.closed:
			return zero, ErrTerminated
		case <-ctx.Done():
			return zero, ctx.Err()
		}
	}
}

// Write sets the value if no write has committed before it; otherwise it
// is a no-op. Either way it returns the version it committed at: read the
// value to see which write won.
func (w *Once[T]) Write(ctx context.Context, v T) (Version, error) {
	raw, err := encode(v)
	if err != nil {
		return 0, encodingErr(w.c, "write", v, err)
	}
	return execute(ctx, w.c, "write", v, command{Op: onceWrite, A: raw})
}

// Set is Write.
func (w *Once[T]) Set(ctx context.Context, v T) (Version, error) { return w.Write(ctx, v) }

// OnceDefinition names a write-once value and its options once, for every
// program that opens it: declare it at package level with OnceDef and
// open it with Writer or Reader.
type OnceDefinition[T any] struct {
	name string
	opts []Option
}

// OnceDef defines the write-once value called name:
//
//	var Genesis = collections.OnceDef[Block]("chain.genesis")
//	genesis, err := Genesis.Reader(n)
func OnceDef[T any](name string, opts ...Option) OnceDefinition[T] {
	return OnceDefinition[T]{name: name, opts: opts}
}

// Name returns the value's name.
func (d OnceDefinition[T]) Name() string { return d.name }

// Writer opens the value on h as a writer replica; opts follow the
// definition's own.
func (d OnceDefinition[T]) Writer(h Host, opts ...Option) (*Once[T], error) {
	return NewOnce[T](h, d.name, append(append([]Option(nil), d.opts...), opts...)...)
}

// Reader opens the value on h as a reader replica.
func (d OnceDefinition[T]) Reader(h Host, opts ...Option) (*OnceReader[T], error) {
	return NewOnceReader[T](h, d.name, append(append([]Option(nil), d.opts...), opts...)...)
}
