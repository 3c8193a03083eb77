package collections

import (
	"cmp"
	"errors"
	"fmt"
	"io"

	"github.com/fxamacker/cbor/v2"
	"github.com/google/btree"
)

// PriorityQueue op codes (PROTOCOL.md §22, "PriorityQueue commands").
const (
	pqInsert         = 1 // A key, B value, C priority
	pqExtend         = 2 // Many: key, value, priority, key, value, priority, ...
	pqUpdatePriority = 3 // A key, C priority
	pqUpdateValue    = 4 // A key, B value
	pqCAS            = 5 // A key, B expected; N == 2: C new, N == 0: delete
	pqRemove         = 6 // A key
	pqRemoveKeys     = 7 // Many: keys
	pqRemoveRange    = 8 // N start bound, M end bound (boundKind); B start, C end priority
	pqClear          = 9
)

// boundKind is how a RemoveRange end is bounded, on the wire (N and M).
type boundKind uint8

const (
	boundUnbounded boundKind = iota // no priority argument
	boundIncluded
	boundExcluded
)

// pqItem is one entry. It sits in two trees: by key encoding (lookups,
// snapshots) and by (priority, key encoding) for the ordered reads. Items
// are values, never shared mutable pointers, because the trees are
// cloned copy-on-write and a published state must never change.
type pqItem[P cmp.Ordered, K, V any] struct {
	kenc, venc, penc string
	p                P
	k                K
	v                V
}

func pqKeyLess[P cmp.Ordered, K, V any](a, b pqItem[P, K, V]) bool { return a.kenc < b.kenc }

// pqPrioLess orders by the priorities' natural order (cmp.Compare: NaN
// first, -0 equal to +0), then by key encoding. Not by the priorities'
// encodings: CBOR byte order is not numeric order for negative numbers
// or floats.
func pqPrioLess[P cmp.Ordered, K, V any](a, b pqItem[P, K, V]) bool {
	if c := cmp.Compare(a.p, b.p); c != 0 {
		return c < 0
	}
	return a.kenc < b.kenc
}

// pqState is a queue: both trees always hold the same items.
type pqState[P cmp.Ordered, K, V any] struct {
	byKey  *btree.BTreeG[pqItem[P, K, V]]
	byPrio *btree.BTreeG[pqItem[P, K, V]]
}

// pqKind is PriorityQueue's pure core. capacity bounds the length
// (math.MaxUint64 for an unbounded queue).
type pqKind[P cmp.Ordered, K, V any] struct{ capacity uint64 }

func (pqKind[P, K, V]) empty() *pqState[P, K, V] {
	return &pqState[P, K, V]{
		byKey:  btree.NewG(btreeDegree, pqKeyLess[P, K, V]),
		byPrio: btree.NewG(btreeDegree, pqPrioLess[P, K, V]),
	}
}

func (pqKind[P, K, V]) clone(s *pqState[P, K, V]) *pqState[P, K, V] {
	return &pqState[P, K, V]{byKey: s.byKey.Clone(), byPrio: s.byPrio.Clone()}
}

func (pqKind[P, K, V]) size(s *pqState[P, K, V]) int { return s.byKey.Len() }
func (pqKind[P, K, V]) reports(op uint8) bool        { return op == pqCAS }

