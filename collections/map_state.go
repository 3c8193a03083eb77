package collections

import (
	"bytes"
	"strings"
	"unsafe"

	"github.com/fxamacker/cbor/v2"
	tbtree "github.com/tidwall/btree"

	"github.com/mosaik-go/mosaik/internal/detcbor"
)

// mapTree is a Map's content: an optional immutable base, the entries of
// the snapshot it was restored from kept as that snapshot's bytes, under
// an overlay tree of the changes applied since (entries inserted or
// replaced, and tombstones for the base's entries removed).
//
// A restore therefore builds no tree: a late reader of a million entries
// keeps the bytes it received and 8 B of offsets per entry, with no
// pointers for the GC to mark, where a tree of decoded items took about
// 134 B per entry more and most of the restore's time in fresh memory.
// The price is on reads of the base: a lookup is a binary search over
// the snapshot's bytes, and a value other than a string or a byte string
// is decoded at each read (as is a key of such a type on iteration).
// Replicas that were never restored, or were cleared since, have no base
// and are the plain tree.
//
// The content, its order and every encoding are those of the tree the
// same commands would have built: keys are ordered by their encoding in
// both, the base's entries are the canonical pairs the snapshot holds,
// and a snapshot written from a base and an overlay is byte for byte the
// one written from the tree (TestMapBase_SnapshotMatchesTree).
type mapTree[K, V any] struct {
	base *mapBase
	// ov holds the live entries inserted or replaced since the restore
	// (all of them when there is no base), and tombstones: entries with
	// an empty venc (no CBOR item is empty) that hide the base's entry of
	// their key. A tombstone exists only for a key of the base.
	ov *tbtree.BTreeG[mapItem[K, V]]
	n  int // live entries
}

// mapBase is a restored snapshot's entries, in the snapshot's bytes:
// each entry is 0x82 (a 2-array), the key's and the value's canonical
// encodings, entries back to back in strictly increasing key order (the
// decoder checked all of it, and that every key and value decodes). It
// is never written.
type mapBase struct {
	b []byte
	// offs holds two offsets in b per entry: of its key and of its value.
	// The value runs to the next entry's 0x82, or to the end of b.
	offs []uint32
}

func (b *mapBase) len() int { return len(b.offs) / 2 }

func (b *mapBase) key(i int) string {
	return aliasString(b.b[b.offs[2*i]:b.offs[2*i+1]])
}

func (b *mapBase) val(i int) string {
	end := len(b.b)
	if 2*i+2 < len(b.offs) {
		end = int(b.offs[2*i+2]) - 1
	}
	return aliasString(b.b[b.offs[2*i+1]:end])
}

// search returns the index of the entry whose key encodes as kenc.
func (b *mapBase) search(kenc string) (int, bool) {
	lo, hi := 0, b.len() // the entry is in [lo, hi) if anywhere
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		switch k := b.key(m); {
		case k < kenc:
			lo = m + 1
		case k > kenc:
			hi = m
		default:
			return m, true
		}
	}
	return lo, false
}

func newMapTree[K, V any]() *mapTree[K, V] {
	return &mapTree[K, V]{ov: tbtree.NewBTreeGOptions(mapLess[K, V], tbtree.Options{Degree: btreeDegree, NoLocks: true})}
}

// Len returns the number of entries.
func (t *mapTree[K, V]) Len() int { return t.n }

// copy returns an independent copy in O(1): the base is shared (it is
// never written), the overlay is copied on write.
func (t *mapTree[K, V]) copy() *mapTree[K, V] {
	return &mapTree[K, V]{base: t.base, ov: t.ov.Copy(), n: t.n}
}

// getEnc returns the value's encoding at the key encoded as kenc.
func (t *mapTree[K, V]) getEnc(kenc string) (string, bool) {
	if t.ov.Len() > 0 {
		if it, ok := t.ov.Get(mapItem[K, V]{kenc: kenc}); ok {
			return it.venc, it.venc != ""
		}
	}
	if t.base != nil {
		if i, ok := t.base.search(kenc); ok {
			return t.base.val(i), true
		}
	}
	return "", false
}

// get returns the entry at the key encoded as kenc.
func (t *mapTree[K, V]) get(kenc string) (mapItem[K, V], bool) {
	if t.ov.Len() > 0 {
		if it, ok := t.ov.Get(mapItem[K, V]{kenc: kenc}); ok {
			if it.venc == "" {
				return mapItem[K, V]{}, false // removed
			}
			return it, true
		}
	}
	if t.base != nil {
		if i, ok := t.base.search(kenc); ok {
			// The base's own key bytes: kenc may be a read's pooled
			// buffer (encodeReadKey), which the item must not alias.
			return baseItem[K, V](t.base.key(i), t.base.val(i)), true
		}
	}
	return mapItem[K, V]{}, false
}

// baseItem decodes an entry of the base.
func baseItem[K, V any](kenc, venc string) mapItem[K, V] {
	return mapItem[K, V]{kenc: kenc, venc: venc, k: trustedDecode[K](kenc), v: trustedDecode[V](venc)}
}

