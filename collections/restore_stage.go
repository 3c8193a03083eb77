package collections

import (
	"fmt"

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
	state() S
}

// stagedDecoder is a kind whose snapshot items decode one at a time.
type stagedDecoder[S any] interface {
	rawDecoder[S]
	itemDecoder() itemDecoder[S]
}

// StageRestore implements groups.StagedRestorer for the kinds that
// decode items one at a time (Map); the others restore whole.
func (m *machine[S]) StageRestore() groups.RestoreStage {
	sd, ok := m.k.(stagedDecoder[S])
	if !ok {
		return nil
	}
	return &restoreStage[S]{m: m, rd: sd, d: sd.itemDecoder()}
}

// restoreStage is a snapshot restore in progress. Feed runs on the
// fetch's goroutine and touches only the stage; Commit publishes.
type restoreStage[S any] struct {
	m    *machine[S]
	rd   rawDecoder[S]
	d    itemDecoder[S]
	head bool // h is read
	h    snapshotHeader
	off  int // bytes of the state consumed: the header and whole items
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
	}
	for b := prefix[st.off:]; len(b) > 0; {
		rest, err := st.d.next(b)
		if err != nil {
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
	_ = st.Feed(state)
	if !st.head || st.off != len(state) {
		return st.m.restoreBytes(st.rd, state)
	}
	s := st.d.state()
	if n := st.m.k.size(s); uint64(n) != st.h.Size {
		return fmt.Errorf("collections: snapshot of %s holds %d items, its header says %d", st.m.tag, n, st.h.Size)
	}
	st.m.publish(&published[S]{state: s, version: Version(st.h.Version), size: st.m.k.size(s)})
	return nil
}

// decodeRaw reads what decode reads. A pair of two strings (the common
// case) is cut out of b by hand; anything else goes through the general
// decoder. Either way item checks every key and value.
func (k mapKind[K, V]) decodeRaw(b []byte) (mapState[K, V], error) {
	d := &mapDecoder[K, V]{s: k.empty()}
	for len(b) > 0 {
		var err error
		if b, err = d.next(b); err != nil {
			return nil, err
		}
	}
	return d.s, nil
}

func (k mapKind[K, V]) itemDecoder() itemDecoder[mapState[K, V]] {
	return &mapDecoder[K, V]{s: k.empty()}
}

// mapDecoder is Map's itemDecoder.
type mapDecoder[K, V any] struct {
	s    mapState[K, V]
	last string
	n    int
}

func (d *mapDecoder[K, V]) state() mapState[K, V] { return d.s }

func (d *mapDecoder[K, V]) next(b []byte) ([]byte, error) {
	var kraw, vraw []byte
	if b[0] == 0x82 {
		if kl := stringItemLen(b[1:]); kl > 0 {
			if vl := stringItemLen(b[1+kl:]); vl > 0 {
				kraw, vraw, b = b[1:1+kl], b[1+kl:1+kl+vl], b[1+kl+vl:]
			}
		}
	}
	if kraw == nil {
		var pair [2]cbor.RawMessage
		rest, err := detcbor.UnmarshalFirst(b, &pair)
		if err != nil {
			return nil, err
		}
		kraw, vraw, b = pair[0], pair[1], rest
	}
	it, ok := aliasItem[K, V](kraw, vraw)
	if !ok {
		return nil, fmt.Errorf("entry %d does not decode", d.n)
	}
	if d.n > 0 && it.kenc <= d.last {
		return nil, fmt.Errorf("entry %d is out of order", d.n)
	}
	d.last = it.kenc
	d.n++
	d.s.Load(it) // in order, checked above: an append
	return b, nil
}
