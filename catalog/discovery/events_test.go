package discovery_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/internal/testutil"
)

// nextEvent returns the first event about p that satisfies match, skipping
// others (heartbeats are PeerUpdated events too).
func nextEvent(t *testing.T, sub *catalog.Subscription, p peer.ID, what string, match func(catalog.Event) bool) catalog.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Scale(10*time.Second))
	defer cancel()
	for {
		ev, err := sub.Next(ctx)
		if err != nil {
			if errors.Is(err, catalog.ErrLagged) {
				continue
			}
			t.Fatalf("waiting for %s: %v", what, err)
		}
		if ev.Peer == p && match(ev) {
			return ev
		}
	}
}

// TestEvents_DiscoveredUpdatedDeparted follows one peer through its life in
// another node's catalog: discovered when it connects, updated when it
// changes its tags, departed (by notice, not purge) when it closes.
func TestEvents_DiscoveredUpdatedDeparted(t *testing.T) {
	nw := catalog.IDFromString("discovery-test/events")
	a := newNode(t, nw)
	b := newNode(t, nw)
	sub := a.svc.Subscribe()
	defer sub.Close()

	connect(t, b.h, a.h)
	ev := nextEvent(t, sub, b.h.ID(), "PeerDiscovered", func(ev catalog.Event) bool { return true })
	if ev.Kind != catalog.PeerDiscovered {
		t.Fatalf("first event about B is %v, want PeerDiscovered", ev.Kind)
	}
	if ev.Entry == nil || ev.Entry.PeerID() != b.h.ID() {
		t.Fatalf("PeerDiscovered carries entry %v", ev.Entry)
	}

	// The departure travels on gossip: wait until B's gossip reaches A (A
	// holds a heartbeat newer than the entry first learned by sync), so
	// the mesh exists when B leaves.
	first := ev.Entry.Entry.Version
	testutil.Eventually(t, 5*time.Second, func() bool {
		e, ok := a.svc.Catalog().Get(b.h.ID())
		return ok && e.Entry.Version.Compare(first) > 0
	}, "B's gossip does not reach A")

	tag := catalog.IDFromString("validator")
	if _, err := b.svc.UpdateLocal(func(e *catalog.Entry) { e.Tags = append(e.Tags, tag) }); err != nil {
		t.Fatal(err)
	}
	ev = nextEvent(t, sub, b.h.ID(), "PeerUpdated with the new tag", func(ev catalog.Event) bool {
		return ev.Kind != catalog.PeerUpdated || ev.Entry.Entry.HasTag(tag)
	})
	if ev.Kind != catalog.PeerUpdated {
		t.Fatalf("got %v about B before its tag change, want PeerUpdated", ev.Kind)
	}

	if err := b.svc.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	ev = nextEvent(t, sub, b.h.ID(), "PeerDeparted", func(ev catalog.Event) bool { return ev.Kind != catalog.PeerUpdated })
	if ev.Kind != catalog.PeerDeparted {
		t.Fatalf("got %v about B after it closed, want PeerDeparted", ev.Kind)
	}
	if ev.Purged {
		t.Error("the departure was reported as a purge: the notice did not arrive")
	}
	if knows(a.svc, b.h.ID()) {
		t.Error("B still in A's catalog after PeerDeparted")
	}
	if st := a.svc.Stats(); st.Departed != 1 || st.Purged != 0 {
		t.Errorf("A's stats after the departure: departed %d, purged %d", st.Departed, st.Purged)
	}
	if _, ok := a.svc.RTT().Get(b.h.ID()); ok {
		t.Error("A keeps an RTT sample of the departed peer")
	}
}
