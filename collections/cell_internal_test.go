package collections

import (
	"testing"

	"github.com/fxamacker/cbor/v2"
)

func TestCellKind_Apply(t *testing.T) {
	k := kind[optState[uint64]](cellKind[uint64]{})
	v := func(x uint64) cbor.RawMessage { return raw(t, x) }
	bad := cbor.RawMessage{0x18, 0x01}
	some := func(x uint64) *uint64 { return &x }
	for _, tc := range []struct {
		name string
		init []command
		cmd  command
		want *uint64
		out  outcome
	}{
		{"write", nil, command{Op: cellWrite, A: v(1)}, some(1), applied},
		{"overwrite", []command{{Op: cellWrite, A: v(1)}}, command{Op: cellWrite, A: v(2)}, some(2), applied},
		{"clear", []command{{Op: cellWrite, A: v(1)}}, command{Op: cellClear}, nil, applied},
		{"clear empty", nil, command{Op: cellClear}, nil, applied},
		{"cas some to some", []command{{Op: cellWrite, A: v(1)}}, command{Op: cellCAS, N: 3, A: v(1), B: v(2)}, some(2), applied},
		{"cas some to none", []command{{Op: cellWrite, A: v(1)}}, command{Op: cellCAS, N: 1, A: v(1)}, nil, applied},
		{"cas none to some", nil, command{Op: cellCAS, N: 2, B: v(5)}, some(5), applied},
		{"cas none to none on empty", nil, command{Op: cellCAS}, nil, noop},
		{"cas mismatch", []command{{Op: cellWrite, A: v(1)}}, command{Op: cellCAS, N: 3, A: v(7), B: v(2)}, some(1), noop},
		{"cas expects none on full", []command{{Op: cellWrite, A: v(1)}}, command{Op: cellCAS, N: 2, B: v(2)}, some(1), noop},
		{"cas expects some on empty", nil, command{Op: cellCAS, N: 3, A: v(1), B: v(2)}, nil, noop},
		{"undecodable write is invalid", []command{{Op: cellWrite, A: v(1)}}, command{Op: cellWrite, A: bad}, some(1), invalid},
		{"missing write is invalid", nil, command{Op: cellWrite}, nil, invalid},
		{"cas flag without value is invalid", nil, command{Op: cellCAS, N: 2}, nil, invalid},
		{"cas value without flag is ignored", nil, command{Op: cellCAS, B: v(1)}, nil, noop},
		{"cas unknown flag is invalid", nil, command{Op: cellCAS, N: 4}, nil, invalid},
		{"cas undecodable expected is invalid", []command{{Op: cellWrite, A: v(1)}}, command{Op: cellCAS, N: 3, A: bad, B: v(2)}, some(1), invalid},
		{"cas undecodable new is invalid", []command{{Op: cellWrite, A: v(1)}}, command{Op: cellCAS, N: 3, A: v(1), B: bad}, some(1), invalid},
		{"unknown op is invalid", nil, command{Op: 9}, nil, invalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			outs, m := applyAll(k, append(tc.init, tc.cmd)...)
			checkOpt(t, m.load().state, tc.want)
			if got := outs[len(outs)-1]; got != tc.out {
				t.Fatalf("outcome %d, want %d", got, tc.out)
			}
			if want := map[bool]uint64{true: 1, false: 0}[tc.out == invalid]; m.rejected.Load() != want {
				t.Fatalf("rejected %d, want %d", m.rejected.Load(), want)
			}
			roundTrip(t, k, m)
		})
	}
}

func TestOnceKind_Apply(t *testing.T) {
	k := kind[optState[uint64]](onceKind[uint64]{})
	v := func(x uint64) cbor.RawMessage { return raw(t, x) }
	some := func(x uint64) *uint64 { return &x }
	for _, tc := range []struct {
		name string
		cmds []command
		want *uint64
		out  []outcome
	}{
		{"first write wins", []command{{Op: onceWrite, A: v(1)}, {Op: onceWrite, A: v(2)}}, some(1), []outcome{applied, noop}},
		{"undecodable write does not win", []command{{Op: onceWrite, A: cbor.RawMessage{0x18, 0x01}}, {Op: onceWrite, A: v(2)}}, some(2), []outcome{invalid, applied}},
		{"missing value is invalid", []command{{Op: onceWrite}}, nil, []outcome{invalid}},
		{"unknown op is invalid", []command{{Op: 2, A: v(1)}}, nil, []outcome{invalid}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			outs, m := applyAll(k, tc.cmds...)
			checkOpt(t, m.load().state, tc.want)
			for i := range outs {
				if outs[i] != tc.out[i] {
					t.Fatalf("outcomes %v, want %v", outs, tc.out)
				}
			}
			roundTrip(t, k, m)
		})
	}
}

func checkOpt(t *testing.T, s optState[uint64], want *uint64) {
	t.Helper()
	switch {
	case want == nil && s.set:
		t.Fatalf("holds %d, want nothing", s.v)
	case want != nil && (!s.set || s.v != *want):
		t.Fatalf("holds %v (set %v), want %d", s.v, s.set, *want)
	case s.size() != map[bool]int{true: 1}[want != nil]:
		t.Fatal("size")
	}
}

// TestOptState_SnapshotHoldsOneValue: a snapshot of a cell with two
// values, or an undecodable one, is refused.
func TestOptState_SnapshotHoldsOneValue(t *testing.T) {
	k := kind[optState[uint64]](cellKind[uint64]{})
	for _, body := range [][]byte{{0x01, 0x02}, {0x18, 0x01}, {0x61, 'x'}} {
		hdr, _ := encode(snapshotHeader{Tag: "test", Version: 1, Size: 1})
		m := newMachine(k, signature("test", "t"), "test", "t")
		if err := m.Restore(bytesReader(append(hdr, body...))); err == nil {
			t.Fatalf("restored % x", body)
		}
	}
}

func cellGen(b []byte) command {
	c := command{Op: b[0] % 5, N: uint64(b[1] % 5)}
	if b[2]%2 == 0 || c.N&1 != 0 {
		c.A = genArg(b[2])
	}
	if b[3]%2 == 0 || c.N&2 != 0 {
		c.B = genArg(b[3])
	}
	return c
}

func FuzzCellApply(f *testing.F) {
	f.Add([]byte{1, 0, 2, 0, 3, 3, 2, 5, 2, 0, 0, 0, 3, 2, 1, 7})
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzKind(t, kind[optState[uint64]](cellKind[uint64]{}), data, cellGen)
	})
}

func FuzzOnceApply(f *testing.F) {
	f.Add([]byte{1, 0, 2, 0, 1, 0, 3, 0, 2, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzKind(t, kind[optState[uint64]](onceKind[uint64]{}), data, cellGen)
	})
}
