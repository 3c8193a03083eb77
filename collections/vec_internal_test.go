package collections

import (
	"fmt"
	"slices"
	"testing"

	"github.com/fxamacker/cbor/v2"
)

func vecValues(s vecState[uint64]) []uint64 {
	out := []uint64{}
	for _, it := range s.items {
		out = append(out, it.v)
	}
	return out
}

func TestVecKind_Apply(t *testing.T) {
	k := vecKind[uint64]{}
	v := func(x uint64) cbor.RawMessage { return raw(t, x) }
	many := func(xs ...uint64) []cbor.RawMessage {
		var out []cbor.RawMessage
		for _, x := range xs {
			out = append(out, v(x))
		}
		return out
	}
	base := []command{{Op: vecExtend, Many: many(1, 2, 3)}}
	for _, tc := range []struct {
		name string
		cmd  command
		want []uint64
		out  outcome
	}{
		{"push back", command{Op: vecPushBack, A: v(4)}, []uint64{1, 2, 3, 4}, applied},
		{"push front", command{Op: vecPushFront, A: v(0)}, []uint64{0, 1, 2, 3}, applied},
		{"insert middle", command{Op: vecInsert, N: 1, A: v(9)}, []uint64{1, 9, 2, 3}, applied},
		{"insert at end", command{Op: vecInsert, N: 3, A: v(9)}, []uint64{1, 2, 3, 9}, applied},
		{"insert past end is invalid", command{Op: vecInsert, N: 4, A: v(9)}, []uint64{1, 2, 3}, invalid},
		{"insert huge index is invalid", command{Op: vecInsert, N: 1 << 63, A: v(9)}, []uint64{1, 2, 3}, invalid},
		{"extend", command{Op: vecExtend, Many: many(4, 5)}, []uint64{1, 2, 3, 4, 5}, applied},
		{"extend with one bad item is invalid", command{Op: vecExtend, Many: append(many(4), cbor.RawMessage{0x18, 0x01})}, []uint64{1, 2, 3}, invalid},
		{"pop back", command{Op: vecPopBack}, []uint64{1, 2}, applied},
		{"pop front", command{Op: vecPopFront}, []uint64{2, 3}, applied},
		{"remove", command{Op: vecRemove, N: 1}, []uint64{1, 3}, applied},
		{"remove out of range is a no-op", command{Op: vecRemove, N: 3}, []uint64{1, 2, 3}, noop},
		{"swap", command{Op: vecSwap, N: 0, M: 2}, []uint64{3, 2, 1}, applied},
		{"swap out of range is a no-op", command{Op: vecSwap, N: 0, M: 3}, []uint64{1, 2, 3}, noop},
		{"truncate", command{Op: vecTruncate, N: 1}, []uint64{1}, applied},
		{"truncate clamped", command{Op: vecTruncate, N: 100}, []uint64{1, 2, 3}, noop},
		{"clear", command{Op: vecClear}, []uint64{}, applied},
		{"undecodable value is invalid", command{Op: vecPushBack, A: cbor.RawMessage{0x18, 0x01}}, []uint64{1, 2, 3}, invalid},
		{"missing value is invalid", command{Op: vecPushBack}, []uint64{1, 2, 3}, invalid},
		{"wrong type is invalid", command{Op: vecPushBack, A: raw(t, "x")}, []uint64{1, 2, 3}, invalid},
		{"unknown op is invalid", command{Op: 200}, []uint64{1, 2, 3}, invalid},
		{"op zero is invalid", command{}, []uint64{1, 2, 3}, invalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			outs, m := applyAll(kind[vecState[uint64]](k), append(base, tc.cmd)...)
			if got := vecValues(m.load().state); !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			if outs[1] != tc.out {
				t.Fatalf("outcome %d, want %d", outs[1], tc.out)
			}
			if want := map[bool]uint64{true: 1, false: 0}[tc.out == invalid]; m.rejected.Load() != want {
				t.Fatalf("rejected %d, want %d", m.rejected.Load(), want)
			}
			if m.load().size != len(tc.want) {
				t.Fatalf("size %d", m.load().size)
			}
			roundTrip(t, kind[vecState[uint64]](k), m)
		})
	}
	t.Run("empty pops are no-ops", func(t *testing.T) {
		outs, _ := applyAll(kind[vecState[uint64]](k), command{Op: vecPopBack}, command{Op: vecPopFront})
		if outs[0] != noop || outs[1] != noop {
			t.Fatal(outs)
		}
	})
}

