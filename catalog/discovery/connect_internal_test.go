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

// settleWait: never before SettleDelay; after it, once no new peer came for
// half of it; at four times it whatever comes; at once with 0.
func TestSettleWait(t *testing.T) {
	const d = time.Second
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	for _, tc := range []struct {
		name             string
		d, elapsed, last time.Duration
		want             time.Duration
	}{
		{"before the delay, quiet", d, ms(100), 0, ms(900)},
		{"before the delay, busy", d, ms(900), ms(890), ms(100)},
		{"at the delay, no peer ever", d, d, 0, 0},
		{"at the delay, quiet for a half", d, d, ms(500), 0},
		{"at the delay, a peer 100 ms ago", d, d, ms(900), ms(400)},
		{"later, a peer just now", d, ms(2500), ms(2500), ms(500)},
		{"near the limit, busy", d, ms(3900), ms(3890), ms(100)},
		{"at the limit, busy", d, 4 * d, 4 * d, 0},
		{"past the limit", d, 5 * d, 5 * d, 0},
		{"no delay", 0, 0, 0, 0},
		{"no delay, a peer just now", 0, ms(10), ms(10), 0},
	} {
		if got := settleWait(tc.d, tc.elapsed, tc.last); got != tc.want {
			t.Errorf("%s: settleWait(%v, %v, %v) = %v, want %v", tc.name, tc.d, tc.elapsed, tc.last, got, tc.want)
		}
	}
}
