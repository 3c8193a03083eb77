package discovery_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/catalog/discovery"
	"github.com/mosaik-go/mosaik/internal/testutil"
)

// TestService_Merge: an entry the application holds (here sealed by a
// host the service never met) goes into the catalog with Service.Merge,
// with an event (its addresses stay in the catalog, not the host's
// peerstore). The catalog's rules still apply, and a closed service
// refuses.
func TestService_Merge(t *testing.T) {
	nw := catalog.IDFromString("discovery-test/merge")
	a := newNode(t, nw, withoutPubSub(), withParams(func(p *discovery.Params) { p.DisableGossip, p.DisableSync = true, true }))
	r := newHost(t)
	sub := a.svc.Subscribe()
	defer sub.Close()
	se, err := catalog.Seal(catalog.Entry{
		PeerID: r.ID(), Network: nw, Protocol: catalog.ProtocolVersion,
		Version: catalog.NewVersion(time.Now()), Addrs: r.Addrs(),
	}, hostKey(t, r))
	if err != nil {
		t.Fatal(err)
	}
	if got := a.h.Peerstore().Addrs(r.ID()); len(got) != 0 {
		t.Fatalf("peerstore holds %v for a peer never met", got)
	}

	out, err := a.svc.Merge(se)
	if err != nil || out != catalog.Added {
		t.Fatalf("Merge = %v, %v; want added", out, err)
	}
	if !knows(a.svc, r.ID()) {
		t.Fatal("the merged entry is not in the catalog")
	}
	// The addresses stay in the catalog: not copied into the peerstore,
	// and a peer we are not connected to gets no connection-manager tag
	// (both cost memory per catalog peer).
	if got := a.h.Peerstore().Addrs(r.ID()); len(got) != 0 {
		t.Errorf("peerstore holds %v for a catalog peer never dialed", got)
	}
	if ti := a.h.ConnManager().GetTagInfo(r.ID()); ti != nil && len(ti.Tags) != 0 {
		t.Errorf("a catalog peer we are not connected to is tagged: %+v", ti.Tags)
	}
	if ev := nextEvent(t, sub, r.ID(), "PeerDiscovered", func(catalog.Event) bool { return true }); ev.Kind != catalog.PeerDiscovered {
		t.Errorf("event %v, want PeerDiscovered", ev.Kind)
	}
	if st := a.svc.Stats(); st.Added != 1 {
		t.Errorf("Added = %d, want 1", st.Added)
	}

	if _, err := a.svc.Merge(se); !errors.Is(err, catalog.ErrNotNewer) {
		t.Errorf("merging the same version again = %v, want catalog.ErrNotNewer", err)
	}
	if err := a.svc.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.svc.Merge(sealEntry(t, hostKey(t, newHost(t)), nw, catalog.NewVersion(time.Now()))); !errors.Is(err, discovery.ErrClosed) {
		t.Errorf("Merge after Close = %v, want discovery.ErrClosed", err)
	}
}

// TestJoinAnnouncement_NoPeerUpdated: when a topic peer joins, a node
// announces its entry again without a new version, so a join makes no
// peer see an update. Heartbeats are set far apart (the first is at
// start), so within the test any PeerUpdated would come from a join. a and
// b are settled when c joins through a; a announces again for c (counted),
// and b, which holds that version, ignores it.
func TestJoinAnnouncement_NoPeerUpdated(t *testing.T) {
	nw := catalog.IDFromString("discovery-test/join-announcement")
	slow := withParams(func(p *discovery.Params) {
		p.Catalog.PurgeAfter = 2 * time.Minute
		p.AnnounceInterval = 30 * time.Second
	})
	a := newNode(t, nw, slow)
	b := newNode(t, nw, slow)
	started := func(ns ...*testNode) bool {
		for _, n := range ns {
			if n.svc.Stats().Announcements == 0 {
				return false
			}
		}
		return true
	}
	// The first heartbeat (a new version) goes out at start: wait for it
	// before the peers meet, so they learn the versions they keep.
	testutil.Eventually(t, 5*time.Second, func() bool { return started(a, b) }, "no first heartbeat")
	connect(t, b.h, a.h)
	testutil.Eventually(t, 10*time.Second, func() bool {
		return knows(a.svc, b.h.ID()) && knows(b.svc, a.h.ID()) && a.svc.Stats().Announcements >= 2
	}, "a and b do not settle (a's announcement for b's join)")

	c := newNode(t, nw, slow)
	testutil.Eventually(t, 5*time.Second, func() bool { return started(c) }, "no first heartbeat of c")
	annA := a.svc.Stats().Announcements
	connect(t, c.h, a.h)
	all := []*testNode{a, b, c}
	testutil.Eventually(t, 10*time.Second, func() bool {
		for _, x := range all {
			for _, y := range all {
				if x != y && !knows(x.svc, y.h.ID()) {
					return false
				}
			}
		}
		return a.svc.Stats().Announcements > annA
	}, "c does not join, or a does not announce for it")
	updated := func() string {
		for i, x := range all {
			if st := x.svc.Stats(); st.Updated != 0 {
				return fmt.Sprintf("node %c took %d updates after joins (%+v)", 'a'+i, st.Updated, st)
			}
		}
		return ""
	}
	// Long enough for a's announcement to reach b (it went out already).
	testutil.Never(t, time.Second, 50*time.Millisecond, updated)
	if v := b.svc.Catalog(); v.Len() != 2 {
		t.Errorf("b holds %d peers, want 2", v.Len())
	}
}
