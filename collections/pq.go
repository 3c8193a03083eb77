package collections

import (
	"cmp"
	"context"
	"errors"
	"iter"
	"math"
	"strconv"

	"github.com/fxamacker/cbor/v2"
)

// UnboundedCapacity is the capacity of an unbounded priority queue.
const UnboundedCapacity uint64 = math.MaxUint64

// PQEntry is one entry of a priority queue: what the ordered reads return
// and what Insert and Extend hand back in a *MutationError.
type PQEntry[P cmp.Ordered, K, V any] struct {
	Priority P
	Key      K
	Value    V
}

// Bound is one end of a RemoveRange: Included(p), Excluded(p) or
// Unbounded[P]() (the zero Bound is unbounded too).
type Bound[P cmp.Ordered] struct {
	kind boundKind
	p    P
}

// Included bounds a range at p, p within it.
func Included[P cmp.Ordered](p P) Bound[P] { return Bound[P]{kind: boundIncluded, p: p} }

// Excluded bounds a range at p, p outside it.
func Excluded[P cmp.Ordered](p P) Bound[P] { return Bound[P]{kind: boundExcluded, p: p} }

// Unbounded leaves a range's end open.
func Unbounded[P cmp.Ordered]() Bound[P] { return Bound[P]{} }

// PriorityQueueReader is a read-only replica of a replicated double-ended
// priority queue: each key has one priority and one value. Reads are
// local, from the latest applied state, and never block; call Sync first
// for a linearizable read. Safe for concurrent use.
//
// Priorities are ordered by their natural order (cmp.Compare: for floats
// NaN sorts first and -0 equals +0), entries of equal priority by their
// key's canonical CBOR encoding, so every ordered read is the same on
// every replica. The priority type is cmp.Ordered rather than taking a
// comparison function because an order given in code is not part of the
// group id: two programs with different functions would diverge.
type PriorityQueueReader[P cmp.Ordered, K, V any] struct {
	handle[*pqState[P, K, V]]
	capacity uint64
}

// PriorityQueue is a writer replica of a replicated double-ended priority
// queue: a raft voter (or a learner waiting to be promoted). It reads like
// a PriorityQueueReader. Mutations return once committed and applied
// here, with the version they committed at. Safe for concurrent use.
//
// A bounded queue (NewBoundedPriorityQueue) never holds more than its
// capacity: after each insert of a new key that takes it past it, the
// queue evicts the entry Min returns (the lowest priority, and among
// those the smallest key encoding), which may be the new one.
type PriorityQueue[P cmp.Ordered, K, V any] struct {
	PriorityQueueReader[P, K, V]
}

// pqParts are the signature parts: the three types, then the capacity, so
// that a bounded and an unbounded queue of one name never share a group.
func pqParts[P cmp.Ordered, K, V any](capacity uint64) []string {
	return []string{typeTag[P](), typeTag[K](), typeTag[V](), "capacity=" + strconv.FormatUint(capacity, 10)}
}

// ErrInvalidCapacity is returned when a bounded priority queue is opened
// with a capacity of 0.
var ErrInvalidCapacity = errors.New("collections: a bounded priority queue needs a capacity of at least 1")

func openPQ[P cmp.Ordered, K, V any](h Host, name string, capacity uint64, writer bool, opts []Option) (PriorityQueueReader[P, K, V], error) {
	if capacity == 0 {
		return PriorityQueueReader[P, K, V]{}, ErrInvalidCapacity
	}
	k := kind[*pqState[P, K, V]](pqKind[P, K, V]{capacity: capacity})
	c, err := open(h, "depq", name, k, writer, pqParts[P, K, V](capacity), opts)
	if err != nil {
		return PriorityQueueReader[P, K, V]{}, err
	}
	return PriorityQueueReader[P, K, V]{handle[*pqState[P, K, V]]{c}, capacity}, nil
}

// NewPriorityQueue opens the unbounded priority queue called name on h as
// a writer replica. It does not wait for the network: watch When().Online.
func NewPriorityQueue[P cmp.Ordered, K, V any](h Host, name string, opts ...Option) (*PriorityQueue[P, K, V], error) {
	return NewBoundedPriorityQueue[P, K, V](h, name, UnboundedCapacity, opts...)
}

// NewPriorityQueueReader opens the unbounded priority queue called name on
// h as a reader replica.
func NewPriorityQueueReader[P cmp.Ordered, K, V any](h Host, name string, opts ...Option) (*PriorityQueueReader[P, K, V], error) {
	return NewBoundedPriorityQueueReader[P, K, V](h, name, UnboundedCapacity, opts...)
}

