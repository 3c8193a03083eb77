package discovery_test

import (
	"bufio"
	"context"
	"io"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/catalog/discovery"
	"github.com/mosaik-go/mosaik/internal/framer"
	"github.com/mosaik-go/mosaik/internal/testutil"
)

// TestDepart_HandOffEndsLeaveEarly: a closing node hands its departure to
// a connected peer, which takes it and puts it on gossip, so Close returns
// without waiting DepartureGrace (20 s here; before the hand-off it always
// waited that long), and a node it is not connected to learns the
// departure as a departure, not a purge.
func TestDepart_HandOffEndsLeaveEarly(t *testing.T) {
	nw := catalog.IDFromString("discovery-test/depart-handoff")
	a := newNode(t, nw, withParams(func(p *discovery.Params) { p.DepartureGrace = 20 * time.Second }))
	b := newNode(t, nw)
	c := newNode(t, nw)
	connect(t, a.h, b.h)
	connect(t, c.h, b.h)
	testutil.Eventually(t, 10*time.Second, func() bool {
		return knows(c.svc, a.h.ID()) && knows(a.svc, c.h.ID()) && knows(b.svc, a.h.ID())
	}, "the line A-B-C does not converge")
	barrier(t, a, c) // gossip runs from A through B to C
	testutil.Eventually(t, 5*time.Second, func() bool {
		ok, _ := a.h.Peerstore().SupportsProtocols(b.h.ID(), discovery.DepartProtocol(nw))
		return len(ok) == 1
	}, "A does not know that B serves the hand-off")
	start := time.Now()
	if err := a.svc.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > testutil.Scale(10*time.Second) {
		t.Fatalf("Close took %v: it waited DepartureGrace, the hand-off did not end it", d)
	}
	for _, n := range []*testNode{b, c} {
		testutil.Eventually(t, 5*time.Second, func() bool { return !knows(n.svc, a.h.ID()) }, "the departure did not spread")
		if st := n.svc.Stats(); st.Departed != 1 || st.Purged != 0 {
			t.Errorf("%s: departed %d, purged %d: want the departure notice", n.h.ID(), st.Departed, st.Purged)
		}
	}
}

// handOffRaw opens a hand-off stream from h to p, writes raw, and returns
// the answer byte (-1 when the stream was reset or closed without one).
func handOffRaw(t *testing.T, h host.Host, p peer.ID, nw catalog.NetworkID, raw []byte) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Scale(5*time.Second))
	defer cancel()
	st, err := h.NewStream(ctx, p, discovery.DepartProtocol(nw))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = st.Close() }()
	_ = st.SetDeadline(time.Now().Add(testutil.Scale(5 * time.Second)))
	if _, err := st.Write(raw); err != nil {
		return -1
	}
	_ = st.CloseWrite()
	var ans [1]byte
	if _, err := io.ReadFull(bufio.NewReader(st), ans[:]); err != nil {
		return -1
	}
	return int(ans[0])
}

// TestDepart_HandOffRefusesBadInput: a hand-off of garbage, of an oversize
// frame, of a forged departure or of another peer's departure is refused
// and counted, and removes nobody.
func TestDepart_HandOffRefusesBadInput(t *testing.T) {
	nw := catalog.IDFromString("discovery-test/depart-hostile")
	b := newNode(t, nw)
	x := newNode(t, nw) // its departure is what the attacker replays
	connect(t, x.h, b.h)
	testutil.Eventually(t, 10*time.Second, func() bool { return knows(b.svc, x.h.ID()) }, "B does not know X")
	atk := newHost(t)
	connect(t, atk, b.h)
	xDep, err := catalog.SealDeparture(catalog.Departure{
		PeerID: x.h.ID(), Network: nw, LastVersion: catalog.NewVersion(time.Now()), Timestamp: time.Now(),
	}, hostKey(t, x.h))
	if err != nil {
		t.Fatal(err)
	}
	forged := append([]byte(nil), xDep...)
	forged[len(forged)-1] ^= 1
	cases := []struct {
		name   string
		raw    []byte
		answer int // -1: reset without an answer
		reason string
	}{
		{"garbage", framer.AppendFrame(nil, []byte("not a departure")), 1, "rejected/malformed"},
		{"oversize", framer.AppendFrame(nil, make([]byte, catalog.MaxDepartureSize+1)), -1, "rejected/oversize"},
		{"another peer's departure", framer.AppendFrame(nil, xDep), 1, "rejected/signer_mismatch"},
		{"forged", framer.AppendFrame(nil, forged), 1, "rejected/bad_signature"},
	}
	for _, tc := range cases {
		before := b.svc.Stats()
		if got := handOffRaw(t, atk, b.h.ID(), nw, tc.raw); got != tc.answer {
			t.Errorf("%s: answer %d, want %d", tc.name, got, tc.answer)
		}
		testutil.Eventually(t, 5*time.Second, func() bool { return b.svc.Stats().Rejected > before.Rejected },
			"%s: not counted as rejected", tc.name)
		if d := reasonDelta(before, b.svc.Stats()); d[tc.reason] != 1 {
			t.Errorf("%s: refusals moved by %v, want one %s", tc.name, d, tc.reason)
		}
	}
	if !knows(b.svc, x.h.ID()) {
		t.Error("a refused hand-off removed X")
	}
}

// TestDepart_SlowPeerDoesNotHoldTheDeparture: the first peer that takes
// the departure ends the wait; a hand-off to a peer that never answers is
// cut short rather than waited for (DepartureGrace is 20 s here). With two
// peers serving the hand-off, A hands off to both.
func TestDepart_SlowPeerDoesNotHoldTheDeparture(t *testing.T) {
	nw := catalog.IDFromString("discovery-test/depart-slow")
	a := newNode(t, nw, withParams(func(p *discovery.Params) { p.DepartureGrace = 20 * time.Second }))
	b := newNode(t, nw)
	slow := newHost(t)
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	slow.SetStreamHandler(discovery.DepartProtocol(nw), func(st network.Stream) {
		select { // never answers
		case <-done:
		case <-time.After(time.Minute):
		}
		_ = st.Reset()
	})
	connect(t, a.h, b.h)
	connect(t, slow, a.h)
	testutil.Eventually(t, 10*time.Second, func() bool {
		ok1, _ := a.h.Peerstore().SupportsProtocols(b.h.ID(), discovery.DepartProtocol(nw))
		ok2, _ := a.h.Peerstore().SupportsProtocols(slow.ID(), discovery.DepartProtocol(nw))
		return knows(b.svc, a.h.ID()) && len(ok1) == 1 && len(ok2) == 1
	}, "A does not know that both peers serve the hand-off")
	start := time.Now()
	if err := a.svc.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > testutil.Scale(10*time.Second) {
		t.Fatalf("Close took %v: the silent peer held the departure up", d)
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return !knows(b.svc, a.h.ID()) }, "B did not take the departure")
}
