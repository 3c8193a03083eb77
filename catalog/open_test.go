package catalog

import (
	"bytes"
	"testing"
)

// Open keeps a copy of the caller's buffer (the caller may reuse it),
// OpenOwned the buffer itself, capped so that an append to Bytes cannot
// write past the entry.
func TestStore_OpenCopiesOpenOwnedKeeps(t *testing.T) {
	s, _ := newTestStore(t)
	p := newTestPeer(t)
	e := p.seal(t, testNetwork, NewVersion(t0), func(e *Entry) {
		e.Tickets = []Ticket{{Class: IDFromString("jwt"), Data: []byte("ticket bytes")}}
	})
	buf := append(append([]byte(nil), e.Bytes()...), "trailing"...)
	data := buf[:len(e.Bytes())]
	copied, err := s.Open(data, t0)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if &copied.Bytes()[0] == &data[0] {
		t.Fatal("Open kept the caller's buffer")
	}
	owned, err := s.OpenOwned(data, t0)
	if err != nil {
		t.Fatalf("OpenOwned: %v", err)
	}
	if &owned.Bytes()[0] != &data[0] {
		t.Fatal("OpenOwned copied the caller's buffer")
	}
	if got := owned.Bytes(); cap(got) != len(got) {
		t.Fatalf("OpenOwned's sealed bytes: cap %d, len %d: an append would write into the caller's buffer", cap(got), len(got))
	}
	// Reusing the buffer leaves Open's entry intact.
	clear(data)
	if !bytes.Equal(copied.Bytes(), e.Bytes()) || string(copied.Entry.Tickets[0].Data) != "ticket bytes" {
		t.Fatal("Open's entry changed with the caller's buffer")
	}
}
