package collections

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"unsafe"

	"github.com/fxamacker/cbor/v2"

	"github.com/mosaik-go/mosaik/internal/detcbor"
)

type baseTestValue struct {
	N    int64
	Tags []string
}

// A restored map (a base under an overlay) and a map built by applying
// commands (a plain tree) that went through the same commands hold the
// same content, in the same order, with the same encodings: Len, Get,
// Contains-style lookups, iteration and the snapshot's bytes agree after
// every step, for string, byte string, integer and struct types, and a
// copy of either is independent of it.
func TestMapBase_SnapshotMatchesTree(t *testing.T) {
	for seed := range uint64(4) {
		// Each case is pure computation on its own values: two run at once
		// on a two-core machine.
		t.Run(fmt.Sprintf("string-bytes/%d", seed), func(t *testing.T) {
			t.Parallel()
			checkBaseMatchesTree(t, mapKind[string, []byte]{}, seed,
				func(i int) string { return fmt.Sprintf("k%04d", i) },
				func(r *rand.Rand) []byte { return bytes.Repeat([]byte{byte(r.IntN(256))}, 1+r.IntN(70)) })
		})
		t.Run(fmt.Sprintf("uint-struct/%d", seed), func(t *testing.T) {
			t.Parallel()
			checkBaseMatchesTree(t, mapKind[uint64, baseTestValue]{}, seed,
				func(i int) uint64 { return uint64(i) * 37 },
				func(r *rand.Rand) baseTestValue {
					return baseTestValue{N: r.Int64N(1000) - 500, Tags: []string{fmt.Sprint(r.IntN(9))}}
				})
		})
	}
}

func checkBaseMatchesTree[K, V any](t *testing.T, k mapKind[K, V], seed uint64, key func(int) K, val func(*rand.Rand) V) {
	r := rand.New(rand.NewPCG(seed, 7))
	const keys = 600
	tree := k.empty()
	apply := func(c command) {
		t.Helper()
		if _, o := k.apply(tree, &c); o == invalid {
			t.Fatalf("command %d invalid", c.Op)
		}
	}
	for i := 0; i < keys; i += 1 + r.IntN(3) {
		apply(command{Op: mapInsert, A: raw(t, key(i)), B: raw(t, val(r))})
	}
	restore := func() mapState[K, V] {
		t.Helper()
		var b bytes.Buffer
		if err := k.encodeRaw(tree, &b); err != nil {
			t.Fatal(err)
		}
		s, err := k.decodeRaw(b.Bytes(), uint64(tree.Len()))
		if err != nil {
			t.Fatal(err)
		}
		if s.base == nil && tree.Len() > 0 {
			t.Fatal("a restore built no base")
		}
		return s
	}
	base := restore()
	check := func(step int) {
		t.Helper()
		same(t, k, step, tree, base, keys, key)
	}
	check(-1)
	var kept []mapState[K, V] // copies of base, and what they held
	var keptSnap [][]byte
	for step := range 400 {
		var c command
		switch p := r.IntN(100); {
		case p < 35:
			c = command{Op: mapInsert, A: raw(t, key(r.IntN(keys))), B: raw(t, val(r))}
		case p < 60:
			c = command{Op: mapRemove, A: raw(t, key(r.IntN(keys)))}
		case p < 75: // compare-and-exchange against the current value, or absent
			kk := key(r.IntN(keys))
			c = command{Op: mapCAS, A: raw(t, kk), N: 2, C: raw(t, val(r))}
			if venc, ok := tree.getEnc(string(c.A)); ok {
				c.N |= 1
				c.B = cbor.RawMessage(venc)
				if r.IntN(2) == 0 {
					c.N, c.C = 1, nil // delete
				}
			}
		case p < 85:
			c = command{Op: mapExtend}
			for range 1 + r.IntN(5) {
				c.Many = append(c.Many, raw(t, key(r.IntN(keys))), raw(t, val(r)))
			}
		case p < 95:
			c = command{Op: mapRemoveMany}
			for range 1 + r.IntN(5) {
				c.Many = append(c.Many, raw(t, key(r.IntN(keys))))
			}
		case p < 97:
			c = command{Op: mapClear}
		default: // restore again, from the tree's snapshot
			base = restore()
			check(step)
			continue
		}
		if r.IntN(20) == 0 { // a published copy that must not change
			kept = append(kept, base)
			keptSnap = append(keptSnap, snapOf(t, k, base))
			base = k.clone(base)
		}
		apply(c)
		if _, o := k.apply(base, &c); o == invalid {
			t.Fatalf("step %d: command %d invalid on the restored map", step, c.Op)
		}
		check(step)
	}
	for i, s := range kept {
		if !bytes.Equal(snapOf(t, k, s), keptSnap[i]) {
			t.Fatalf("copy %d changed after it was copied", i)
		}
	}
}

