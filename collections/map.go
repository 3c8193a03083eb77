package collections

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"unsafe"

	"github.com/fxamacker/cbor/v2"

	"github.com/mosaik-go/mosaik/internal/detcbor"
)

// Map op codes (PROTOCOL.md §22.2).
const (
	mapInsert     = 1 // A key, B value
	mapRemove     = 2 // A key
	mapClear      = 3
	mapCAS        = 4 // A key, B expected (if N&1), C new (if N&2)
	mapExtend     = 5 // Many: key, value, key, value, ...
	mapRemoveMany = 6 // Many: keys
)

// mapItem is one entry; items are ordered by the key's canonical
// encoding, so iteration order is the same on every replica.
type mapItem[K, V any] struct {
	kenc, venc string
	k          K
	v          V
}

func mapLess[K, V any](a, b mapItem[K, V]) bool { return a.kenc < b.kenc }

// mapState is a mapTree: a restored snapshot's bytes as an immutable
// base, under a tidwall/btree of the changes since. The tree is a
// tidwall/btree rather than the google/btree of the other kinds: its Load
// appends sorted input to the rightmost leaf without a search (a restore
// of more than 4 GiB, which has no base, builds the tree in one pass).
// Copy is O(1) copy-on-write like google/btree's Clone, and the tree has
// no locks: a published state is never written, and only the holder of
// the machine's working state copies and writes it (Copy marks the
// source's nodes shared by giving it a new isoid, before the source is
// published).
type mapState[K, V any] = *mapTree[K, V]

// mapKind is Map's pure core.
type mapKind[K, V any] struct{}

const btreeDegree = 32

func (mapKind[K, V]) empty() mapState[K, V] { return newMapTree[K, V]() }

func (mapKind[K, V]) clone(s mapState[K, V]) mapState[K, V] { return s.copy() }
func (mapKind[K, V]) size(s mapState[K, V]) int             { return s.Len() }
func (mapKind[K, V]) reports(op uint8) bool                 { return op == mapCAS }

func (k mapKind[K, V]) apply(s mapState[K, V], c *command) (mapState[K, V], outcome) {
	switch c.Op {
	case mapInsert:
		it, ok := k.item(c.A, c.B)
		if !ok {
			return s, invalid
		}
		s.set(it)
	case mapRemove:
		if _, ok := decode[K](c.A); !ok {
			return s, invalid
		}
		s.delete(string(c.A))
	case mapClear:
		s.clear()
	case mapCAS:
		// Every argument is checked before the comparison, so that
		// whether a command is invalid does not depend on the state.
		// On the wire an absent argument arrives as CBOR null (toarray
		// ignores omitempty): it is valid only where null is a V.
		if _, ok := decode[K](c.A); !ok {
			return s, invalid
		}
		hasExp, hasNew := c.N&1 != 0, c.N&2 != 0
		if _, ok := decode[V](c.B); hasExp && !ok {
			return s, invalid
		}
		var it mapItem[K, V]
		if hasNew {
			var ok bool
			if it, ok = k.item(c.A, c.C); !ok {
				return s, invalid
			}
		}
		cur, found := s.getEnc(string(c.A))
		switch {
		case found && hasExp && cur == string(c.B):
		case !found && !hasExp:
		default:
			return s, noop
		}
		if !hasNew {
			if !found {
				return s, noop // expected absent, stays absent
			}
			s.delete(string(c.A))
			return s, applied
		}
		s.set(it)
	case mapExtend:
		if len(c.Many)%2 != 0 {
			return s, invalid
		}
		items := make([]mapItem[K, V], 0, len(c.Many)/2)
		for i := 0; i < len(c.Many); i += 2 {
			it, ok := k.item(c.Many[i], c.Many[i+1])
			if !ok {
				return s, invalid // all or nothing
			}
			items = append(items, it)
		}
		for _, it := range items {
			s.set(it)
		}
	case mapRemoveMany:
		for _, raw := range c.Many {
			if _, ok := decode[K](raw); !ok {
				return s, invalid
			}
		}
		for _, raw := range c.Many {
			s.delete(string(raw))
		}
	default:
		return s, invalid
	}
	s.compact(k)
	return s, applied
}

