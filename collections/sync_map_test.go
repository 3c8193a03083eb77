package collections_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/mosaik-go/mosaik/collections"
	"github.com/mosaik-go/mosaik/node"
)

// mapSubject runs the sync suite on Map[uint64, uint64] with mosaik's data
// (i, i·10).
var mapSubject = syncSubject{
	open: func(n *node.Node, name string, writer bool, opts ...collections.Option) (syncReplica, error) {
		if writer {
			return collections.NewMap[uint64, uint64](n, name, opts...)
		}
		return collections.NewMapReader[uint64, uint64](n, name, opts...)
	},
	fill: func(ctx context.Context, w syncReplica, from, to, batch int) (collections.Version, error) {
		m := w.(*collections.Map[uint64, uint64])
		var v collections.Version
		for lo := from; lo < to; lo += batch {
			kvs := make([]collections.KV[uint64, uint64], 0, min(batch, to-lo))
			for i := lo; i < min(lo+batch, to); i++ {
				kvs = append(kvs, collections.KV[uint64, uint64]{Key: uint64(i), Value: uint64(i) * 10})
			}
			var err error
			if v, err = m.Extend(ctx, kvs); err != nil {
				return 0, err
			}
		}
		return v, nil
	},
	insertOne: func(ctx context.Context, w syncReplica, i int) (collections.Version, error) {
		return w.(*collections.Map[uint64, uint64]).Insert(ctx, uint64(i), uint64(i)*10)
	},
	dump: func(r syncReplica) string {
		var b []byte
		for k, v := range mapReader(r).All() {
			b = binary.AppendUvarint(binary.AppendUvarint(b, k), v)
		}
		return string(b)
	},
	want: func(n int) string {
		// Keys are ordered by their canonical CBOR encoding, which for
		// unsigned integers is numeric order.
		var b []byte
		for i := range n {
			b = binary.AppendUvarint(binary.AppendUvarint(b, uint64(i)), uint64(i)*10)
		}
		return string(b)
	},
	probe: func(r syncReplica) error {
		m := mapReader(r)
		n := m.Len()
		if n == 0 {
			return nil
		}
		v, ok := m.Get(0)
		if !ok || v != 0 || !m.Contains(0) {
			return fmt.Errorf("len %d but key 0 is %v/%v", n, v, ok)
		}
		count := 0
		for range m.All() {
			count++
		}
		if count != m.Len() && count != n {
			return fmt.Errorf("len %d, iterated %d", n, count)
		}
		return nil
	},
	itemBytes: 12,
}

func mapReader(r syncReplica) *collections.MapReader[uint64, uint64] {
	if w, ok := r.(*collections.Map[uint64, uint64]); ok {
		return &w.MapReader
	}
	return r.(*collections.MapReader[uint64, uint64])
}

// mosaik: tests/collections/sync/map.rs (the template's cases; the
// Map-only ones are TestSync_MapOnly).
func TestSync_Map(t *testing.T) { runSyncSuite(t, mapSubject) }
