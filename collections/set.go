package collections

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"

	"github.com/fxamacker/cbor/v2"
	"github.com/google/btree"
)

// Set op codes (PROTOCOL.md §22, Set commands).
const (
	setInsert     = 1 // A value
	setRemove     = 2 // A value
	setClear      = 3 //
	setExtend     = 4 // Many: values
	setRemoveMany = 5 // Many: values
)

// setItem is one member; members are ordered by their canonical encoding,
// so iteration order is the same on every replica.
type setItem[T any] struct {
	enc string
	v   T
}

func setLess[T any](a, b setItem[T]) bool { return a.enc < b.enc }

type setState[T any] = *btree.BTreeG[setItem[T]]

// setKind is Set's pure core.
type setKind[T any] struct{}

func (setKind[T]) empty() setState[T]              { return btree.NewG(btreeDegree, setLess[T]) }
func (setKind[T]) clone(s setState[T]) setState[T] { return s.Clone() }
func (setKind[T]) size(s setState[T]) int          { return s.Len() }
func (setKind[T]) reports(uint8) bool              { return false }

func (setKind[T]) item(raw cbor.RawMessage) (setItem[T], bool) {
	v, ok := decode[T](raw)
	return setItem[T]{enc: string(raw), v: v}, ok
}

func (k setKind[T]) apply(s setState[T], c *command) (setState[T], outcome) {
	switch c.Op {
	case setInsert:
		it, ok := k.item(c.A)
		if !ok {
			return s, invalid
		}
		s.ReplaceOrInsert(it)
	case setRemove:
		if _, ok := k.item(c.A); !ok {
			return s, invalid
		}
		if _, found := s.Delete(setItem[T]{enc: string(c.A)}); !found {
			return s, noop
		}
	case setClear:
		s.Clear(false)
	case setExtend, setRemoveMany:
		its := make([]setItem[T], 0, len(c.Many))
		for _, raw := range c.Many {
			it, ok := k.item(raw)
			if !ok {
				return s, invalid // all or nothing
			}
			its = append(its, it)
		}
		for _, it := range its {
			if c.Op == setExtend {
				s.ReplaceOrInsert(it)
			} else {
				s.Delete(it)
			}
		}
	default:
		return s, invalid
	}
	return s, applied
}

// encode writes the members in order, as raw canonical CBOR.
func (setKind[T]) encode(s setState[T], enc *cbor.Encoder) error {
	var err error
	s.Ascend(func(it setItem[T]) bool {
		err = enc.Encode(cbor.RawMessage(it.enc))
		return err == nil
	})
	return err
}

func (k setKind[T]) decode(dec *cbor.Decoder) (setState[T], error) {
	s := k.empty()
	var last string
	for n := 0; ; n++ {
		var raw cbor.RawMessage
		if err := dec.Decode(&raw); err != nil {
			if errors.Is(err, io.EOF) {
				return s, nil
			}
			return nil, err
		}
		it, ok := k.item(raw)
		if !ok {
			return nil, fmt.Errorf("member %d does not decode", n)
		}
		if n > 0 && it.enc <= last {
			return nil, fmt.Errorf("member %d is out of order", n)
		}
		last = it.enc
		s.ReplaceOrInsert(it)
	}
}

// SetReader is a read-only replica of a replicated set: a raft learner
// that never votes. Reads are local, from the latest applied state, and
// never block; call Sync first for a linearizable read. Members are equal
// when their canonical CBOR encodings are, and ordered by them. Safe for
// concurrent use.
type SetReader[T any] struct {
	handle[setState[T]]
}

// Set is a writer replica of a replicated set: a raft voter (or a learner
// waiting to be promoted). It reads like a SetReader. Mutations return
// once committed and applied here, with the version they committed at.
// Safe for concurrent use.
type Set[T any] struct {
	SetReader[T]
}

// SetView is a set replica, reader or writer: the argument of IsSubset.
type SetView[T any] interface {
	members() setState[T]
}

func setParts[T any]() []string { return []string{typeTag[T]()} }

// NewSet opens the set called name on h as a writer replica. It does not
// wait for the network: watch When().Online.
func NewSet[T any](h Host, name string, opts ...Option) (*Set[T], error) {
	c, err := open(h, "set", name, kind[setState[T]](setKind[T]{}), true, setParts[T](), opts)
	if err != nil {
		return nil, err
	}
	return &Set[T]{SetReader[T]{handle[setState[T]]{c}}}, nil
}