// NewBoundedPriorityQueue opens the priority queue called name, holding
// at most capacity entries (at least 1), on h as a writer replica. The
// capacity is part of the group id: every replica must give the same one.
func NewBoundedPriorityQueue[P cmp.Ordered, K, V any](h Host, name string, capacity uint64, opts ...Option) (*PriorityQueue[P, K, V], error) {
	r, err := openPQ[P, K, V](h, name, capacity, true, opts)
	if err != nil {
		return nil, err
	}
	return &PriorityQueue[P, K, V]{r}, nil
}

// NewBoundedPriorityQueueReader opens the bounded priority queue called
// name on h as a reader replica.
func NewBoundedPriorityQueueReader[P cmp.Ordered, K, V any](h Host, name string, capacity uint64, opts ...Option) (*PriorityQueueReader[P, K, V], error) {
	r, err := openPQ[P, K, V](h, name, capacity, false, opts)
	if err != nil {
		return nil, err
	}
	return &r, nil
}

func (q *PriorityQueueReader[P, K, V]) st() *pqState[P, K, V] { return q.c.state().state }

func (q *PriorityQueueReader[P, K, V]) lookup(k K) (pqItem[P, K, V], bool) {
	rk, ok := encodeReadKey(k)
	if !ok {
		return pqItem[P, K, V]{}, false
	}
	defer rk.release()
	return q.st().byKey.Get(pqItem[P, K, V]{kenc: aliasString(rk.enc)})
}

func (it pqItem[P, K, V]) entry() PQEntry[P, K, V] { return PQEntry[P, K, V]{it.p, it.k, it.v} }

// Capacity returns the queue's capacity (UnboundedCapacity for an unbounded one).
func (q *PriorityQueueReader[P, K, V]) Capacity() uint64 { return q.capacity }

// IsEmpty reports whether the queue is empty.
func (q *PriorityQueueReader[P, K, V]) IsEmpty() bool { return q.Len() == 0 }

// Contains reports whether k is present.
func (q *PriorityQueueReader[P, K, V]) Contains(k K) bool {
	_, ok := q.lookup(k)
	return ok
}

// Get returns the value of k.
func (q *PriorityQueueReader[P, K, V]) Get(k K) (V, bool) {
	it, ok := q.lookup(k)
	return it.v, ok
}

// GetPriority returns the priority of k.
func (q *PriorityQueueReader[P, K, V]) GetPriority(k K) (P, bool) {
	it, ok := q.lookup(k)
	return it.p, ok
}

// Min returns the entry of the lowest priority (among equal priorities,
// the smallest key encoding).
func (q *PriorityQueueReader[P, K, V]) Min() (PQEntry[P, K, V], bool) {
	it, ok := q.st().byPrio.Min()
	return it.entry(), ok
}

// Max returns the entry of the highest priority (among equal priorities,
// the greatest key encoding).
func (q *PriorityQueueReader[P, K, V]) Max() (PQEntry[P, K, V], bool) {
	it, ok := q.st().byPrio.Max()
	return it.entry(), ok
}

// MinPriority returns the lowest priority.
func (q *PriorityQueueReader[P, K, V]) MinPriority() (P, bool) {
	it, ok := q.st().byPrio.Min()
	return it.p, ok
}

// MaxPriority returns the highest priority.
func (q *PriorityQueueReader[P, K, V]) MaxPriority() (P, bool) {
	it, ok := q.st().byPrio.Max()
	return it.p, ok
}

// All iterates over the entries of one state (an O(1) snapshot taken when
// iteration starts) by ascending priority, equal priorities by key
// encoding.
func (q *PriorityQueueReader[P, K, V]) All() iter.Seq[PQEntry[P, K, V]] {
	return func(yield func(PQEntry[P, K, V]) bool) {
		s := q.st()
		s.byPrio.Ascend(func(it pqItem[P, K, V]) bool { return yield(it.entry()) })
	}
}

// Descending iterates over the entries of one state in the exact reverse
// of All's order.
func (q *PriorityQueueReader[P, K, V]) Descending() iter.Seq[PQEntry[P, K, V]] {
	return func(yield func(PQEntry[P, K, V]) bool) {
		s := q.st()
		s.byPrio.Descend(func(it pqItem[P, K, V]) bool { return yield(it.entry()) })
	}
}