// item decodes an entry. A decoded string key or value points into its
// own encoding's copy (strings never change), which saves an allocation
// for each; other types, byte strings included (a caller may write into a
// []byte it read), are decoded into their own memory. The key's encoding
// stays an allocation of its own: Get compares encodings all along its
// descent, and keys packed densely (rather than each beside its value)
// keep that walk in cache.
func (mapKind[K, V]) item(kraw, vraw cbor.RawMessage) (mapItem[K, V], bool) {
	kenc, venc := string(kraw), string(vraw)
	k, ok := decodeShared[K](kenc)
	if !ok {
		return mapItem[K, V]{}, false
	}
	v, ok := decodeShared[V](venc)
	if !ok {
		return mapItem[K, V]{}, false
	}
	return mapItem[K, V]{kenc: kenc, venc: venc, k: k, v: v}, true
}

// decodeShared is decode of enc, except that a decoded string points into
// enc rather than being a copy.
func decodeShared[T any](enc string) (T, bool) {
	var v T
	_, str := any(&v).(*string)
	return fastDecode[T](unsafe.Slice(unsafe.StringData(enc), len(enc)), str)
}

// encode writes the entries in key order, as [key, value] pairs of raw
// canonical CBOR.
func (mapKind[K, V]) encode(s mapState[K, V], enc *cbor.Encoder) error {
	var err error
	s.scanEnc(func(kenc, venc string) bool {
		err = enc.Encode([2]cbor.RawMessage{cbor.RawMessage(kenc), cbor.RawMessage(venc)})
		return err == nil
	})
	return err
}

// encodeRaw writes what encode writes: per entry the head of a 2-array
// (0x82), then the key's and the value's canonical bytes, in 32 KiB
// writes. A base that nothing changed is those bytes already.
func (mapKind[K, V]) encodeRaw(s mapState[K, V], w io.Writer) error {
	if s.base != nil && s.ov.Len() == 0 {
		_, err := w.Write(s.base.b)
		return err
	}
	const flush = 32 << 10
	buf := make([]byte, 0, flush+1024)
	var err error
	s.scanEnc(func(kenc, venc string) bool {
		buf = append(buf, 0x82)
		buf = append(buf, kenc...)
		buf = append(buf, venc...)
		if len(buf) >= flush {
			_, err = w.Write(buf)
			buf = buf[:0]
		}
		return err == nil
	})
	if err == nil && len(buf) > 0 {
		_, err = w.Write(buf)
	}
	return err
}

func (k mapKind[K, V]) decode(dec *cbor.Decoder) (mapState[K, V], error) {
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
		// A canonical pair: 0x82 then the two items (PROTOCOL.md §22).
		var pair [2]cbor.RawMessage
		if err := detcbor.Unmarshal(raw, &pair); err != nil {
			return nil, err
		}
		if raw[0] != 0x82 || len(raw) != 1+len(pair[0])+len(pair[1]) {
			return nil, fmt.Errorf("entry %d is no canonical pair", n)
		}
		it, ok := k.item(pair[0], pair[1])
		if !ok {
			return nil, fmt.Errorf("entry %d does not decode", n)
		}
		if n > 0 && it.kenc <= last {
			return nil, fmt.Errorf("entry %d is out of order", n)
		}
		last = it.kenc
		s.load(it) // in order, checked above: an append
	}
}

// aliasItem is item for decodeRaw, which checks with it that an entry
// decodes (and, for a state past a base's reach, loads it into a tree):
// the encodings, and decoded strings and byte strings, point into the
// snapshot's bytes instead of being copied. The snapshot buffer is never
// written after it was read (groups never modifies the snapshot it hands
// over, and restoreRaw reads any other reader into a buffer of its own),
// and it stays alive as long as one entry restored from it does.
func aliasItem[K, V any](kraw, vraw []byte) (mapItem[K, V], bool) {
	k, ok := aliasDecode[K](kraw)
	if !ok {
		return mapItem[K, V]{}, false
	}
	v, ok := aliasDecode[V](vraw)
	if !ok {
		return mapItem[K, V]{}, false
	}
	return mapItem[K, V]{kenc: aliasString(kraw), venc: aliasString(vraw), k: k, v: v}, true
}

// aliasDecode is decode that, for strings and byte strings, returns the
// content of raw in place (fastDecode).
func aliasDecode[T any](raw []byte) (T, bool) { return fastDecode[T](raw, true) }