// TestVecKind_PublishedStatesStay checks the copy-on-write rules: every
// sequence of ops leaves the states published before it unchanged, also
// when two working copies are cloned from one state.
func TestVecKind_PublishedStatesStay(t *testing.T) {
	k := vecKind[uint64]{}
	s := k.empty()
	for i := range uint64(10) {
		s, _ = k.apply(k.clone(s), &command{Op: vecPushBack, A: raw(t, i)})
	}
	want := fmt.Sprint(vecValues(s))
	a, _ := k.apply(k.clone(s), &command{Op: vecPushBack, A: raw(t, uint64(100))})
	b, _ := k.apply(k.clone(s), &command{Op: vecPushBack, A: raw(t, uint64(200))})
	c, _ := k.apply(k.clone(s), &command{Op: vecPopBack})
	c, _ = k.apply(k.clone(c), &command{Op: vecPushBack, A: raw(t, uint64(300))})
	d, _ := k.apply(k.clone(s), &command{Op: vecSwap, N: 0, M: 9})
	if got := fmt.Sprint(vecValues(s)); got != want {
		t.Fatalf("base changed: %s", got)
	}
	for _, x := range []struct {
		s    vecState[uint64]
		last uint64
	}{{a, 100}, {b, 200}, {c, 300}, {d, 0}} {
		if v := vecValues(x.s); v[len(v)-1] != x.last {
			t.Fatalf("a working copy was overwritten: %v", v)
		}
	}
}

// BenchmarkVecApply measures one Apply run of one command on a vector of
// n elements: PushBack appends in place, Swap copies the array.
func BenchmarkVecApply(b *testing.B) {
	k := vecKind[uint64]{}
	for _, n := range []int{10_000, 1_000_000} {
		s := k.empty()
		var many []cbor.RawMessage
		for i := range n {
			many = append(many, raw(b, uint64(i)))
		}
		s, _ = k.apply(k.clone(s), &command{Op: vecExtend, Many: many})
		for _, c := range []command{{Op: vecPushBack, A: raw(b, uint64(7))}, {Op: vecSwap, N: 0, M: 1}} {
			b.Run(fmt.Sprintf("op=%d/n=%d", c.Op, n), func(b *testing.B) {
				cur := s
				for b.Loop() {
					cur, _ = k.apply(k.clone(cur), &c)
				}
			})
		}
	}
}

func FuzzVecApply(f *testing.F) {
	f.Add([]byte{1, 1, 2, 3, 4, 5, 6, 7, 3, 9, 9, 9, 8, 0, 1, 0, 5, 0, 0, 0})
	f.Add([]byte{4, 3, 3, 3, 9, 1, 0, 0, 1, 2, 0, 0, 6, 0, 0, 0, 10, 0, 0, 0})
	cmds, _ := encode([]command{{Op: vecPushBack, A: genArg(1)}, {Op: vecInsert, N: 5, A: genArg(2)}})
	f.Add([]byte(cmds))
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzKind(t, kind[vecState[uint64]](vecKind[uint64]{}), data, func(b []byte) command {
			c := command{Op: b[0] % 12, N: uint64(b[1] % 8), M: uint64(b[2] % 8), A: genArg(b[3])}
			if c.Op == vecExtend {
				c.Many = []cbor.RawMessage{genArg(b[1]), genArg(b[2]), genArg(b[3])}
			}
			return c
		})
	})
}