func (k pqKind[P, K, V]) apply(s *pqState[P, K, V], c *command) (*pqState[P, K, V], outcome) {
	switch c.Op {
	case pqInsert:
		it, ok := k.item(c.A, c.B, c.C)
		if !ok {
			return s, invalid
		}
		k.insert(s, it)
	case pqExtend:
		if len(c.Many)%3 != 0 {
			return s, invalid
		}
		items := make([]pqItem[P, K, V], 0, len(c.Many)/3)
		for i := 0; i < len(c.Many); i += 3 {
			it, ok := k.item(c.Many[i], c.Many[i+1], c.Many[i+2])
			if !ok {
				return s, invalid // all or nothing
			}
			items = append(items, it)
		}
		for _, it := range items {
			k.insert(s, it)
		}
	case pqUpdatePriority:
		p, ok := decode[P](c.C)
		if _, kok := decode[K](c.A); !ok || !kok {
			return s, invalid
		}
		cur, found := s.byKey.Get(pqItem[P, K, V]{kenc: string(c.A)})
		if !found {
			return s, noop
		}
		s.byPrio.Delete(cur)
		cur.p, cur.penc = p, string(c.C)
		s.byKey.ReplaceOrInsert(cur)
		s.byPrio.ReplaceOrInsert(cur)
	case pqUpdateValue:
		v, ok := decode[V](c.B)
		if _, kok := decode[K](c.A); !ok || !kok {
			return s, invalid
		}
		cur, found := s.byKey.Get(pqItem[P, K, V]{kenc: string(c.A)})
		if !found {
			return s, noop
		}
		cur.v, cur.venc = v, string(c.B)
		s.byKey.ReplaceOrInsert(cur)
		s.byPrio.ReplaceOrInsert(cur)
	case pqCAS:
		return k.cas(s, c)
	case pqRemove:
		if _, ok := decode[K](c.A); !ok {
			return s, invalid
		}
		k.remove(s, string(c.A))
	case pqRemoveKeys:
		for _, raw := range c.Many {
			if _, ok := decode[K](raw); !ok {
				return s, invalid
			}
		}
		for _, raw := range c.Many {
			k.remove(s, string(raw))
		}
	case pqRemoveRange:
		lo, ok := decodeBound[P](c.N, c.B)
		hi, hok := decodeBound[P](c.M, c.C)
		if !ok || !hok {
			return s, invalid
		}
		k.removeRange(s, lo, hi)
	case pqClear:
		s.byKey.Clear(false)
		s.byPrio.Clear(false)
	default:
		return s, invalid
	}
	return s, applied
}

func (k pqKind[P, K, V]) cas(s *pqState[P, K, V], c *command) (*pqState[P, K, V], outcome) {
	if _, ok := decode[K](c.A); !ok {
		return s, invalid
	}
	if _, ok := decode[V](c.B); !ok {
		return s, invalid
	}
	var nv V
	switch c.N {
	case 0: // C is not read (the wire may carry an empty C as null)
	case 2:
		var ok bool
		if nv, ok = decode[V](c.C); !ok {
			return s, invalid
		}
	default:
		return s, invalid
	}
	cur, found := s.byKey.Get(pqItem[P, K, V]{kenc: string(c.A)})
	if !found || cur.venc != string(c.B) {
		return s, noop
	}
	if c.N == 0 {
		k.remove(s, cur.kenc)
		return s, applied
	}
	cur.v, cur.venc = nv, string(c.C)
	s.byKey.ReplaceOrInsert(cur)
	s.byPrio.ReplaceOrInsert(cur)
	return s, applied
}

// insert upserts it (moving its key to the new priority), then evicts
// while the queue is over capacity: always the entry Min returns, the
// lowest priority with the smallest key encoding, which may be it.
// An upsert does not grow the queue, so it never evicts.
func (k pqKind[P, K, V]) insert(s *pqState[P, K, V], it pqItem[P, K, V]) {
	if old, found := s.byKey.ReplaceOrInsert(it); found {
		s.byPrio.Delete(old)
	}
	s.byPrio.ReplaceOrInsert(it)
	for uint64(s.byKey.Len()) > k.capacity {
		low, _ := s.byPrio.DeleteMin()
		s.byKey.Delete(low)
	}
}

func (pqKind[P, K, V]) remove(s *pqState[P, K, V], kenc string) {
	if old, found := s.byKey.Delete(pqItem[P, K, V]{kenc: kenc}); found {
		s.byPrio.Delete(old)
	}
}

// pqBound is a decoded RemoveRange end.
type pqBound[P cmp.Ordered] struct {
	kind boundKind
	p    P
}

