package collections_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mosaik-go/mosaik/collections"
	"github.com/mosaik-go/mosaik/groups"
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

// openMap opens a writer on f.w and waits until it is online.
func openMap[K, V any](t *testing.T, f *syncFixture, name string, opts ...collections.Option) *collections.Map[K, V] {
	t.Helper()
	m, err := collections.NewMap[K, V](f.w, name, append([]collections.Option{collections.WithGroupOptions(groups.WithParams(syncParams()))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	syncOnline(t, 15*time.Second, m)
	return m
}

// lateReaderEquals opens a reader of w's map on node n once the data is
// in, and checks that it reaches w's version with w's entries, in w's
// order.
func lateReaderEquals[K comparable, V comparable](t *testing.T, f *syncFixture, n *node.Node, w *collections.Map[K, V], opts ...collections.Option) {
	t.Helper()
	r, err := collections.NewMapReader[K, V](n, w.Name(), append([]collections.Option{collections.WithGroupOptions(groups.WithParams(syncParams()))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	if err := r.When().Reaches(tctx(t, 30*time.Second), w.Version()); err != nil {
		t.Fatalf("reader at %d, writer at %d: %v", r.Version(), w.Version(), err)
	}
	type kv struct {
		k K
		v V
	}
	collect := func(all func(func(K, V) bool)) (out []kv) {
		for k, v := range all {
			out = append(out, kv{k, v})
		}
		return out
	}
	if got, want := collect(r.All()), collect(w.All()); !slices.Equal(got, want) {
		t.Fatalf("reader holds %d entries, writer %d (or another order)", len(got), len(want))
	}
}

func genKVs[K, V any](n int, kv func(i int) (K, V)) []collections.KV[K, V] {
	out := make([]collections.KV[K, V], n)
	for i := range out {
		out[i].Key, out[i].Value = kv(i)
	}
	return out
}

// mosaik: tests/collections/sync/map.rs, the cases only Map has (with
// their own key and value types). They share one set of nodes.
func TestSync_MapOnly(t *testing.T) {
	f := newSyncFixture(t, mapSubject)

	// mosaik: mixed_mutations
	t.Run("mixed_mutations", func(t *testing.T) {
		w := openMap[uint64, uint64](t, f, freshName(t))
		ctx := tctx(t, 20*time.Second)
		for i := range uint64(20) {
			if _, err := w.Insert(ctx, i, i*10); err != nil {
				t.Fatal(err)
			}
		}
		for i := uint64(0); i < 20; i += 3 {
			if _, err := w.Insert(ctx, i, i*100); err != nil { // overwrite
				t.Fatal(err)
			}
		}
		if _, err := w.Remove(ctx, 7); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Extend(ctx, genKVs(10, func(i int) (uint64, uint64) { return uint64(15 + i), uint64(i) })); err != nil {
			t.Fatal(err)
		}
		if got, _ := w.Get(3); got != 300 || w.Contains(7) || w.Len() != 24 {
			t.Fatalf("writer: key 3 = %d, has 7 %v, len %d", got, w.Contains(7), w.Len())
		}
		lateReaderEquals(t, f, f.r2, w)
	})

	// mosaik: large_values — 100 values of 10 KB, fetch batch 10 items.
	t.Run("large_values", func(t *testing.T) {
		w := openMap[uint64, string](t, f, freshName(t))
		for lo := 0; lo < 100; lo += 10 {
			if _, err := w.Extend(tctx(t, 10*time.Second), genKVs(10, func(i int) (uint64, string) {
				return uint64(lo + i), strings.Repeat(string(rune('a'+(lo+i)%26)), 10_000)
			})); err != nil {
				t.Fatal(err)
			}
		}
		sync := collections.WithSync(collections.SyncConfig{ChunkBytes: 10 * 10_010})
		lateReaderEquals(t, f, f.r1, w, sync)
		lateReaderEquals(t, f, f.r2, w, sync)
	})

	// mosaik: overwrite_keys
	t.Run("overwrite_keys", func(t *testing.T) {
		w := openMap[uint64, uint64](t, f, freshName(t))
		for round := range uint64(2) {
			for lo := 0; lo < 100; lo += 10 {
				if _, err := w.Extend(tctx(t, 10*time.Second), genKVs(10, func(i int) (uint64, uint64) {
					return uint64(lo + i), uint64(lo+i)*10 + round*1000
				})); err != nil {
					t.Fatal(err)
				}
			}
		}
		if v, _ := w.Get(42); v != 1420 {
			t.Fatalf("key 42 holds %d", v)
		}
		lateReaderEquals(t, f, f.r2, w)
	})

	// mosaik: extend_with_overlapping_keys
	t.Run("extend_with_overlapping_keys", func(t *testing.T) {
		w := openMap[uint64, uint64](t, f, freshName(t))
		if _, err := w.Extend(tctx(t, 10*time.Second), genKVs(100, func(i int) (uint64, uint64) { return uint64(i), uint64(i) * 10 })); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Extend(tctx(t, 10*time.Second), genKVs(100, func(i int) (uint64, uint64) { return uint64(50 + i), uint64(50+i) * 100 })); err != nil {
			t.Fatal(err)
		}
		if a, _ := w.Get(49); w.Len() != 150 || a != 490 {
			t.Fatalf("len %d, key 49 = %d", w.Len(), a)
		}
		if b, _ := w.Get(50); b != 5000 {
			t.Fatalf("key 50 = %d, want 5000", b)
		}
		lateReaderEquals(t, f, f.r2, w)
	})

	// mosaik: remove_nonexistent_keys
	t.Run("remove_nonexistent_keys", func(t *testing.T) {
		w := openMap[uint64, uint64](t, f, freshName(t))
		if _, err := w.Extend(tctx(t, 10*time.Second), genKVs(10, func(i int) (uint64, uint64) { return uint64(i), uint64(i) * 10 })); err != nil {
			t.Fatal(err)
		}
		if _, err := w.RemoveMany(tctx(t, 10*time.Second), []uint64{100, 101, 102}); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Remove(tctx(t, 10*time.Second), 999); err != nil {
			t.Fatal(err)
		}
		if w.Len() != 10 {
			t.Fatalf("len %d after removing absent keys", w.Len())
		}
		if _, err := w.Remove(tctx(t, 10*time.Second), 5); err != nil {
			t.Fatal(err)
		}
		if w.Len() != 9 || w.Contains(5) {
			t.Fatalf("len %d after removing key 5", w.Len())
		}
		lateReaderEquals(t, f, f.r2, w)
	})

	// mosaik: string_keys
	t.Run("string_keys", func(t *testing.T) {
		w := openMap[string, uint64](t, f, freshName(t))
		for lo := 0; lo < 50; lo += 5 {
			if _, err := w.Extend(tctx(t, 10*time.Second), genKVs(5, func(i int) (string, uint64) {
				return fmt.Sprintf("key-%d", lo+i), uint64(lo + i)
			})); err != nil {
				t.Fatal(err)
			}
		}
		lateReaderEquals(t, f, f.r2, w)
	})
}
