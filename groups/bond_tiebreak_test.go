package groups

import (
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/internal/testutil"
)

// startDial starts a dial of g to e's peer as the trigger would.
func startDial(g *groupNet, e *catalog.SignedEntry) bool {
	g.mu.Lock()
	if g.dialing[e.PeerID()] || g.closed {
		g.mu.Unlock()
		return false
	}
	g.dialing[e.PeerID()] = true
	g.wg.Add(1)
	g.mu.Unlock()
	go g.dial(e)
	return true
}

// listedEntry waits until n's catalog holds p's entry listing group id.
func listedEntry(t testing.TB, n *bondNode, p peer.ID, id catalog.ID) *catalog.SignedEntry {
	t.Helper()
	var e *catalog.SignedEntry
	testutil.Eventually(t, 5*time.Second, func() bool {
		var ok bool
		e, ok = n.disc.Catalog().Get(p)
		if !ok {
			return false
		}
		_, ok = e.Entry.InGroup(id)
		return ok
	}, "entry listing the group never arrived")
	return e
}

// Both sides dial at once, many times: each round ends with exactly one
// bond on each side, the same stream: the one the lower peer ID opened.
func TestBonds_SimultaneousDialsTieBreak(t *testing.T) {
	a, b := newBondNode(t, withManualDials()), newBondNode(t, withManualDials())
	meshed(t, a, b)
	s := testSpec("tiebreak", RoleWriter)
	ga, inA := a.attach(t, s)
	gb, inB := b.attach(t, s)
	ea, eb := listedEntry(t, b, a.h.ID(), s.ID), listedEntry(t, a, b.h.ID(), s.ID)
	lower := a.h.ID()
	if b.h.ID() < lower {
		lower = b.h.ID()
	}
	for round := range 8 {
		var start sync.WaitGroup
		start.Add(1)
		var done sync.WaitGroup
		done.Add(2)
		go func() { defer done.Done(); start.Wait(); startDial(ga, eb) }()
		go func() { defer done.Done(); start.Wait(); startDial(gb, ea) }()
		start.Done()
		done.Wait()
		testutil.Eventually(t, 5*time.Second, func() bool {
			ga.mu.Lock()
			gb.mu.Lock()
			defer ga.mu.Unlock()
			defer gb.mu.Unlock()
			return len(ga.dialing)+len(gb.dialing) == 0 && len(ga.slots) == 1 && len(gb.slots) == 1
		}, "round %d: no single bond on both sides", round)
		ba, bb := ga.bonds()[0], gb.bonds()[0]
		if ba.opener != lower || bb.opener != lower {
			t.Fatalf("round %d: kept streams opened by %s and %s, want both by the lower %s", round, ba.opener, bb.opener, lower)
		}
		if len(inA.peers()) != 1 || len(inB.peers()) != 1 {
			t.Fatalf("round %d: inbox bonds %v %v", round, inA.peers(), inB.peers())
		}
		// The kept streams are the two ends of one stream.
		if ba.st.Conn().RemotePeer() != b.h.ID() || ba.st.Protocol() != bb.st.Protocol() {
			t.Fatalf("round %d: stream mismatch", round)
		}
		ba.end(CodeCancelled, "next round", false)
		testutil.Eventually(t, 5*time.Second, func() bool { return len(gb.bonds()) == 0 && len(ga.bonds()) == 0 }, "round %d: bond did not end", round)
	}
	t.Logf("refusals: a %v, b %v; bond ends: a %v, b %v", a.svc.BondStatus().Refusals, b.svc.BondStatus().Refusals, a.svc.BondStatus().Ends, b.svc.BondStatus().Ends)
	for _, in := range []*recInbox{inA, inB} {
		if bad := in.misorders(); len(bad) > 0 {
			t.Fatalf("inbox order: %v", bad)
		}
	}
}
