package collections

import (
	"context"
	"errors"
	"io"

	"github.com/fxamacker/cbor/v2"
)

// Cell op codes (PROTOCOL.md §22, Cell commands).
const (
	cellWrite = 1 // A value
	cellClear = 2 //
	cellCAS   = 3 // A expected (if N&1), B new (if N&2)
)

// optState is a Cell's or a Once's state: at most one value and its
// canonical encoding. It is a plain value, so every state is its own
// snapshot.
type optState[T any] struct {
	set bool
	enc string
	v   T
}

func optDecode[T any](raw cbor.RawMessage) (optState[T], bool) {
	v, ok := decode[T](raw)
	if !ok {
		return optState[T]{}, false
	}
	return optState[T]{set: true, enc: string(raw), v: v}, true
}

func (s optState[T]) size() int {
	if s.set {
		return 1
	}
	return 0
}

// encodeOpt writes the value, if any, as raw canonical CBOR.
func encodeOpt[T any](s optState[T], enc *cbor.Encoder) error {
	if !s.set {
		return nil
	}
	return enc.Encode(cbor.RawMessage(s.enc))
}

// decodeOpt reads at most one value.
func decodeOpt[T any](dec *cbor.Decoder) (optState[T], error) {
	var raw cbor.RawMessage
	if err := dec.Decode(&raw); err != nil {
		if errors.Is(err, io.EOF) {
			return optState[T]{}, nil
		}
		return optState[T]{}, err
	}
	s, ok := optDecode[T](raw)
	if !ok {
		return optState[T]{}, errors.New("the value does not decode")
	}
	if err := dec.Decode(&raw); !errors.Is(err, io.EOF) {
		return optState[T]{}, errors.New("more than one value")
	}
	return s, nil
}

// cellKind is Cell's pure core.
type cellKind[T any] struct{}

func (cellKind[T]) empty() optState[T]              { return optState[T]{} }
func (cellKind[T]) clone(s optState[T]) optState[T] { return s }
func (cellKind[T]) size(s optState[T]) int          { return s.size() }
func (cellKind[T]) reports(op uint8) bool           { return op == cellCAS }

func (cellKind[T]) encode(s optState[T], enc *cbor.Encoder) error { return encodeOpt(s, enc) }
func (cellKind[T]) decode(dec *cbor.Decoder) (optState[T], error) { return decodeOpt[T](dec) }

func (cellKind[T]) apply(s optState[T], c *command) (optState[T], outcome) {
	switch c.Op {
	case cellWrite:
		n, ok := optDecode[T](c.A)
		if !ok {
			return s, invalid
		}
		return n, applied
	case cellClear:
		return optState[T]{}, applied
	case cellCAS:
		hasExp, hasNew := c.N&1 != 0, c.N&2 != 0
		// An absent argument travels as CBOR null; only the flags say
		// which are present.
		if c.N > 3 || (hasExp && len(c.A) == 0) || (hasNew && len(c.B) == 0) {
			return s, invalid
		}
		var next optState[T]
		if hasNew {
			var ok bool
			if next, ok = optDecode[T](c.B); !ok {
				return s, invalid
			}
		}
		if hasExp {
			if _, ok := decode[T](c.A); !ok {
				return s, invalid
			}
		}
		// Matches when both are absent, or both present with equal
		// encodings. None -> None on an empty cell matches but changes
		// nothing: a no-op, reported as not applied, as Map does.
		if s.set != hasExp || (hasExp && s.enc != string(c.A)) || (!hasExp && !hasNew) {
			return s, noop
		}
		return next, applied
	}
	return s, invalid
}

// CellReader is a read-only replica of a replicated cell (at most one
// value): a raft learner that never votes. Reads are local, from the
// latest applied state, and never block. Safe for concurrent use.
type CellReader[T any] struct {
	handle[optState[T]]
}

// Cell is a writer replica of a replicated cell: a raft voter (or a
// learner waiting to be promoted). It reads like a CellReader. Mutations
// return once committed and applied here, with the version they committed
// at. Safe for concurrent use.
type Cell[T any] struct {
	CellReader[T]
}

func cellParts[T any]() []string { return []string{typeTag[T]()} }