// aliasString is b as a string without a copy; b must never change.
func aliasString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// MapReader is a read-only replica of a replicated map: a raft learner
// that never votes. Reads are local, from the latest applied state, and
// never block; call Sync first for a linearizable read. Safe for
// concurrent use.
//
// Keys and values handed out (Get, All, and the like) share memory with
// the replica's state: treat them as read-only. Writing into a []byte
// value, or into what a pointer in a value points to, changes this
// replica's copy alone, unseen by the others (and may change the bytes
// of the snapshot it was restored from, which it serves to others);
// copy it first.
type MapReader[K, V any] struct {
	handle[mapState[K, V]]
}

// Map is a writer replica of a replicated map: a raft voter (or a learner
// waiting to be promoted). It reads like a MapReader. Mutations return
// once committed and applied here, with the version they committed at.
// Keys are ordered by their canonical CBOR encoding, the same on every
// replica. Safe for concurrent use.
type Map[K, V any] struct {
	MapReader[K, V]
}

func mapParts[K, V any]() []string { return []string{typeTag[K](), typeTag[V]()} }

// NewMap opens the map called name on h as a writer replica. It does not
// wait for the network: watch When().Online.
func NewMap[K, V any](h Host, name string, opts ...Option) (*Map[K, V], error) {
	c, err := open(h, "map", name, kind[mapState[K, V]](mapKind[K, V]{}), true, mapParts[K, V](), opts)
	if err != nil {
		return nil, err
	}
	return &Map[K, V]{MapReader[K, V]{handle[mapState[K, V]]{c}}}, nil
}

// NewMapReader opens the map called name on h as a reader replica.
func NewMapReader[K, V any](h Host, name string, opts ...Option) (*MapReader[K, V], error) {
	c, err := open(h, "map", name, kind[mapState[K, V]](mapKind[K, V]{}), false, mapParts[K, V](), opts)
	if err != nil {
		return nil, err
	}
	return &MapReader[K, V]{handle[mapState[K, V]]{c}}, nil
}

func (m *MapReader[K, V]) tree() mapState[K, V] { return m.c.state().state }

// lookup finds k in s; a key that does not encode is never present
// (encodeReadKey).
func lookup[K, V any](s mapState[K, V], k K) (mapItem[K, V], bool) {
	rk, ok := encodeReadKey(k)
	if !ok {
		return mapItem[K, V]{}, false
	}
	defer rk.release()
	return s.get(aliasString(rk.enc))
}

// Get returns the value at k.
func (m *MapReader[K, V]) Get(k K) (V, bool) {
	it, ok := lookup(m.tree(), k)
	return it.v, ok
}

// Contains reports whether k is present.
func (m *MapReader[K, V]) Contains(k K) bool {
	rk, ok := encodeReadKey(k)
	if !ok {
		return false
	}
	defer rk.release()
	_, ok = m.tree().getEnc(aliasString(rk.enc))
	return ok
}

// IsEmpty reports whether the map is empty.
func (m *MapReader[K, V]) IsEmpty() bool { return m.Len() == 0 }

// All iterates over the entries of one state (an O(1) snapshot taken
// when iteration starts), in key order.
func (m *MapReader[K, V]) All() iter.Seq2[K, V] {
	return func(yield func(K, V) bool) {
		s := m.tree()
		s.Scan(func(it mapItem[K, V]) bool { return yield(it.k, it.v) })
	}
}

// Keys iterates over the keys of one state (taken when iteration starts),
// in order.
func (m *MapReader[K, V]) Keys() iter.Seq[K] {
	return func(yield func(K) bool) {
		s := m.tree()
		s.Scan(func(it mapItem[K, V]) bool { return yield(it.k) })
	}
}

// Values iterates over the values of one state (taken when iteration
// starts), in key order.
func (m *MapReader[K, V]) Values() iter.Seq[V] {
	return func(yield func(V) bool) {
		s := m.tree()
		s.Scan(func(it mapItem[K, V]) bool { return yield(it.v) })
	}
}

// KV is a key and its value, the argument of Insert handed back in a
// *MutationError.
type KV[K, V any] struct {
	Key   K
	Value V
}

// Insert sets k to v (inserting or replacing).
func (m *Map[K, V]) Insert(ctx context.Context, k K, v V) (Version, error) {
	arg := KV[K, V]{k, v}
	ka, err := encode(k)
	if err != nil {
		return 0, encodingErr(m.c, "insert", arg, err)
	}
	va, err := encode(v)
	if err != nil {
		return 0, encodingErr(m.c, "insert", arg, err)
	}
	return execute(ctx, m.c, "insert", arg, command{Op: mapInsert, A: ka, B: va})
}

