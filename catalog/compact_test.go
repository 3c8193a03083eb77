package catalog

import (
	"bytes"
	"testing"

	ma "github.com/multiformats/go-multiaddr"
)

// TestOpenEntry_Compact: an opened entry holds what was sealed, while its
// ticket data points into the sealed bytes (capped, so that an append
// cannot write into them) and its addresses share one component array, a
// component repeated between addresses stored once.
func TestOpenEntry_Compact(t *testing.T) {
	p := newTestPeer(t)
	s, err := Seal(typicalEntry(t, p), p.key)
	if err != nil {
		t.Fatal(err)
	}
	got, err := OpenEntry(s.Bytes(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if !sameContent(&got.Entry, &s.Entry) {
		t.Fatalf("opened entry differs from the sealed one:\n got  %+v\n want %+v", got.Entry, s.Entry)
	}
	raw := got.Bytes()
	for _, tk := range got.Entry.Tickets {
		if cap(tk.Data) != len(tk.Data) || !within(raw, tk.Data) {
			t.Fatalf("ticket data is a copy (or not capped): len %d cap %d", len(tk.Data), cap(tk.Data))
		}
	}
	before := bytes.Clone(raw)
	_ = append(got.Entry.Tickets[0].Data, 0xff) // a careless reader
	if !bytes.Equal(raw, before) {
		t.Fatal("appending to ticket data changed the sealed bytes")
	}
	for i, a := range got.Entry.Addrs {
		if !a.Equal(s.Entry.Addrs[i]) {
			t.Fatalf("address %d: %v, want %v", i, a, s.Entry.Addrs[i])
		}
		if a.String() != s.Entry.Addrs[i].String() {
			t.Fatalf("address %d prints %q, want %q", i, a, s.Entry.Addrs[i])
		}
	}
	// /ip4/192.0.2.10/tcp/4001 and /ip4/192.0.2.10/udp/4001/quic-v1:
	// Normalize sorts them first and second; the IP component is shared.
	a0, a1 := got.Entry.Addrs[0], got.Entry.Addrs[1]
	if a0[0].Protocol().Code != ma.P_IP4 || !a0[0].Equal(&a1[0]) {
		t.Fatalf("unexpected address order: %v, %v", a0, a1)
	}
	if &a0[0] == &a1[0] || cap(a0) != len(a0) {
		t.Fatal("an address shares its component slots with another or has room to append into")
	}
	// An append to one address must not overwrite the next one's.
	_ = append(a0, a1[0])
	if !got.Entry.Addrs[1].Equal(s.Entry.Addrs[1]) {
		t.Fatal("appending to an address changed the next address")
	}
}

// TestStore_OpenSharesIDSets: entries the store opens with equal tag and
// stream sets share one copy of each set.
func TestStore_OpenSharesIDSets(t *testing.T) {
	s, _ := newTestStore(t)
	var opened []*SignedEntry
	for range 3 {
		p := newTestPeer(t)
		e := typicalEntry(t, p)
		e.Network = s.Network()
		se, err := Seal(e, p.key)
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.Open(se.Bytes(), t0)
		if err != nil {
			t.Fatal(err)
		}
		opened = append(opened, got)
	}
	for _, e := range opened[1:] {
		if &e.Entry.Tags[0] != &opened[0].Entry.Tags[0] || &e.Entry.Streams[0] != &opened[0].Entry.Streams[0] {
			t.Fatal("equal tag or stream sets are not shared")
		}
		if cap(e.Entry.Tags) != len(e.Entry.Tags) {
			t.Fatal("a shared set has room to append into")
		}
	}
}

// within reports whether b lies inside buf's memory.
func within(buf, b []byte) bool {
	if len(b) == 0 || len(buf) == 0 {
		return false
	}
	for i := range buf {
		if &buf[i] == &b[0] {
			return i+len(b) <= len(buf)
		}
	}
	return false
}
