package groups

import (
	"fmt"
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

// lowerHigher returns the two nodes ordered by peer ID.
func lowerHigher(a, b *bondNode) (lower, higher *bondNode) {
	if wins(a.h.ID(), b.h.ID()) {
		return a, b
	}
	return b, a
}

// Two members that may bond at about the same time do not both dial: the
// higher ID waits its dial grace, the lower ID's stream (the one the
// tie-break keeps) forms the bond, and nothing is refused or replaced.
func TestBonds_LowerIDDialsFirst(t *testing.T) {
	// A grace far longer than a catalog update takes, even under load.
	grace := withParams(func(p *BondParams) { p.DialGrace = 3 * time.Second })
	a, b := newBondNode(t, grace), newBondNode(t, grace)
	meshed(t, a, b)
	lower, higher := lowerHigher(a, b)
	for round := range 5 {
		s := testSpec(fmt.Sprintf("lower-first-%d", round), RoleWriter)
		gl, _ := lower.attach(t, s)
		gh, _ := higher.attach(t, s)
		testutil.Eventually(t, 10*time.Second, func() bool { return len(gl.bonds()) == 1 && len(gh.bonds()) == 1 },
			"round %d: no bond on both sides", round)
		if o := gh.bonds()[0].opener; o != lower.h.ID() {
			t.Fatalf("round %d: the bond was opened by %s, want the lower %s", round, o, lower.h.ID())
		}
	}
	for _, n := range []*bondNode{lower, higher} {
		st := n.svc.BondStatus()
		if len(st.Refusals) > 0 || len(st.Ends) > 0 {
			t.Fatalf("refusals %v, ends %v, want none", st.Refusals, st.Ends)
		}
	}
}

// The higher ID still bonds when the lower one does not dial: once its
// grace has run.
func TestBonds_HigherIDDialsAfterItsGrace(t *testing.T) {
	const grace = 300 * time.Millisecond
	k1, id1 := newKey(t)
	k2, id2 := newKey(t)
	if !wins(id1, id2) {
		k1, k2 = k2, k1
	}
	lower := newBondNode(t, withKey(k1), withManualDials()) // never dials
	higher := newBondNode(t, withKey(k2), withParams(func(p *BondParams) { p.DialGrace = grace }))
	meshed(t, lower, higher)
	s := testSpec("higher-after-grace", RoleWriter)
	gl, _ := lower.attach(t, s)
	listedEntry(t, higher, lower.h.ID(), s.ID)
	start := time.Now()
	gh, _ := higher.attach(t, s)
	testutil.Eventually(t, 10*time.Second, func() bool { return len(gl.bonds()) == 1 && len(gh.bonds()) == 1 },
		"no bond on both sides")
	if took := time.Since(start); took < grace {
		t.Fatalf("the higher ID bonded %v after it could, within its grace of %v", took, grace)
	}
	if o := gh.bonds()[0].opener; o != higher.h.ID() {
		t.Fatalf("the bond was opened by %s, want the higher %s", o, higher.h.ID())
	}
}
