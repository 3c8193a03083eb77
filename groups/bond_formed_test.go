package groups

import (
	"bytes"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/groups/pb"
	"github.com/mosaik-go/mosaik/internal/testutil"
)

// When a node bonds with a new member it sends BondFormed (the member's
// sealed entry) on its other bonds of the group.
func TestBonds_BondFormedIsSent(t *testing.T) {
	var mu sync.Mutex
	formed := map[peer.ID]int{}
	hook := func(_, to peer.ID, _ catalog.ID, kind byte) Fault {
		if kind == frameFormed {
			mu.Lock()
			formed[to]++
			mu.Unlock()
		}
		return Fault{}
	}
	a := newBondNode(t, withSvcOpts(WithFaultHook(hook)))
	b, c := newBondNode(t, withManualDials()), newBondNode(t, withManualDials())
	meshed(t, a, b, c)
	s := testSpec("formed", RoleWriter)
	_, inB := b.attach(t, s)
	_, inC := c.attach(t, s)
	_, inA := a.attach(t, s) // a's trigger dials b and c
	testutil.Eventually(t, 5*time.Second, func() bool {
		return len(inA.peers()) == 2 && len(inB.peers()) == 1 && len(inC.peers()) == 1
	}, "a did not bond with b and c")
	testutil.Eventually(t, 2*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return formed[b.h.ID()]+formed[c.h.ID()] >= 1
	}, "no BondFormed sent")
}

// A BondFormed frame carrying an entry the receiver did not know puts it
// in the receiver's catalog, and the receiver tries to bond with that
// peer.
func TestBonds_BondFormedIsMerged(t *testing.T) {
	victim, evil := newBondNode(t), newBondNode(t, withoutService())
	meshed(t, victim, evil)
	s := testSpec("formed-merge", RoleWriter)
	_, inV := victim.attach(t, s)
	c := bondRaw(t, evil, victim, s)
	testutil.Eventually(t, 2*time.Second, func() bool { return len(inV.peers()) == 1 }, "no bond")
	// An entry of a peer the victim has never heard of, listing the group.
	stranger := newBondNode(t, bare())
	e, err := catalog.Seal(catalog.Entry{PeerID: stranger.h.ID(), Network: testNetwork, Version: catalog.NewVersion(time.Now()),
		Addrs: stranger.h.Addrs(), Groups: []catalog.Membership{{Group: s.ID, Role: 1}}}, stranger.h.Peerstore().PrivKey(stranger.h.ID()))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := victim.disc.Catalog().Get(stranger.h.ID()); ok {
		t.Fatal("victim knows the stranger already")
	}
	c.write(encodeMsg(frameFormed, &pb.BondEntry{Entry: e.Bytes()}))
	testutil.Eventually(t, 2*time.Second, func() bool {
		_, ok := victim.disc.Catalog().Get(stranger.h.ID())
		return ok
	}, "BondFormed entry not merged")
	// The evil peer sends no heartbeats, so check at once that the bond
	// carrying the entry stayed up.
	if got := len(inV.peers()); got != 1 {
		t.Fatalf("%d bonds after BondFormed, want the one that carried it", got)
	}
	// The stranger serves no bond protocol: the victim's attempt fails and
	// counts.
	testutil.Eventually(t, 5*time.Second, func() bool {
		st := victim.svc.BondStatus()
		var n uint64
		for _, v := range st.Refusals {
			n += v
		}
		return n >= 1
	}, "victim did not try the stranger")
}

// A BondFormed entry over the receiver's MaxEntrySize (the relaying
// member's cap may be larger: it is per node) is skipped; the bond that
// carried it stays up. It ended the bond with ProtocolViolation, so an
// honest member relaying a large newcomer broke its own bonds.
func TestBonds_BondFormedOverCapIsSkipped(t *testing.T) {
	victim, evil := newBondNode(t), newBondNode(t, withoutService())
	meshed(t, victim, evil)
	s := testSpec("formed-over-cap", RoleWriter)
	_, inV := victim.attach(t, s)
	c := bondRaw(t, evil, victim, s)
	testutil.Eventually(t, 2*time.Second, func() bool { return len(inV.peers()) == 1 }, "no bond")
	stranger := newBondNode(t, bare())
	max := victim.disc.Store().Params().MaxEntrySize
	var pad []catalog.StreamID // sorted, unique
	for i := 0; len(pad)*32 <= max; i++ {
		pad = append(pad, catalog.IDFromString(fmt.Sprint("pad-", i)))
	}
	slices.SortFunc(pad, func(a, b catalog.StreamID) int { return bytes.Compare(a[:], b[:]) })
	e, err := catalog.Seal(catalog.Entry{PeerID: stranger.h.ID(), Network: testNetwork, Version: catalog.NewVersion(time.Now()),
		Addrs: stranger.h.Addrs(), Streams: pad, Groups: []catalog.Membership{{Group: s.ID, Role: 1}}}, stranger.h.Peerstore().PrivKey(stranger.h.ID()))
	if err != nil {
		t.Fatal(err)
	}
	if len(e.Bytes()) <= max {
		t.Fatalf("the entry is %d bytes, not over the cap of %d", len(e.Bytes()), max)
	}
	c.write(encodeMsg(frameFormed, &pb.BondEntry{Entry: e.Bytes()}))
	// A frame after it shows it was read: an entry update of the evil
	// peer's own, which the victim merges.
	own, err := catalog.Seal(catalog.Entry{PeerID: evil.h.ID(), Network: testNetwork, Version: catalog.NewVersion(time.Now()),
		Addrs: evil.h.Addrs(), Tags: []catalog.Tag{catalog.IDFromString("after-formed")}, Groups: []catalog.Membership{{Group: s.ID, Role: 1}}}, evil.h.Peerstore().PrivKey(evil.h.ID()))
	if err != nil {
		t.Fatal(err)
	}
	c.write(encodeMsg(frameEntry, &pb.BondEntry{Entry: own.Bytes()}))
	testutil.Eventually(t, 2*time.Second, func() bool {
		got, ok := victim.disc.Catalog().Get(evil.h.ID())
		return ok && slices.Contains(got.Entry.Tags, catalog.IDFromString("after-formed"))
	}, "the frame after BondFormed was not read; bonds down: %v", testutil.Lazy(func() any { return inV.downs }))
	if got := len(inV.peers()); got != 1 {
		t.Fatalf("%d bonds after an over-cap BondFormed, want the one that carried it", got)
	}
	if _, ok := victim.disc.Catalog().Get(stranger.h.ID()); ok {
		t.Error("the over-cap entry was merged")
	}
}