// Extend inserts every entry in one command (all or none are applied).
// An empty input returns the current version without sending anything.
func (m *Map[K, V]) Extend(ctx context.Context, entries []KV[K, V]) (Version, error) {
	if len(entries) == 0 {
		return m.Version(), nil
	}
	many := make([]cbor.RawMessage, 0, 2*len(entries))
	for _, e := range entries {
		ka, err := encode(e.Key)
		if err != nil {
			return 0, encodingErr(m.c, "extend", entries, err)
		}
		va, err := encode(e.Value)
		if err != nil {
			return 0, encodingErr(m.c, "extend", entries, err)
		}
		many = append(many, ka, va)
	}
	return execute(ctx, m.c, "extend", entries, command{Op: mapExtend, Many: many})
}

// Remove deletes k (a no-op when absent).
func (m *Map[K, V]) Remove(ctx context.Context, k K) (Version, error) {
	ka, err := encode(k)
	if err != nil {
		return 0, encodingErr(m.c, "remove", k, err)
	}
	return execute(ctx, m.c, "remove", k, command{Op: mapRemove, A: ka})
}

// RemoveMany deletes every key in one command. An empty input returns the
// current version without sending anything.
func (m *Map[K, V]) RemoveMany(ctx context.Context, keys []K) (Version, error) {
	if len(keys) == 0 {
		return m.Version(), nil
	}
	many := make([]cbor.RawMessage, 0, len(keys))
	for _, k := range keys {
		ka, err := encode(k)
		if err != nil {
			return 0, encodingErr(m.c, "remove many", keys, err)
		}
		many = append(many, ka)
	}
	return execute(ctx, m.c, "remove many", keys, command{Op: mapRemoveMany, Many: many})
}

// Clear deletes every entry.
func (m *Map[K, V]) Clear(ctx context.Context) (Version, error) {
	return execute(ctx, m.c, "clear", struct{}{}, command{Op: mapClear})
}

// CAS is the argument of CompareAndSwap, handed back in a *MutationError.
// A nil Expected means "k is absent"; a nil New deletes k.
type CAS[K, V any] struct {
	Key      K
	Expected *V
	New      *V
}

// CompareAndSwap sets k to new (deletes it when new is nil) if its current
// value encodes exactly as expected does, or if k is absent and expected is
// nil. It reports whether it applied, and the version it committed at
// (also when it did not apply).
func (m *Map[K, V]) CompareAndSwap(ctx context.Context, k K, expected, new *V) (bool, Version, error) {
	arg := CAS[K, V]{k, expected, new}
	cmd := command{Op: mapCAS}
	var err error
	if cmd.A, err = encode(k); err != nil {
		return false, 0, encodingErr(m.c, "compare and swap", arg, err)
	}
	if expected != nil {
		cmd.N |= 1
		if cmd.B, err = encode(*expected); err != nil {
			return false, 0, encodingErr(m.c, "compare and swap", arg, err)
		}
	}
	if new != nil {
		cmd.N |= 2
		if cmd.C, err = encode(*new); err != nil {
			return false, 0, encodingErr(m.c, "compare and swap", arg, err)
		}
	}
	v, err := execute(ctx, m.c, "compare and swap", arg, cmd)
	if err != nil {
		return false, 0, err
	}
	ok, err := m.c.swapped(v)
	return ok, v, err
}

// MapDefinition names a map and its options once, for every program that
// opens it: declare it at package level with MapDef and open it with
// Writer or Reader.
type MapDefinition[K, V any] struct {
	name string
	opts []Option
}

// MapDef defines the map called name:
//
//	var Users = collections.MapDef[string, User]("chat.users")
//	users, err := Users.Writer(n)
func MapDef[K, V any](name string, opts ...Option) MapDefinition[K, V] {
	return MapDefinition[K, V]{name: name, opts: opts}
}

// Name returns the map's name.
func (d MapDefinition[K, V]) Name() string { return d.name }

// Writer opens the map on h as a writer replica; opts follow the
// definition's own.
func (d MapDefinition[K, V]) Writer(h Host, opts ...Option) (*Map[K, V], error) {
	return NewMap[K, V](h, d.name, append(append([]Option(nil), d.opts...), opts...)...)
}

// Reader opens the map on h as a reader replica.
func (d MapDefinition[K, V]) Reader(h Host, opts ...Option) (*MapReader[K, V], error) {
	return NewMapReader[K, V](h, d.name, append(append([]Option(nil), d.opts...), opts...)...)
}
