package collections

import (
	"slices"
	"testing"

	"github.com/fxamacker/cbor/v2"
)

func setValues(s setState[uint64]) []uint64 {
	out := []uint64{}
	s.Ascend(func(it setItem[uint64]) bool { out = append(out, it.v); return true })
	return out
}

func TestSetKind_Apply(t *testing.T) {
	k := kind[setState[uint64]](setKind[uint64]{})
	v := func(x uint64) cbor.RawMessage { return raw(t, x) }
	bad := cbor.RawMessage{0x18, 0x01} // non-canonical 1
	base := []command{{Op: setExtend, Many: []cbor.RawMessage{v(1), v(2), v(3)}}}
	for _, tc := range []struct {
		name string
		cmd  command
		want []uint64
		out  outcome
	}{
		{"insert", command{Op: setInsert, A: v(4)}, []uint64{1, 2, 3, 4}, applied},
		{"insert present", command{Op: setInsert, A: v(2)}, []uint64{1, 2, 3}, applied},
		{"remove", command{Op: setRemove, A: v(2)}, []uint64{1, 3}, applied},
		{"remove absent is a no-op", command{Op: setRemove, A: v(9)}, []uint64{1, 2, 3}, noop},
		{"extend with duplicates", command{Op: setExtend, Many: []cbor.RawMessage{v(3), v(4), v(4)}}, []uint64{1, 2, 3, 4}, applied},
		{"remove many", command{Op: setRemoveMany, Many: []cbor.RawMessage{v(1), v(3), v(99)}}, []uint64{2}, applied},
		{"clear", command{Op: setClear}, []uint64{}, applied},
		{"undecodable insert is invalid", command{Op: setInsert, A: bad}, []uint64{1, 2, 3}, invalid},
		{"missing insert is invalid", command{Op: setInsert}, []uint64{1, 2, 3}, invalid},
		{"wrong type is invalid", command{Op: setInsert, A: raw(t, "x")}, []uint64{1, 2, 3}, invalid},
		{"undecodable remove is invalid", command{Op: setRemove, A: bad}, []uint64{1, 2, 3}, invalid},
		{"extend with one bad item is invalid", command{Op: setExtend, Many: []cbor.RawMessage{v(4), bad}}, []uint64{1, 2, 3}, invalid},
		{"remove many with one bad item is invalid", command{Op: setRemoveMany, Many: []cbor.RawMessage{v(1), bad}}, []uint64{1, 2, 3}, invalid},
		{"unknown op is invalid", command{Op: 77}, []uint64{1, 2, 3}, invalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			outs, m := applyAll(k, append(base, tc.cmd)...)
			if got := setValues(m.load().state); !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			if outs[1] != tc.out {
				t.Fatalf("outcome %d, want %d", outs[1], tc.out)
			}
			if want := map[bool]uint64{true: 1, false: 0}[tc.out == invalid]; m.rejected.Load() != want {
				t.Fatalf("rejected %d, want %d", m.rejected.Load(), want)
			}
			roundTrip(t, k, m)
		})
	}
}

func FuzzSetApply(f *testing.F) {
	f.Add([]byte{1, 1, 2, 3, 4, 5, 6, 7, 2, 5, 9, 9, 5, 0, 1, 0, 3, 0, 0, 0})
	cmds, _ := encode([]command{{Op: setInsert, A: genArg(1)}, {Op: setRemove, A: genArg(2)}})
	f.Add([]byte(cmds))
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzKind(t, kind[setState[uint64]](setKind[uint64]{}), data, func(b []byte) command {
			c := command{Op: b[0] % 7, A: genArg(b[1])}
			if c.Op == setExtend || c.Op == setRemoveMany {
				c.Many = []cbor.RawMessage{genArg(b[1]), genArg(b[2]), genArg(b[3])}
			}
			return c
		})
	})
}
