package catalog

import (
	"errors"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"
)

func TestEntry_NamesRoundTripAndPrune(t *testing.T) {
	p := newTestPeer(t)
	e := p.seal(t, testNetwork, NewVersion(t0), func(e *Entry) {
		e.Tags = []Tag{IDFromString("validator")}
		e.Streams = []StreamID{IDFromString("orders")}
		e.Names = []string{"orders", "validator", "orders", "unlisted"}
	})
	got, err := OpenEntry(e.Bytes(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"orders", "validator"}; !slices.Equal(got.Entry.Names, want) {
		t.Fatalf("names %v, want %v (sorted, unique, unlisted pruned)", got.Entry.Names, want)
	}
	if n := got.Entry.NameOf(IDFromString("orders")); n != "orders" {
		t.Errorf("NameOf = %q", n)
	}
	if n := got.Entry.NameOf(IDFromString("x")); n != IDFromString("x").String() {
		t.Errorf("NameOf of an unnamed ID = %q, want its hex", n)
	}
}

func TestOpenEntry_RejectsForeignName(t *testing.T) {
	p := newTestPeer(t)
	m := p.entry(testNetwork, NewVersion(t0))
	m.Tags = []Tag{IDFromString("a")}
	pbm := m.toPB()
	pbm.Names = []string{"b"} // derives no listed ID
	payload, err := proto.Marshal(pbm)
	if err != nil {
		t.Fatal(err)
	}
	data := sealRaw(t, EntryDomain, EntryPayloadType, payload, p.key)
	if _, err := OpenEntry(data, 0); !errors.Is(err, ErrMalformed) {
		t.Fatalf("err = %v, want ErrMalformed", err)
	}
}