// NewSetReader opens the set called name on h as a reader replica.
func NewSetReader[T any](h Host, name string, opts ...Option) (*SetReader[T], error) {
	c, err := open(h, "set", name, kind[setState[T]](setKind[T]{}), false, setParts[T](), opts)
	if err != nil {
		return nil, err
	}
	return &SetReader[T]{handle[setState[T]]{c}}, nil
}

func (r *SetReader[T]) members() setState[T] { return r.c.state().state }

// IsEmpty reports whether the set is empty.
func (r *SetReader[T]) IsEmpty() bool { return r.Len() == 0 }

// Contains reports whether v is a member.
func (r *SetReader[T]) Contains(v T) bool {
	rk, ok := encodeReadKey(v)
	if !ok {
		return false
	}
	defer rk.release()
	return r.members().Has(setItem[T]{enc: aliasString(rk.enc)})
}

// IsSubset reports whether every member of this set's current state is a
// member of other's current state (each read locally).
func (r *SetReader[T]) IsSubset(other SetView[T]) bool {
	mine, theirs := r.members(), other.members()
	if mine.Len() > theirs.Len() {
		return false
	}
	sub := true
	mine.Ascend(func(it setItem[T]) bool {
		sub = theirs.Has(it)
		return sub
	})
	return sub
}

// All iterates over the members of one state (an O(1) snapshot taken when
// iteration starts), in the order of their encodings.
func (r *SetReader[T]) All() iter.Seq[T] {
	return func(yield func(T) bool) {
		s := r.members()
		s.Ascend(func(it setItem[T]) bool { return yield(it.v) })
	}
}

// Insert adds v (a no-op when present).
func (w *Set[T]) Insert(ctx context.Context, v T) (Version, error) {
	raw, err := encode(v)
	if err != nil {
		return 0, encodingErr(w.c, "insert", v, err)
	}
	return execute(ctx, w.c, "insert", v, command{Op: setInsert, A: raw})
}

// Remove deletes v (a no-op when absent).
func (w *Set[T]) Remove(ctx context.Context, v T) (Version, error) {
	raw, err := encode(v)
	if err != nil {
		return 0, encodingErr(w.c, "remove", v, err)
	}
	return execute(ctx, w.c, "remove", v, command{Op: setRemove, A: raw})
}

func (w *Set[T]) many(ctx context.Context, op string, code uint8, vs []T) (Version, error) {
	if len(vs) == 0 {
		return w.Version(), nil
	}
	many := make([]cbor.RawMessage, 0, len(vs))
	for _, v := range vs {
		raw, err := encode(v)
		if err != nil {
			return 0, encodingErr(w.c, op, vs, err)
		}
		many = append(many, raw)
	}
	return execute(ctx, w.c, op, vs, command{Op: code, Many: many})
}

// Extend adds every value in one command (all or none are applied). An
// empty input returns the current version without sending anything.
func (w *Set[T]) Extend(ctx context.Context, vs []T) (Version, error) {
	return w.many(ctx, "extend", setExtend, vs)
}

// RemoveMany deletes every value in one command. An empty input returns
// the current version without sending anything.
func (w *Set[T]) RemoveMany(ctx context.Context, vs []T) (Version, error) {
	return w.many(ctx, "remove many", setRemoveMany, vs)
}

// Clear deletes every member.
func (w *Set[T]) Clear(ctx context.Context) (Version, error) {
	return execute(ctx, w.c, "clear", struct{}{}, command{Op: setClear})
}

// SetDefinition names a set and its options once, for every program that
// opens it: declare it at package level with SetDef and open it with
// Writer or Reader.
type SetDefinition[T any] struct {
	name string
	opts []Option
}

// SetDef defines the set called name:
//
//	var Online = collections.SetDef[string]("chat.online")
//	online, err := Online.Writer(n)
func SetDef[T any](name string, opts ...Option) SetDefinition[T] {
	return SetDefinition[T]{name: name, opts: opts}
}

// Name returns the set's name.
func (d SetDefinition[T]) Name() string { return d.name }

// Writer opens the set on h as a writer replica; opts follow the
// definition's own.
func (d SetDefinition[T]) Writer(h Host, opts ...Option) (*Set[T], error) {
	return NewSet[T](h, d.name, append(append([]Option(nil), d.opts...), opts...)...)
}

// Reader opens the set on h as a reader replica.
func (d SetDefinition[T]) Reader(h Host, opts ...Option) (*SetReader[T], error) {
	return NewSetReader[T](h, d.name, append(append([]Option(nil), d.opts...), opts...)...)
}
