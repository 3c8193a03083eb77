package collections

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
)

// A restore builds the tree by appending sorted entries (Load); the
// result must be the tree that inserts in any order build: the same
// entries, the same order, the same snapshot bytes. And a copy of a
// restored tree must be independent of it, in both directions, since
// the restored one is published and read while the copy is written.
func TestMapRestore_BulkLoadMatchesInserts(t *testing.T) {
	k := mapKind[string, []byte]{}
	const n = 5000 // several levels at btreeDegree
	ins := k.empty()
	for _, i := range rand.New(rand.NewPCG(1, 2)).Perm(n) {
		it, ok := k.item(raw(t, fmt.Sprintf("key-%05d", i)), raw(t, bytes.Repeat([]byte{byte(i)}, 1+i%70)))
		if !ok {
			t.Fatal("item does not decode")
		}
		ins.set(it)
	}
	var want bytes.Buffer
	if err := k.encodeRaw(ins, &want); err != nil {
		t.Fatal(err)
	}
	data := bytes.Clone(want.Bytes())
	loaded, err := k.decodeRaw(data, 0)
	if err != nil {
		t.Fatal(err)
	}
	if loaded.Len() != n {
		t.Fatalf("restored %d entries, want %d", loaded.Len(), n)
	}
	snap := func(s mapState[string, []byte]) []byte {
		var b bytes.Buffer
		if err := k.encodeRaw(s, &b); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	if !bytes.Equal(snap(loaded), want.Bytes()) {
		t.Fatal("the restored tree writes other bytes than the tree it came from")
	}

	// Writes to a copy leave the restored tree alone, and the reverse.
	cp := k.clone(loaded)
	for i := 0; i < n; i += 7 {
		cmd := command{Op: mapRemove, A: raw(t, fmt.Sprintf("key-%05d", i))}
		if _, o := k.apply(cp, &cmd); o != applied {
			t.Fatalf("remove %d: outcome %d", i, o)
		}
	}
	cmd := command{Op: mapInsert, A: raw(t, "key-99999"), B: raw(t, []byte("new"))}
	if _, o := k.apply(cp, &cmd); o != applied {
		t.Fatalf("insert: outcome %d", o)
	}
	if !bytes.Equal(snap(loaded), want.Bytes()) || loaded.Len() != n {
		t.Fatal("writing a copy changed the restored tree")
	}
	before := snap(cp)
	cmd = command{Op: mapInsert, A: raw(t, "key-00000"), B: raw(t, []byte("again"))}
	if _, o := k.apply(loaded, &cmd); o != applied {
		t.Fatalf("insert: outcome %d", o)
	}
	if !bytes.Equal(snap(cp), before) {
		t.Fatal("writing the restored tree changed its copy")
	}
	if want := n - (n+6)/7 + 1; cp.Len() != want {
		t.Fatalf("copy holds %d entries, want %d", cp.Len(), want)
	}
}