// trustedDecode decodes enc, which a decoder already accepted as a T:
// strings point into enc, with no allocation, byte strings are copied
// (a caller may write to what a read returns, and enc is the state's
// canonical encoding: a restored map's point into the snapshot bytes that
// it hashes and serves), and other types skip decode's round-trip check.
func trustedDecode[T any](enc string) T {
	var v T
	raw := unsafe.Slice(unsafe.StringData(enc), len(enc))
	switch p := any(&v).(type) {
	case *string:
		if b, ok := canonicalString(raw, cborText); ok {
			*p = aliasString(b)
			return v
		}
	case *[]byte:
		if b, ok := canonicalString(raw, cborBytes); ok {
			*p = bytes.Clone(b)
			return v
		}
	}
	return unmarshalTrusted[T](raw)
}

// unmarshalTrusted is trustedDecode's general case, apart so that the
// fast paths' value does not escape.
func unmarshalTrusted[T any](raw []byte) T {
	var v T
	_ = detcbor.Unmarshal(raw, &v) // it decoded when the base was built
	return v
}

// set inserts or replaces it (a live entry).
func (t *mapTree[K, V]) set(it mapItem[K, V]) {
	prev, replaced := t.ov.Set(it)
	switch {
	case replaced:
		if prev.venc == "" {
			t.n++ // over a tombstone
		}
	case t.base == nil:
		t.n++
	default:
		if _, ok := t.base.search(it.kenc); !ok {
			t.n++
		}
	}
}

// delete removes the entry at the key encoded as kenc, if any.
func (t *mapTree[K, V]) delete(kenc string) {
	if t.base != nil {
		if i, ok := t.base.search(kenc); ok {
			// The tombstone's key is the base's own bytes.
			prev, replaced := t.ov.Set(mapItem[K, V]{kenc: t.base.key(i)})
			if !replaced || prev.venc != "" {
				t.n--
			}
			return
		}
	}
	if _, ok := t.ov.Delete(mapItem[K, V]{kenc: kenc}); ok {
		t.n--
	}
}

// load appends it, whose key is past every key held (a tree without a
// base).
func (t *mapTree[K, V]) load(it mapItem[K, V]) {
	t.ov.Load(it)
	t.n++
}

// clear removes every entry, and the base with them.
func (t *mapTree[K, V]) clear() {
	t.base, t.n = nil, 0
	t.ov.Clear()
}

// merge calls inBase with the index of every live entry of the base and
// inOv with every live entry of the overlay, in key order, until one
// returns false: the overlay's entry (or tombstone) takes the place of
// the base's of the same key.
func (t *mapTree[K, V]) merge(inBase func(i int) bool, inOv func(it mapItem[K, V]) bool) {
	if t.base == nil {
		t.ov.Scan(inOv)
		return
	}
	b, n := t.base, t.base.len()
	i := 0
	if t.ov.Len() > 0 {
		iter := t.ov.Iter()
		defer iter.Release()
		for ok := iter.First(); ok; ok = iter.Next() {
			it := iter.Item()
			for ; i < n; i++ {
				if k := b.key(i); k >= it.kenc {
					if k == it.kenc {
						i++ // replaced or removed
					}
					break
				}
				if !inBase(i) {
					return
				}
			}
			if it.venc != "" && !inOv(it) {
				return
			}
		}
	}
	for ; i < n; i++ {
		if !inBase(i) {
			return
		}
	}
}

// scanEnc calls fn with every entry's encodings, in key order, until it
// returns false.
func (t *mapTree[K, V]) scanEnc(fn func(kenc, venc string) bool) {
	t.merge(func(i int) bool { return fn(t.base.key(i), t.base.val(i)) },
		func(it mapItem[K, V]) bool { return fn(it.kenc, it.venc) })
}

// Scan calls fn with every entry, in key order, until it returns false.
// Entries of the base are decoded on the way.
func (t *mapTree[K, V]) Scan(fn func(it mapItem[K, V]) bool) {
	t.merge(func(i int) bool { return fn(baseItem[K, V](t.base.key(i), t.base.val(i))) }, fn)
}

// compact folds the base into the overlay once the overlay holds more
// entries (replacements, tombstones, new keys) than half the base: from
// then on much of the base's bytes are dead, and every live entry is kept
// alive by them, so a long-lived replica whose entries get rewritten
// would otherwise hold up to twice its content. The fold copies the live
// entries of the base out of its bytes (which the published states that
// still share the base keep), so that the bytes can go. It costs O(n)
// once per restore, on the command that crosses the threshold.
func (t *mapTree[K, V]) compact(k mapKind[K, V]) {
	if t.base == nil || t.ov.Len() <= t.base.len()/2 {
		return
	}
	ov := tbtree.NewBTreeGOptions(mapLess[K, V], tbtree.Options{Degree: btreeDegree, NoLocks: true})
	t.merge(func(i int) bool {
		// k.item copies the encodings: nothing of the base is kept.
		it, ok := k.item(cbor.RawMessage(t.base.key(i)), cbor.RawMessage(t.base.val(i)))
		if !ok {
			it = baseItem[K, V](strings.Clone(t.base.key(i)), strings.Clone(t.base.val(i))) // cannot be: the base decoded
		}
		ov.Load(it)
		return true
	}, func(it mapItem[K, V]) bool {
		ov.Load(it)
		return true
	})
	t.base, t.ov = nil, ov
}
