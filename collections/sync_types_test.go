package collections_test

import (
	"context"
	"encoding/binary"
	"testing"

	"github.com/mosaik-go/mosaik/collections"
	"github.com/mosaik-go/mosaik/node"
)

// The sync suite on the other types, with mosaik's data rules: Set i,
// Vec i·10, PriorityQueue (i, i, i·10). Their frozen cases stop at 1 000
// items (Map's go to 100 000): the snapshot path is the same code, and
// the package's run time counts against the CI budget.

func batches(from, to, batch int, each func(lo, hi int) (collections.Version, error)) (collections.Version, error) {
	var v collections.Version
	for lo := from; lo < to; lo += batch {
		var err error
		if v, err = each(lo, min(lo+batch, to)); err != nil {
			return 0, err
		}
	}
	return v, nil
}

func uvarints(n int, f func(i int) []uint64) string {
	var b []byte
	for i := range n {
		for _, x := range f(i) {
			b = binary.AppendUvarint(b, x)
		}
	}
	return string(b)
}

func setOf(r syncReplica) *collections.SetReader[uint64] {
	if w, ok := r.(*collections.Set[uint64]); ok {
		return &w.SetReader
	}
	return r.(*collections.SetReader[uint64])
}

var setSubject = syncSubject{
	open: func(n *node.Node, name string, writer bool, opts ...collections.Option) (syncReplica, error) {
		if writer {
			return collections.NewSet[uint64](n, name, opts...)
		}
		return collections.NewSetReader[uint64](n, name, opts...)
	},
	fill: func(ctx context.Context, w syncReplica, from, to, batch int) (collections.Version, error) {
		return batches(from, to, batch, func(lo, hi int) (collections.Version, error) {
			vs := make([]uint64, 0, hi-lo)
			for i := lo; i < hi; i++ {
				vs = append(vs, uint64(i))
			}
			return w.(*collections.Set[uint64]).Extend(ctx, vs)
		})
	},
	insertOne: func(ctx context.Context, w syncReplica, i int) (collections.Version, error) {
		return w.(*collections.Set[uint64]).Insert(ctx, uint64(i))
	},
	dump: func(r syncReplica) string {
		var b []byte
		for v := range setOf(r).All() {
			b = binary.AppendUvarint(b, v)
		}
		return string(b)
	},
	want:      func(n int) string { return uvarints(n, func(i int) []uint64 { return []uint64{uint64(i)} }) },
	itemBytes: 6,
	maxFrozen: 1000,
}

func vecOf(r syncReplica) *collections.VecReader[uint64] {
	if w, ok := r.(*collections.Vec[uint64]); ok {
		return &w.VecReader
	}
	return r.(*collections.VecReader[uint64])
}

var vecSubject = syncSubject{
	open: func(n *node.Node, name string, writer bool, opts ...collections.Option) (syncReplica, error) {
		if writer {
			return collections.NewVec[uint64](n, name, opts...)
		}
		return collections.NewVecReader[uint64](n, name, opts...)
	},
	fill: func(ctx context.Context, w syncReplica, from, to, batch int) (collections.Version, error) {
		return batches(from, to, batch, func(lo, hi int) (collections.Version, error) {
			vs := make([]uint64, 0, hi-lo)
			for i := lo; i < hi; i++ {
				vs = append(vs, uint64(i)*10)
			}
			return w.(*collections.Vec[uint64]).Extend(ctx, vs)
		})
	},
	insertOne: func(ctx context.Context, w syncReplica, i int) (collections.Version, error) {
		return w.(*collections.Vec[uint64]).PushBack(ctx, uint64(i)*10)
	},
	dump: func(r syncReplica) string {
		var b []byte
		for _, v := range vecOf(r).All() {
			b = binary.AppendUvarint(b, v)
		}
		return string(b)
	},
	want:         func(n int) string { return uvarints(n, func(i int) []uint64 { return []uint64{uint64(i) * 10} }) },
	itemBytes:    6,
	maxFrozen:    1000,
	arrivalOrder: true,
}

type pq = collections.PriorityQueue[uint64, uint64, uint64]
type pqReader = collections.PriorityQueueReader[uint64, uint64, uint64]

func pqOf(r syncReplica) *pqReader {
	if w, ok := r.(*pq); ok {
		return &w.PriorityQueueReader
	}
	return r.(*pqReader)
}

var pqSubject = syncSubject{
	open: func(n *node.Node, name string, writer bool, opts ...collections.Option) (syncReplica, error) {
		if writer {
			return collections.NewPriorityQueue[uint64, uint64, uint64](n, name, opts...)
		}
		return collections.NewPriorityQueueReader[uint64, uint64, uint64](n, name, opts...)
	},
	fill: func(ctx context.Context, w syncReplica, from, to, batch int) (collections.Version, error) {
		return batches(from, to, batch, func(lo, hi int) (collections.Version, error) {
			es := make([]collections.PQEntry[uint64, uint64, uint64], 0, hi-lo)
			for i := lo; i < hi; i++ {
				es = append(es, collections.PQEntry[uint64, uint64, uint64]{Priority: uint64(i), Key: uint64(i), Value: uint64(i) * 10})
			}
			return w.(*pq).Extend(ctx, es)
		})
	},
	insertOne: func(ctx context.Context, w syncReplica, i int) (collections.Version, error) {
		return w.(*pq).Insert(ctx, uint64(i), uint64(i), uint64(i)*10)
	},
	dump: func(r syncReplica) string {
		var b []byte
		for e := range pqOf(r).All() {
			b = binary.AppendUvarint(binary.AppendUvarint(binary.AppendUvarint(b, e.Priority), e.Key), e.Value)
		}
		return string(b)
	},
	want: func(n int) string {
		return uvarints(n, func(i int) []uint64 { return []uint64{uint64(i), uint64(i), uint64(i) * 10} })
	},
	itemBytes: 16,
	maxFrozen: 1000,
}

// mosaik: tests/collections/sync/set.rs
func TestSync_Set(t *testing.T) { runSyncSuite(t, setSubject) }

// mosaik: tests/collections/sync/vec.rs
func TestSync_Vec(t *testing.T) { runSyncSuite(t, vecSubject) }

// mosaik: tests/collections/sync/depq.rs
func TestSync_PriorityQueue(t *testing.T) { runSyncSuite(t, pqSubject) }