func snapOf[K, V any](t *testing.T, k mapKind[K, V], s mapState[K, V]) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := k.encodeRaw(s, &b); err != nil {
		t.Fatal(err)
	}
	var e bytes.Buffer
	if err := k.encode(s, detcbor.NewEncoder(&e)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b.Bytes(), e.Bytes()) {
		t.Fatal("encode and encodeRaw differ")
	}
	return b.Bytes()
}

func same[K, V any](t *testing.T, k mapKind[K, V], step int, want, got mapState[K, V], keys int, key func(int) K) {
	t.Helper()
	if want.Len() != got.Len() {
		t.Fatalf("step %d: %d entries, want %d", step, got.Len(), want.Len())
	}
	if !bytes.Equal(snapOf(t, k, want), snapOf(t, k, got)) {
		t.Fatalf("step %d: the restored map writes another snapshot", step)
	}
	var wi, gi []mapItem[K, V]
	want.Scan(func(it mapItem[K, V]) bool { wi = append(wi, it); return true })
	got.Scan(func(it mapItem[K, V]) bool { gi = append(gi, it); return true })
	if !reflect.DeepEqual(wi, gi) || len(gi) != got.Len() {
		t.Fatalf("step %d: iteration differs", step)
	}
	for i := range keys {
		w, wok := lookup(want, key(i))
		g, gok := lookup(got, key(i))
		if wok != gok || !reflect.DeepEqual(w, g) {
			t.Fatalf("step %d: Get(%v) = %v %v, want %v %v", step, key(i), g.v, gok, w.v, wok)
		}
	}
}

// A restored map whose entries get rewritten folds its base into the tree
// once the overlay outgrows half of it: the content and its snapshot stay
// those of a map built by commands, and no entry points into the
// snapshot's bytes any more, so they can be freed.
func TestMapBase_CompactsWhenMostlyRewritten(t *testing.T) {
	k := mapKind[string, string]{}
	const n = 1000
	tree := k.empty()
	for i := range n {
		c := command{Op: mapInsert, A: raw(t, fmt.Sprintf("k%04d", i)), B: raw(t, fmt.Sprintf("v%d", i))}
		k.apply(tree, &c)
	}
	var b bytes.Buffer
	if err := k.encodeRaw(tree, &b); err != nil {
		t.Fatal(err)
	}
	snap := b.Bytes()
	s, err := k.decodeRaw(snap, n)
	if err != nil || s.base == nil {
		t.Fatalf("restore: %v (base %v)", err, s.base != nil)
	}
	published := k.clone(s)
	for i := 0; i < n; i += 2 { // rewrite every other key, and remove one in ten
		c := command{Op: mapInsert, A: raw(t, fmt.Sprintf("k%04d", i)), B: raw(t, fmt.Sprintf("w%d", i))}
		if i%10 == 4 {
			c = command{Op: mapRemove, A: raw(t, fmt.Sprintf("k%04d", i))}
		}
		k.apply(tree, &c)
		k.apply(s, &c)
		if s.base == nil && s.ov.Len() < n/2 {
			t.Fatalf("folded at %d overlay entries, before half the base", s.ov.Len())
		}
	}
	c := command{Op: mapInsert, A: raw(t, "k9999"), B: raw(t, "new")}
	k.apply(tree, &c)
	k.apply(s, &c)
	if s.base != nil {
		t.Fatalf("the base is kept with %d overlay entries over %d", s.ov.Len(), s.base.len())
	}
	same(t, k, 0, tree, s, n, func(i int) string { return fmt.Sprintf("k%04d", i) })
	lo, hi := uintptr(unsafe.Pointer(unsafe.SliceData(snap))), uintptr(unsafe.Pointer(unsafe.SliceData(snap)))+uintptr(len(snap))
	s.Scan(func(it mapItem[string, string]) bool {
		for _, str := range []string{it.kenc, it.venc, it.k, it.v} {
			if p := uintptr(unsafe.Pointer(unsafe.StringData(str))); p >= lo && p < hi {
				t.Fatalf("entry %q still points into the snapshot's bytes", it.k)
			}
		}
		return true
	})
	// The published copy keeps its base and its content.
	if published.base == nil || published.Len() != n {
		t.Fatalf("the published copy changed: base %v, %d entries", published.base != nil, published.Len())
	}
}