func decodeBound[P cmp.Ordered](kind uint64, raw cbor.RawMessage) (pqBound[P], bool) {
	switch kind {
	case uint64(boundUnbounded): // raw is not read
		return pqBound[P]{}, true
	case uint64(boundIncluded), uint64(boundExcluded):
		p, ok := decode[P](raw)
		return pqBound[P]{kind: boundKind(kind), p: p}, ok
	}
	return pqBound[P]{}, false
}

// above reports whether p is on the inner side of lower bound b.
func (b pqBound[P]) above(p P) bool {
	switch b.kind {
	case boundIncluded:
		return cmp.Compare(p, b.p) >= 0
	case boundExcluded:
		return cmp.Compare(p, b.p) > 0
	}
	return true
}

// below reports whether p is on the inner side of upper bound b.
func (b pqBound[P]) below(p P) bool {
	switch b.kind {
	case boundIncluded:
		return cmp.Compare(p, b.p) <= 0
	case boundExcluded:
		return cmp.Compare(p, b.p) < 0
	}
	return true
}

// removeRange removes every entry whose priority lies within [lo, hi]
// (each end inclusive, exclusive or unbounded). An empty range (lo past
// hi) removes nothing.
func (k pqKind[P, K, V]) removeRange(s *pqState[P, K, V], lo, hi pqBound[P]) {
	var doomed []pqItem[P, K, V]
	visit := func(it pqItem[P, K, V]) bool {
		if !hi.below(it.p) {
			return false
		}
		if lo.above(it.p) {
			doomed = append(doomed, it)
		}
		return true
	}
	if lo.kind == boundUnbounded {
		s.byPrio.Ascend(visit)
	} else {
		// The empty key encoding sorts before every key of priority lo.p.
		s.byPrio.AscendGreaterOrEqual(pqItem[P, K, V]{p: lo.p}, visit)
	}
	for _, it := range doomed {
		s.byPrio.Delete(it)
		s.byKey.Delete(it)
	}
}

func (pqKind[P, K, V]) item(kraw, vraw, praw cbor.RawMessage) (pqItem[P, K, V], bool) {
	key, ok := decode[K](kraw)
	if !ok {
		return pqItem[P, K, V]{}, false
	}
	v, ok := decode[V](vraw)
	if !ok {
		return pqItem[P, K, V]{}, false
	}
	p, ok := decode[P](praw)
	if !ok {
		return pqItem[P, K, V]{}, false
	}
	return pqItem[P, K, V]{kenc: string(kraw), venc: string(vraw), penc: string(praw), p: p, k: key, v: v}, true
}

// encode writes the entries in key order, as [key, value, priority]
// triples of raw canonical CBOR.
func (pqKind[P, K, V]) encode(s *pqState[P, K, V], enc *cbor.Encoder) error {
	var err error
	s.byKey.Ascend(func(it pqItem[P, K, V]) bool {
		err = enc.Encode([3]cbor.RawMessage{cbor.RawMessage(it.kenc), cbor.RawMessage(it.venc), cbor.RawMessage(it.penc)})
		return err == nil
	})
	return err
}

func (k pqKind[P, K, V]) decode(dec *cbor.Decoder) (*pqState[P, K, V], error) {
	s := k.empty()
	var last string
	for n := 0; ; n++ {
		var e [3]cbor.RawMessage
		if err := dec.Decode(&e); err != nil {
			if errors.Is(err, io.EOF) {
				return s, nil
			}
			return nil, err
		}
		if uint64(n) >= k.capacity {
			return nil, fmt.Errorf("more entries than the capacity %d", k.capacity)
		}
		it, ok := k.item(e[0], e[1], e[2])
		if !ok {
			return nil, fmt.Errorf("entry %d does not decode", n)
		}
		if n > 0 && it.kenc <= last {
			return nil, fmt.Errorf("entry %d is out of order", n)
		}
		last = it.kenc
		s.byKey.ReplaceOrInsert(it)
		s.byPrio.ReplaceOrInsert(it)
	}
}
