package collections

import (
	"bytes"
	"testing"

	"github.com/fxamacker/cbor/v2"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/groups"
)

// snapBytes is a restore source that offers its whole snapshot as bytes
// (as groups' installed snapshots do): a restored Map keeps its entries
// in them.
type snapBytes struct {
	*bytes.Reader
	b []byte
}

func (s snapBytes) SnapshotBytes() []byte { return s.b }

// TestMap_RestoredBytesAreTheCallers: the []byte keys and values a
// restored Map returns are the caller's to change. They pointed into the
// snapshot bytes the replica keeps as its state (which it hashes and
// serves to other members): a caller that wrote to a value changed the
// replica's snapshot, and one that wrote to a key broke the order its
// lookups rely on.
func TestMap_RestoredBytesAreTheCallers(t *testing.T) {
	newM := func() *machine[mapState[[]byte, []byte]] {
		return newMachine(kind[mapState[[]byte, []byte]](mapKind[[]byte, []byte]{}), catalog.IDFromString("b"), "map", "b")
	}
	src := newM()
	src.Apply(groups.ApplyContext{FirstIndex: 1}, []command{{Op: mapExtend, Many: []cbor.RawMessage{
		raw(t, []byte("k1")), raw(t, []byte("value-1")),
		raw(t, []byte("k2")), raw(t, []byte("value-2")),
		raw(t, []byte("k3")), raw(t, []byte("value-3")),
	}}})
	var snap bytes.Buffer
	if err := src.Snapshot(&snap); err != nil {
		t.Fatal(err)
	}
	want := bytes.Clone(snap.Bytes())
	r := newM()
	b := bytes.Clone(want)
	if err := r.Restore(snapBytes{bytes.NewReader(b), b}); err != nil {
		t.Fatal(err)
	}
	mr := &MapReader[[]byte, []byte]{handle[mapState[[]byte, []byte]]{&core[mapState[[]byte, []byte]]{m: r}}}
	v, ok := mr.Get([]byte("k1"))
	if !ok {
		t.Fatal("k1 missing after the restore")
	}
	copy(v, "XXXXXXX")
	for k := range mr.All() {
		if string(k) == "k2" {
			k[1] = '9'
		}
	}
	var after bytes.Buffer
	if err := r.Snapshot(&after); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(after.Bytes(), want) || !bytes.Equal(b, want) {
		t.Errorf("the replica's state changed after a caller wrote to what it read:\n want %q\n  got %q", want, after.Bytes())
	}
	for _, k := range []string{"k1", "k2", "k3"} {
		if _, ok := mr.Get([]byte(k)); !ok {
			t.Errorf("%s vanished after a caller wrote to a key it iterated over", k)
		}
	}
	if v, _ := mr.Get([]byte("k1")); string(v) != "value-1" {
		t.Errorf("k1 reads %q, want value-1", v)
	}
}
