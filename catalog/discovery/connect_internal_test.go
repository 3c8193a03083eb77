package discovery

import (
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

func TestDroppedPeers_TurnAndForget(t *testing.T) {
	var d droppedPeers
	small, large := peer.ID("a"), peer.ID("b")
	t0 := time.Unix(1000, 0)
	if got := d.turnOf(large, small, t0); got != 0 {
		t.Fatalf("no close noted: turn %v, want 0", got)
	}
	d.note(small, t0)
	d.note(large, t0)
	// The larger end leaves the redial to the smaller for the grace.
	if got := d.turnOf(large, small, t0.Add(500*time.Millisecond)); got != redialGrace-500*time.Millisecond {
		t.Fatalf("larger end: turn %v, want %v", got, redialGrace-500*time.Millisecond)
	}
	// The smaller end dials at once.
	if got := d.turnOf(small, large, t0.Add(500*time.Millisecond)); got != 0 {
		t.Fatalf("smaller end: turn %v, want 0", got)
	}
	// After the grace both may dial, and the close is forgotten.
	if got := d.turnOf(large, small, t0.Add(redialGrace)); got != 0 {
		t.Fatalf("after the grace: turn %v, want 0", got)
	}
	if _, ok := d.at[small]; ok {
		t.Fatal("a close past the grace is still held")
	}
	// A later note prunes every close past the grace.
	d.note(peer.ID("c"), t0.Add(3*redialGrace))
	if len(d.at) != 1 {
		t.Fatalf("%d closes held after pruning, want 1", len(d.at))
	}
}
