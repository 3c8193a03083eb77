package collections

import (
	"fmt"
	"math"

	"github.com/fxamacker/cbor/v2"

	"github.com/mosaik-go/mosaik/groups"
	"github.com/mosaik-go/mosaik/internal/detcbor"
)

// A late reader's restore, staged (groups.StagedRestorer): the snapshot's
// items are decoded into a new state while its chunks arrive, and the
// install only publishes it. Readers keep the last published state until
// then; a snapshot that fails its hash or its checks never replaces it.

// itemDecoder decodes a snapshot's items one at a time into a state of
// its own, with decodeRaw's checks (every key and value decodes, keys in
// strictly increasing order).
type itemDecoder[S any] interface {
	// next decodes the item at the start of b, adds it to the state and
	// returns the bytes after it. On error (b holds no whole valid item)
	// nothing changes.
	next(b []byte) ([]byte, error)
	// finish returns the state of the items read, which are the bytes
	// that the calls to next consumed, from the start of items.
	finish(items []byte) S
}

// stagedDecoder is a kind whose snapshot items decode one at a time.
type stagedDecoder[S any] interface {
	rawDecoder[S]
	// itemDecoder returns a decoder of a state that the header says holds
	// size items.
	itemDecoder(size uint64) itemDecoder[S]
}

// StageRestore implements groups.StagedRestorer for the kinds that
// decode items one at a time (Map); the others restore whole.
func (m *machine[S]) StageRestore() groups.RestoreStage {
	sd, ok := m.k.(stagedDecoder[S])
	if !ok {
		return nil
	}
	return &restoreStage[S]{m: m, rd: sd}
}

// restoreStage is a snapshot restore in progress. Feed runs on the
// fetch's goroutine and touches only the stage; Commit publishes.
type restoreStage[S any] struct {
	m     *machine[S]
	rd    stagedDecoder[S]
	d     itemDecoder[S] // once the header is read
	head  bool           // h is read
	h     snapshotHeader
	off   int // bytes of the state consumed: the header and whole items
	items int // where the items start
	// wait is the prefix length before which an item cut at the end of the
	// last prefix is not tried again: twice what it had then, so that a
	// large item costs a scan per doubling of its bytes, not one per chunk
	// (quadratic in its size).
	wait int
}

// Feed implements groups.RestoreStage: it decodes the whole items that
// arrived since the last call. An item cut by the end of prefix (or a
// bad one, which Commit reports) waits for the next call; CBOR items are
// self-delimiting, so a whole item in a prefix is that item in the whole.
func (st *restoreStage[S]) Feed(prefix []byte) error {
	if !st.head {
		rest, err := detcbor.UnmarshalFirst(prefix, &st.h)
		if err != nil {
			return nil
		}
		if st.h.Tag != st.m.tag {
			return fmt.Errorf("collections: snapshot of a %q, not a %q", st.h.Tag, st.m.tag)
		}
		st.head, st.off = true, len(prefix)-len(rest)
		st.items = st.off
		st.d = st.rd.itemDecoder(st.h.Size)
	}
	if len(prefix) < st.wait {
		return nil
	}
	for b := prefix[st.off:]; len(b) > 0; {
		rest, err := st.d.next(b)
		if err != nil {
			st.wait = st.off + 2*len(b)
			return nil
		}
		st.off += len(b) - len(rest)
		b = rest
	}
	return nil
}

// Commit implements groups.RestoreStage. A state the stage could not read
// to its end is restored whole instead, which reports why.
func (st *restoreStage[S]) Commit(state []byte) error {
	st.wait = 0 // the whole state: every item is whole
	_ = st.Feed(state)
	if !st.head || st.off != len(state) {
		return st.m.restoreBytes(st.rd, state)
	}
	s := st.d.finish(state[st.items:])
	if n := st.m.k.size(s); uint64(n) != st.h.Size {
		return fmt.Errorf("collections: snapshot of %s holds %d items, its header says %d", st.m.tag, n, st.h.Size)
	}
	st.m.publish(&published[S]{state: s, version: Version(st.h.Version), size: st.m.k.size(s)})
	return nil
}

