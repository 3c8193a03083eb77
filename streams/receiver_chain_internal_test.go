package streams

import (
	"context"
	"github.com/libp2p/go-libp2p/core/peer"
	"testing"
	"time"
)

// A receiver waits for the producer's previous receiver to end before its
// first session, also when it is cancelled meanwhile: the next receiver
// waits on its done only, which must mean that no older one still runs
// (review probe: cancelled, it returned at once, and a third receiver ran
// beside the first, resuming from a stale position).
func TestReceive_WaitsForThePreviousReceiverEvenWhenCancelled(t *testing.T) {
	c := &Consumer[int]{set: newSubscriptionSet(nil), wake: make(chan struct{}, 1),
		recvs: map[peer.ID]*receiver{}, running: map[peer.ID]chan struct{}{}}
	prev := make(chan struct{})
	r := &receiver{sub: &subscription{state: Connecting}, done: make(chan struct{})}
	c.set.add(r.sub)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	c.wg.Add(1)
	go c.receive(ctx, r, prev)
	select {
	case <-r.done:
		t.Fatal("a cancelled receiver ended while the receiver before it still ran")
	case <-time.After(50 * time.Millisecond): // a bounded look: it must still be waiting
	}
	close(prev)
	select {
	case <-r.done:
	case <-time.After(5 * time.Second):
		t.Fatal("the receiver did not end once the previous one had")
	}
	c.wg.Wait()
}