// pqTriple encodes an entry as the key, value and priority arguments.
func pqTriple[P cmp.Ordered, K, V any](e PQEntry[P, K, V]) (ka, va, pa cbor.RawMessage, err error) {
	if ka, err = encode(e.Key); err != nil {
		return
	}
	if va, err = encode(e.Value); err != nil {
		return
	}
	pa, err = encode(e.Priority)
	return
}

// Insert sets k to value v at priority p, moving an existing k to p. On a
// bounded queue a new key may evict the lowest entry (see PriorityQueue).
func (q *PriorityQueue[P, K, V]) Insert(ctx context.Context, p P, k K, v V) (Version, error) {
	arg := PQEntry[P, K, V]{p, k, v}
	ka, va, pa, err := pqTriple(arg)
	if err != nil {
		return 0, encodingErr(q.c, "insert", arg, err)
	}
	return execute(ctx, q.c, "insert", arg, command{Op: pqInsert, A: ka, B: va, C: pa})
}

// Extend inserts every entry in order, in one command (all or none are
// applied; a bounded queue evicts after each). An empty input returns the
// current version without sending anything.
func (q *PriorityQueue[P, K, V]) Extend(ctx context.Context, entries []PQEntry[P, K, V]) (Version, error) {
	if len(entries) == 0 {
		return q.Version(), nil
	}
	many := make([]cbor.RawMessage, 0, 3*len(entries))
	for _, e := range entries {
		ka, va, pa, err := pqTriple(e)
		if err != nil {
			return 0, encodingErr(q.c, "extend", entries, err)
		}
		many = append(many, ka, va, pa)
	}
	return execute(ctx, q.c, "extend", entries, command{Op: pqExtend, Many: many})
}

// KP is a key and a priority, the argument of UpdatePriority handed back
// in a *MutationError.
type KP[K any, P cmp.Ordered] struct {
	Key      K
	Priority P
}

// UpdatePriority moves k to priority p, keeping its value (a no-op when k
// is absent). It never evicts.
func (q *PriorityQueue[P, K, V]) UpdatePriority(ctx context.Context, k K, p P) (Version, error) {
	arg := KP[K, P]{k, p}
	ka, err := encode(k)
	if err != nil {
		return 0, encodingErr(q.c, "update priority", arg, err)
	}
	pa, err := encode(p)
	if err != nil {
		return 0, encodingErr(q.c, "update priority", arg, err)
	}
	return execute(ctx, q.c, "update priority", arg, command{Op: pqUpdatePriority, A: ka, C: pa})
}

// UpdateValue sets the value of k, keeping its priority (a no-op when k is
// absent).
func (q *PriorityQueue[P, K, V]) UpdateValue(ctx context.Context, k K, v V) (Version, error) {
	arg := KV[K, V]{k, v}
	ka, err := encode(k)
	if err != nil {
		return 0, encodingErr(q.c, "update value", arg, err)
	}
	va, err := encode(v)
	if err != nil {
		return 0, encodingErr(q.c, "update value", arg, err)
	}
	return execute(ctx, q.c, "update value", arg, command{Op: pqUpdateValue, A: ka, B: va})
}

// PQCAS is the argument of CompareAndSwapValue, handed back in a
// *MutationError. A nil New deletes the key.
type PQCAS[K, V any] struct {
	Key      K
	Expected V
	New      *V
}

// CompareAndSwapValue sets the value of k to new, keeping its priority
// (deletes k when new is nil), if k is present and its value encodes
// exactly as expected does. It reports whether it applied, and the
// version it committed at (also when it did not apply).
func (q *PriorityQueue[P, K, V]) CompareAndSwapValue(ctx context.Context, k K, expected V, new *V) (bool, Version, error) {
	arg := PQCAS[K, V]{k, expected, new}
	cmd := command{Op: pqCAS}
	var err error
	if cmd.A, err = encode(k); err != nil {
		return false, 0, encodingErr(q.c, "compare and swap value", arg, err)
	}
	if cmd.B, err = encode(expected); err != nil {
		return false, 0, encodingErr(q.c, "compare and swap value", arg, err)
	}
	if new != nil {
		cmd.N = 2
		if cmd.C, err = encode(*new); err != nil {
			return false, 0, encodingErr(q.c, "compare and swap value", arg, err)
		}
	}
	v, err := execute(ctx, q.c, "compare and swap value", arg, cmd)
	if err != nil {
		return false, 0, err
	}
	ok, err := q.c.swapped(v)
	return ok, v, err
}

