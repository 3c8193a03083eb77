package discovery

import (
	"testing"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// TestSlots_Eviction: the slot table's rules without a network. A full
// table gives the slot of its oldest sync still waiting for a request to a
// new sync; syncs past their request are never evicted; a stranger takes
// only a stranger's slot when the strangers' share is full; the per-peer
// cap refuses before anything is evicted.
func TestSlots_Eviction(t *testing.T) {
	const a, b, c, d, x, y peer.ID = "a", "b", "c", "d", "x", "y"
	l := newSlots(4, 2) // strangers may hold 2
	take := func(p peer.ID, stranger bool) (*slot, *slot, network.StreamErrorCode) {
		t.Helper()
		sl, ev, code, _ := l.take(p, nil, stranger)
		return sl, ev, code
	}
	sa, _, _ := take(a, false)
	sb, _, _ := take(b, false)
	if !l.read(sb) { // b is past its request
		t.Fatal("read of a held slot reported eviction")
	}
	sx, _, _ := take(x, true)
	if _, _, code := take(a, false); code != 0 {
		t.Fatalf("a's second sync refused with %v, the per-peer cap is 2", code)
	}
	if _, _, code := take(a, false); code != network.StreamRateLimited {
		t.Fatalf("a's third sync: code %v, want the per-peer refusal", code)
	}
	// Full (a, b, x, a): c takes the slot of a's first sync, the oldest
	// still reading; b is past its request.
	sc, ev, code := take(c, false)
	if sc == nil || ev != sa || code != 0 {
		t.Fatalf("c on a full table: slot %v, evicted %v, code %v; want a's first sync evicted", sc, ev, code)
	}
	if l.read(sa) {
		t.Fatal("the evicted sync was not told")
	}
	l.release(sa) // its handler's deferred release: no double count
	if len(l.held) != 4 || l.perPeerN[a] != 1 {
		t.Fatalf("after the eviction: %d held, a holds %d", len(l.held), l.perPeerN[a])
	}
	// Stranger y: the strangers' share (2) is not full but the table is:
	// the oldest reader overall is x (a stranger, older than a's second).
	sy, ev, _ := take(y, true)
	if sy == nil || ev != sx {
		t.Fatalf("y: slot %v, evicted %v, want x's", sy, ev)
	}
	for sl := range l.held {
		l.read(sl)
	}
	if sl, _, code := take(d, false); sl != nil || code != network.StreamResourceLimitExceeded {
		t.Fatalf("d with every sync past its request: slot %v, code %v; want a refusal for capacity", sl, code)
	}
	for sl := range l.held {
		l.release(sl)
	}
	if len(l.held) != 0 || len(l.perPeerN) != 0 || l.strangers != 0 {
		t.Fatalf("released table not empty: %d held, %v, %d strangers", len(l.held), l.perPeerN, l.strangers)
	}
}
