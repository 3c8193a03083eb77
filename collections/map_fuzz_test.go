package collections

import (
	"bytes"
	"testing"

	"github.com/fxamacker/cbor/v2"

	"github.com/mosaik-go/mosaik/groups"
	"github.com/mosaik-go/mosaik/internal/detcbor"
)

func newMapMachine() *machine[mapState[string, int64]] {
	return testMachine(kind[mapState[string, int64]](mapKind[string, int64]{}), "map")
}

// FuzzMapApply applies hand-crafted commands to a map (never a panic; two
// replicas agree; a snapshot restores to the same map) and restores the
// input as a snapshot.
func FuzzMapApply(f *testing.F) {
	k, v, k2, v2 := cborOf(f, "k"), cborOf(f, int64(-1)), cborOf(f, "k2"), cborOf(f, int64(2))
	for _, cmds := range [][]command{
		{{Op: mapInsert, A: k, B: v}, {Op: mapExtend, Many: []cbor.RawMessage{k2, v2, k, v2}}},
		{{Op: mapInsert, A: k, B: v}, {Op: mapCAS, A: k, N: 3, B: v, C: v2}, {Op: mapCAS, A: k2, N: 2, C: v}, {Op: mapCAS, A: k, N: 1, B: v2}},
		{{Op: mapInsert, A: k, B: v}, {Op: mapRemove, A: k}, {Op: mapRemoveMany, Many: []cbor.RawMessage{k, k2}}, {Op: mapClear}},
	} {
		b, err := detcbor.Marshal(cmds)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	m := newMapMachine()
	m.Apply(groups.ApplyContext{FirstIndex: 1}, []command{{Op: mapExtend, Many: []cbor.RawMessage{k, v, k2, v2}}})
	var buf bytes.Buffer
	if err := m.Snapshot(&buf); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	seedCmds := []command{{Op: mapExtend, Many: []cbor.RawMessage{k, v, k2, v2}}}
	seed := bytes.Clone(buf.Bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > maxFuzzInput {
			return
		}
		_ = newMapMachine().Restore(bytes.NewReader(data))
		var cmds []command
		if detcbor.Unmarshal(data, &cmds) != nil {
			return
		}
		a, b := newMapMachine(), newMapMachine()
		for i, c := range cmds {
			a.Apply(groups.ApplyContext{FirstIndex: uint64(i + 1)}, []command{c})
		}
		b.Apply(groups.ApplyContext{FirstIndex: 1}, cmds) // one run of all
		var sa, sb bytes.Buffer
		if err := a.Snapshot(&sa); err != nil {
			t.Fatal(err)
		}
		if err := b.Snapshot(&sb); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(sa.Bytes(), sb.Bytes()) {
			t.Fatal("applying one by one and in one run differ")
		}
		back := newMapMachine()
		if err := back.Restore(bytes.NewReader(sa.Bytes())); err != nil {
			t.Fatalf("restore of a snapshot: %v", err)
		}
		var sc bytes.Buffer
		if err := back.Snapshot(&sc); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(sa.Bytes(), sc.Bytes()) {
			t.Fatal("a restored snapshot differs")
		}

		// A replica restored from a snapshot (its state a base under an
		// overlay) and one that applied the commands behind that snapshot
		// agree after the same commands.
		r, p := newMapMachine(), newMapMachine()
		if err := r.Restore(bytes.NewReader(bytes.Clone(seed))); err != nil {
			t.Fatal(err)
		}
		p.Apply(groups.ApplyContext{FirstIndex: 1}, seedCmds)
		for i, c := range cmds {
			r.Apply(groups.ApplyContext{FirstIndex: uint64(i + 2)}, []command{c})
			p.Apply(groups.ApplyContext{FirstIndex: uint64(i + 2)}, []command{c})
		}
		var sr, sp bytes.Buffer
		if r.Snapshot(&sr) != nil || p.Snapshot(&sp) != nil {
			t.Fatal("snapshot failed")
		}
		if !bytes.Equal(sr.Bytes(), sp.Bytes()) || r.load().size != p.load().size || r.load().state.Len() != p.load().state.Len() {
			t.Fatal("a restored replica and one that applied every command differ")
		}
	})
}
