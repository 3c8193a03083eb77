package groups

import (
	"bytes"
	"testing"
	"time"

	"github.com/mosaik-go/mosaik/groups/pb"
	"github.com/mosaik-go/mosaik/internal/testutil"
)

// A bonded peer that stops reading holds the group's Close for at most
// about CloseTimeout, not the heartbeats' stall bound (Heartbeat ×
// MissedHeartbeats, 5 s with these timings); the stream it leaves is
// reset, with no Close frame after a write that failed part way.
func TestBonds_NonReaderDoesNotHoldClose(t *testing.T) {
	victim, evil := newBondNode(t), newBondNode(t, withoutService())
	meshed(t, victim, evil)
	s := testSpec("non-reader", RoleWriter)
	s.Heartbeat, s.HeartbeatJitter, s.MissedHeartbeats = 500*time.Millisecond, 150*time.Millisecond, 10 // the defaults
	gv, inV := victim.attach(t, s)
	c := dialRaw(t, evil, victim)
	_ = c.st.SetDeadline(time.Time{})
	ni := nonce()
	w := c.welcome(s, ni)
	p := proof(bondKey(s.Key), sideInitiator, s.ID, evil.h.ID(), victim.h.ID(), ni, w.nonce)
	c.write(encodeMsg(frameProof, &pb.BondProof{Proof: p[:]}))
	testutil.Eventually(t, 2*time.Second, func() bool { return len(inV.peers()) == 1 }, "no bond")
	// 6 MiB queued to a peer that reads nothing: the writer blocks once
	// the stream's flow-control window is full.
	body := bytes.Repeat([]byte{1}, 60<<10)
	for range 100 {
		gv.Send(evil.h.ID(), firstCoreFrame, body)
	}
	testutil.Eventually(t, 5*time.Second, func() bool {
		bs := gv.bonds()
		return len(bs) == 1 && bs[0].info().Queued > 0 && bs[0].info().BytesSent > 0
	}, "the writer never blocked")
	start := time.Now()
	if err := gv.Close(); err != nil {
		t.Fatal(err)
	}
	// CloseTimeout (1 s by default) for the blocked write, another for the
	// final frame, and slack for a loaded machine.
	if took, bound := time.Since(start), testutil.Scale(2*victim.net.params.CloseTimeout+time.Second); took > bound {
		t.Fatalf("the group's Close took %v with a bonded peer that does not read, want at most %v", took, bound)
	}
	// The peer, reading at last, finds whole frames and then the reset:
	// no Close frame glued to a frame cut short.
	for {
		typ, _, err := c.fr.next()
		if err != nil {
			break
		}
		if typ == frameClose {
			t.Fatal("a Close frame followed a write that failed")
		}
	}
}

// The dial backoff of a peer whose bond ended is forgotten once its entry
// no longer lists the group: such a peer never bonds again, which alone
// cleared it, and the map kept every member that ever left (review probe:
// six entries after six peers came and went).
func TestBonds_BackoffOfPeersThatLeftIsForgotten(t *testing.T) {
	s := testSpec("retry-forgotten", RoleWriter)
	a := newBondNode(t)
	ga, _ := a.attach(t, s)
	retries := func() int {
		ga.mu.Lock()
		defer ga.mu.Unlock()
		return len(ga.retry)
	}
	for range 3 {
		b := newBondNode(t)
		meshed(t, a, b)
		gb, _ := b.attach(t, s)
		testutil.Eventually(t, 10*time.Second, func() bool {
			ga.mu.Lock()
			defer ga.mu.Unlock()
			return ga.slots[b.h.ID()] != nil
		}, "a and b did not bond")
		_ = gb.Close() // b leaves the group: its entry stops listing it
		testutil.Eventually(t, 10*time.Second, func() bool {
			ga.mu.Lock()
			defer ga.mu.Unlock()
			return ga.slots[b.h.ID()] == nil
		}, "the bond did not end")
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return retries() == 0 }, "dial backoffs of peers that left are kept: %d", testutil.Lazy(func() any { return retries() }))
}