// Remove deletes k (a no-op when absent).
func (q *PriorityQueue[P, K, V]) Remove(ctx context.Context, k K) (Version, error) {
	ka, err := encode(k)
	if err != nil {
		return 0, encodingErr(q.c, "remove", k, err)
	}
	return execute(ctx, q.c, "remove", k, command{Op: pqRemove, A: ka})
}

// RemoveKeys deletes every key in one command. An empty input returns the
// current version without sending anything.
func (q *PriorityQueue[P, K, V]) RemoveKeys(ctx context.Context, keys []K) (Version, error) {
	if len(keys) == 0 {
		return q.Version(), nil
	}
	many := make([]cbor.RawMessage, 0, len(keys))
	for _, k := range keys {
		ka, err := encode(k)
		if err != nil {
			return 0, encodingErr(q.c, "remove keys", keys, err)
		}
		many = append(many, ka)
	}
	return execute(ctx, q.c, "remove keys", keys, command{Op: pqRemoveKeys, Many: many})
}

// PQRange is the argument of RemoveRange, handed back in a *MutationError.
type PQRange[P cmp.Ordered] struct{ Start, End Bound[P] }

// RemoveRange deletes every entry whose priority lies between start and
// end, e.g. RemoveRange(ctx, Included(20), Excluded(50)) for 20 ≤ p < 50,
// or RemoveRange(ctx, Unbounded[P](), Excluded(100)) for p < 100. A range
// whose start lies past its end removes nothing.
func (q *PriorityQueue[P, K, V]) RemoveRange(ctx context.Context, start, end Bound[P]) (Version, error) {
	arg := PQRange[P]{start, end}
	cmd := command{Op: pqRemoveRange, N: uint64(start.kind), M: uint64(end.kind)}
	var err error
	if start.kind != boundUnbounded {
		if cmd.B, err = encode(start.p); err != nil {
			return 0, encodingErr(q.c, "remove range", arg, err)
		}
	}
	if end.kind != boundUnbounded {
		if cmd.C, err = encode(end.p); err != nil {
			return 0, encodingErr(q.c, "remove range", arg, err)
		}
	}
	return execute(ctx, q.c, "remove range", arg, cmd)
}

// Clear deletes every entry.
func (q *PriorityQueue[P, K, V]) Clear(ctx context.Context) (Version, error) {
	return execute(ctx, q.c, "clear", struct{}{}, command{Op: pqClear})
}

// PriorityQueueDefinition names a priority queue, its capacity and its
// options once, for every program that opens it: declare it at package
// level with PriorityQueueDef or BoundedPriorityQueueDef and open it with
// Writer or Reader.
type PriorityQueueDefinition[P cmp.Ordered, K, V any] struct {
	name     string
	capacity uint64
	opts     []Option
}

// PriorityQueueDef defines the unbounded priority queue called name:
//
//	var Jobs = collections.PriorityQueueDef[int64, string, Job]("jobs")
//	jobs, err := Jobs.Writer(n)
func PriorityQueueDef[P cmp.Ordered, K, V any](name string, opts ...Option) PriorityQueueDefinition[P, K, V] {
	return BoundedPriorityQueueDef[P, K, V](name, UnboundedCapacity, opts...)
}

// BoundedPriorityQueueDef defines the priority queue called name holding
// at most capacity entries.
func BoundedPriorityQueueDef[P cmp.Ordered, K, V any](name string, capacity uint64, opts ...Option) PriorityQueueDefinition[P, K, V] {
	return PriorityQueueDefinition[P, K, V]{name: name, capacity: capacity, opts: opts}
}

// Name returns the queue's name.
func (d PriorityQueueDefinition[P, K, V]) Name() string { return d.name }

// Capacity returns the queue's capacity (UnboundedCapacity for an unbounded one).
func (d PriorityQueueDefinition[P, K, V]) Capacity() uint64 { return d.capacity }

// Writer opens the queue on h as a writer replica; opts follow the
// definition's own.
func (d PriorityQueueDefinition[P, K, V]) Writer(h Host, opts ...Option) (*PriorityQueue[P, K, V], error) {
	return NewBoundedPriorityQueue[P, K, V](h, d.name, d.capacity, append(append([]Option(nil), d.opts...), opts...)...)
}

// Reader opens the queue on h as a reader replica.
func (d PriorityQueueDefinition[P, K, V]) Reader(h Host, opts ...Option) (*PriorityQueueReader[P, K, V], error) {
	return NewBoundedPriorityQueueReader[P, K, V](h, d.name, d.capacity, append(append([]Option(nil), d.opts...), opts...)...)
}
