package groups

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/internal/testutil"
)

// A fault hook that cuts one direction entirely makes the receiving side
// miss its heartbeats: the bond ends with Timeout on both sides (the
// other side hears the Close), and it re-forms once the cut heals.
func TestBonds_HeartbeatTimeoutThroughFaultHook(t *testing.T) {
	var cut atomic.Bool
	var from peer.ID
	hook := func(f, _ peer.ID, _ catalog.ID, _ byte) Fault {
		if cut.Load() && f == from {
			return Fault{Action: FaultDrop}
		}
		return Fault{}
	}
	a := newBondNode(t, withSvcOpts(WithFaultHook(hook)))
	b := newBondNode(t)
	from = a.h.ID()
	meshed(t, a, b)
	s := testSpec("heartbeat", RoleWriter)
	_, inA := a.attach(t, s)
	_, inB := b.attach(t, s)
	testutil.Eventually(t, 5*time.Second, func() bool { return len(inA.peers()) == 1 && len(inB.peers()) == 1 }, "no bond")
	cut.Store(true)
	// 5 missed ticks of 150–200 ms: about a second.
	took := testutil.Eventually(t, 5*time.Second, func() bool { return inB.downCount(CodeTimeout) == 1 }, "b did not time out")
	if took < 500*time.Millisecond {
		t.Fatalf("b timed out after %v, before the missed heartbeats could add up", took)
	}
	testutil.Eventually(t, 2*time.Second, func() bool { return inA.downCount(CodeTimeout) == 1 }, "a did not hear b's Timeout close")
	cut.Store(false)
	testutil.Eventually(t, 5*time.Second, func() bool { return len(inA.peers()) == 1 && len(inB.peers()) == 1 }, "bond did not re-form")
}

// Core frames pass through Send and the fault hook: dropped frames never
// arrive, delayed ones arrive late, the rest in order.
func TestBonds_SendThroughFaultHook(t *testing.T) {
	hook := func(_, _ peer.ID, _ catalog.ID, kind byte) Fault {
		switch kind {
		case firstCoreFrame + 1:
			return Fault{Action: FaultDrop}
		case firstCoreFrame + 2:
			return Fault{Action: FaultDelay, Delay: 300 * time.Millisecond}
		}
		return Fault{}
	}
	a := newBondNode(t, withSvcOpts(WithFaultHook(hook)))
	b := newBondNode(t)
	meshed(t, a, b)
	s := testSpec("send", RoleWriter)
	ga, inA := a.attach(t, s)
	_, inB := b.attach(t, s)
	testutil.Eventually(t, 5*time.Second, func() bool { return len(inA.peers()) == 1 && len(inB.peers()) == 1 }, "no bond")
	if ga.Send(b.h.ID(), frameHello, nil) || ga.Send(b.h.ID(), 0x40, nil) {
		t.Fatal("Send accepted a frame kind outside the core's range")
	}
	if ga.Send(peer.ID("nobody"), firstCoreFrame, nil) {
		t.Fatal("Send to an unbonded peer succeeded")
	}
	for i := range 3 {
		if !ga.Send(b.h.ID(), firstCoreFrame+byte(i), []byte{byte(i)}) {
			t.Fatalf("Send %d failed", i)
		}
	}
	ga.Send(b.h.ID(), firstCoreFrame+3, []byte{3})
	testutil.Eventually(t, 3*time.Second, func() bool { return len(inB.received()) == 3 }, "frames did not arrive")
	got := inB.received()
	if got[0].kind != firstCoreFrame || got[1].kind != firstCoreFrame+3 || got[2].kind != firstCoreFrame+2 {
		t.Fatalf("order: %x %x %x, want 20 23 22 (21 dropped, 22 delayed)", got[0].kind, got[1].kind, got[2].kind)
	}
}

// A full send queue drops and Send returns false at once; it never blocks.
func TestBonds_FullQueueDrops(t *testing.T) {
	a := newBondNode(t, withParams(func(p *BondParams) { p.SendQueue = 4 }))
	b := newBondNode(t)
	meshed(t, a, b)
	s := testSpec("queue", RoleWriter)
	ga, inA := a.attach(t, s)
	_, inB := b.attach(t, s)
	testutil.Eventually(t, 5*time.Second, func() bool { return len(inA.peers()) == 1 && len(inB.peers()) == 1 }, "no bond")
	// Fill the queue faster than the writer drains it: frames of 512 KiB.
	// Each Send copies its frame (the caller may reuse its buffer), so it
	// costs that copy and nothing more.
	big := make([]byte, 512<<10)
	dropped := 0
	var slowest time.Duration
	for range 64 {
		start := time.Now()
		if !ga.Send(b.h.ID(), firstCoreFrame, big) {
			dropped++
		}
		slowest = max(slowest, time.Since(start))
	}
	if slowest > testutil.Scale(500*time.Millisecond) {
		t.Fatalf("Send blocked: the slowest of 64 took %v", slowest)
	}
	if dropped == 0 {
		t.Fatal("no frame dropped on a 4-frame queue")
	}
	st := a.svc.BondStatus()
	// The status may count a heartbeat Pong dropped on the full queue too.
	if got := st.Groups[0].Bonds[0].Dropped; got < uint64(dropped) {
		t.Fatalf("status counts %d drops, Send reported %d", got, dropped)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return len(inB.received()) == 64-dropped }, "queued frames did not arrive")
}

// A responder that lacks the initiator's entry refuses with UnknownPeer;
// the initiator syncs catalogs with it and bonds on the retry.
func TestBonds_UnknownPeerSyncsAndRetries(t *testing.T) {
	a, b := newBondNode(t, withManualDials()), newBondNode(t, withManualDials())
	meshed(t, a, b)
	s := testSpec("unknown", RoleWriter)
	ga, inA := a.attach(t, s)
	_, inB := b.attach(t, s)
	eb := listedEntry(t, a, b.h.ID(), s.ID)
	// b forgets a: its catalog no longer holds a's entry.
	b.disc.Store().Purge(time.Now().Add(24 * time.Hour))
	if _, ok := b.disc.Catalog().Get(a.h.ID()); ok {
		t.Fatal("b still knows a")
	}
	startDial(ga, eb)
	testutil.Eventually(t, 5*time.Second, func() bool { return len(inA.peers()) == 1 && len(inB.peers()) == 1 }, "no bond after the sync")
	if a.svc.BondStatus().Refusals[CodeUnknownPeer] == 0 {
		t.Fatal("the first try was not refused with UnknownPeer")
	}
}