// NewCell opens the cell called name on h as a writer replica. It does
// not wait for the network: watch When().Online.
func NewCell[T any](h Host, name string, opts ...Option) (*Cell[T], error) {
	c, err := open(h, "cell", name, kind[optState[T]](cellKind[T]{}), true, cellParts[T](), opts)
	if err != nil {
		return nil, err
	}
	return &Cell[T]{CellReader[T]{handle[optState[T]]{c}}}, nil
}

// NewCellReader opens the cell called name on h as a reader replica.
func NewCellReader[T any](h Host, name string, opts ...Option) (*CellReader[T], error) {
	c, err := open(h, "cell", name, kind[optState[T]](cellKind[T]{}), false, cellParts[T](), opts)
	if err != nil {
		return nil, err
	}
	return &CellReader[T]{handle[optState[T]]{c}}, nil
}

// Get returns the value, if the cell holds one.
func (r *CellReader[T]) Get() (T, bool) {
	s := r.c.state().state
	return s.v, s.set
}

// IsSome reports whether the cell holds a value.
func (r *CellReader[T]) IsSome() bool { return r.c.state().state.set }

// IsEmpty reports whether the cell is empty.
func (r *CellReader[T]) IsEmpty() bool { return !r.IsSome() }

// Write sets the value, replacing any.
func (w *Cell[T]) Write(ctx context.Context, v T) (Version, error) {
	raw, err := encode(v)
	if err != nil {
		return 0, encodingErr(w.c, "write", v, err)
	}
	return execute(ctx, w.c, "write", v, command{Op: cellWrite, A: raw})
}

// Set is Write.
func (w *Cell[T]) Set(ctx context.Context, v T) (Version, error) { return w.Write(ctx, v) }

// Clear empties the cell.
func (w *Cell[T]) Clear(ctx context.Context) (Version, error) {
	return execute(ctx, w.c, "clear", struct{}{}, command{Op: cellClear})
}

// CellCAS is the argument of Cell.CompareAndSwap, handed back in a
// *MutationError. A nil Expected means "empty"; a nil New clears.
type CellCAS[T any] struct {
	Expected *T
	New      *T
}

// CompareAndSwap sets the value to new (clears the cell when new is nil)
// if the current value encodes exactly as expected does, or if the cell is
// empty and expected is nil. It reports whether it applied, and the
// version it committed at (also when it did not apply).
func (w *Cell[T]) CompareAndSwap(ctx context.Context, expected, new *T) (bool, Version, error) {
	arg := CellCAS[T]{expected, new}
	cmd := command{Op: cellCAS}
	var err error
	if expected != nil {
		cmd.N |= 1
		if cmd.A, err = encode(*expected); err != nil {
			return false, 0, encodingErr(w.c, "compare and swap", arg, err)
		}
	}
	if new != nil {
		cmd.N |= 2
		if cmd.B, err = encode(*new); err != nil {
			return false, 0, encodingErr(w.c, "compare and swap", arg, err)
		}
	}
	v, err := execute(ctx, w.c, "compare and swap", arg, cmd)
	if err != nil {
		return false, 0, err
	}
	ok, err := w.c.swapped(v)
	return ok, v, err
}

// CellDefinition names a cell and its options once, for every program
// that opens it: declare it at package level with CellDef and open it with
// Writer or Reader.
type CellDefinition[T any] struct {
	name string
	opts []Option
}

// CellDef defines the cell called name:
//
//	var Topic = collections.CellDef[string]("chat.topic")
//	topic, err := Topic.Writer(n)
func CellDef[T any](name string, opts ...Option) CellDefinition[T] {
	return CellDefinition[T]{name: name, opts: opts}
}

// Name returns the cell's name.
func (d CellDefinition[T]) Name() string { return d.name }

// Writer opens the cell on h as a writer replica; opts follow the
// definition's own.
func (d CellDefinition[T]) Writer(h Host, opts ...Option) (*Cell[T], error) {
	return NewCell[T](h, d.name, append(append([]Option(nil), d.opts...), opts...)...)
}

// Reader opens the cell on h as a reader replica.
func (d CellDefinition[T]) Reader(h Host, opts ...Option) (*CellReader[T], error) {
	return NewCellReader[T](h, d.name, append(append([]Option(nil), d.opts...), opts...)...)
}