// decodeRaw reads what decode reads. A pair of two strings (the common
// case) is cut out of b by hand; anything else goes through the general
// decoder. Either way every key and value is checked to decode. The
// entries stay in b, as the state's base (mapTree); b is never written
// (restoreRaw). A state of 4 GiB or more, past what the base's offsets
// address, is decoded into a tree instead.
func (k mapKind[K, V]) decodeRaw(b []byte, size uint64) (mapState[K, V], error) {
	var d *mapDecoder[K, V]
	if uint64(len(b)) > math.MaxUint32 {
		d = &mapDecoder[K, V]{tree: k.empty()}
	} else {
		d = k.newDecoder(min(size, uint64(len(b)/3))) // an entry takes 3 bytes or more
	}
	for rest := b; len(rest) > 0; {
		var err error
		if rest, err = d.next(rest); err != nil {
			return nil, err
		}
	}
	return d.finish(b), nil
}

func (k mapKind[K, V]) itemDecoder(size uint64) itemDecoder[mapState[K, V]] {
	return k.newDecoder(size)
}

// newDecoder returns a decoder with room for the offsets of size entries.
// The header's size is not checked yet: it only reserves room, and not
// past two million entries (16 MiB).
func (mapKind[K, V]) newDecoder(size uint64) *mapDecoder[K, V] {
	return &mapDecoder[K, V]{offs: make([]uint32, 0, 2*min(size, 1<<21))}
}

// mapDecoder is Map's itemDecoder: it checks the entries and records
// where each one's key and value start, for the base; or, with a tree,
// it loads them into that instead.
type mapDecoder[K, V any] struct {
	offs []uint32
	pos  int // bytes of entries read
	last []byte
	n    int
	tree mapState[K, V]
}

// finish returns the state of the entries read, which are items[:pos].
func (d *mapDecoder[K, V]) finish(items []byte) mapState[K, V] {
	if d.tree != nil {
		return d.tree
	}
	t := newMapTree[K, V]()
	if d.n > 0 {
		t.base = &mapBase{b: items[:d.pos:d.pos], offs: d.offs}
		t.n = d.n
	}
	return t
}

func (d *mapDecoder[K, V]) next(b []byte) ([]byte, error) {
	var kraw, vraw []byte
	if b[0] == 0x82 {
		if kl := stringItemLen(b[1:]); kl > 0 {
			if vl := stringItemLen(b[1+kl:]); vl > 0 {
				kraw, vraw = b[1:1+kl], b[1+kl:1+kl+vl]
			}
		}
	}
	if kraw == nil {
		var pair [2]cbor.RawMessage
		rest, err := detcbor.UnmarshalFirst(b, &pair)
		if err != nil {
			return nil, err
		}
		// The base needs the canonical pair, which every replica writes:
		// 0x82 then the two items, nothing else.
		if b[0] != 0x82 || len(b)-len(rest) != 1+len(pair[0])+len(pair[1]) {
			return nil, fmt.Errorf("entry %d is no canonical pair", d.n)
		}
		kraw, vraw = b[1:1+len(pair[0])], b[1+len(pair[0]):1+len(pair[0])+len(pair[1])]
	}
	it, ok := aliasItem[K, V](kraw, vraw)
	if !ok {
		return nil, fmt.Errorf("entry %d does not decode", d.n)
	}
	if d.n > 0 && string(kraw) <= string(d.last) {
		return nil, fmt.Errorf("entry %d is out of order", d.n)
	}
	d.last = kraw
	d.n++
	if d.tree != nil {
		d.tree.load(it) // in order, checked above: an append
	} else {
		d.offs = append(d.offs, uint32(d.pos+1), uint32(d.pos+1+len(kraw)))
	}
	l := 1 + len(kraw) + len(vraw)
	d.pos += l
	return b[l:], nil
}
