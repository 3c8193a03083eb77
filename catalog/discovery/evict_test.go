package discovery_test

import (
	"errors"
	"testing"
	"time"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/catalog/discovery"
	"github.com/mosaik-go/mosaik/internal/testutil"
)

// TestEviction_SparesConnectedPeers: a full catalog makes room for a new
// peer by evicting the newest-seen peer it is not connected to, never a
// connected one.
func TestEviction_SparesConnectedPeers(t *testing.T) {
	nw := catalog.IDFromString("discovery-test/eviction")
	small := withParams(func(p *discovery.Params) { p.Catalog.MaxPeers = 2 })
	a := newNode(t, nw, small)
	b := newNode(t, nw)
	xKey, xID := newKey(t)
	yKey, yID := newKey(t)
	if out, err := a.svc.Merge(sealEntry(t, xKey, nw, catalog.NewVersion(time.Now()))); err != nil || out != catalog.Added {
		t.Fatalf("merge X = %v, %v", out, err)
	}
	connect(t, b.h, a.h)
	testutil.Eventually(t, 10*time.Second, func() bool { return knows(a.svc, b.h.ID()) }, "A did not learn B")

	// Full: X, then B (connected, the newest seen). Y evicts X, the newest
	// seen that A is not connected to.
	if out, err := a.svc.Merge(sealEntry(t, yKey, nw, catalog.NewVersion(time.Now()))); err != nil || out != catalog.Added {
		t.Fatalf("merge Y = %v, %v", out, err)
	}
	snap := a.svc.Catalog()
	if _, ok := snap.Get(xID); ok {
		t.Fatal("X was not evicted")
	}
	if !knows(a.svc, b.h.ID()) || !knows(a.svc, yID) || snap.Len() != 2 {
		t.Fatalf("after the eviction A holds %d peers, B %v, Y %v", snap.Len(), knows(a.svc, b.h.ID()), knows(a.svc, yID))
	}
	// Y is now the newest seen: a third stranger evicts it, and B stays.
	zKey, zID := newKey(t)
	if _, err := a.svc.Merge(sealEntry(t, zKey, nw, catalog.NewVersion(time.Now()))); err != nil {
		t.Fatal(err)
	}
	if knows(a.svc, yID) || !knows(a.svc, zID) || !knows(a.svc, b.h.ID()) {
		t.Fatal("the second eviction did not take Y, or took B")
	}
}

// TestEviction_ChurnRefusesStrangersNotConnectedPeers: while the peer a
// full catalog would evict is younger than EvictMinAge, strangers are
// ignored (catalog_churn), whether merged directly or relayed by gossip,
// but a peer that connects and syncs gets in.
func TestEviction_ChurnRefusesStrangersNotConnectedPeers(t *testing.T) {
	nw := catalog.IDFromString("discovery-test/eviction-churn")
	a := newNode(t, nw, withParams(func(p *discovery.Params) {
		p.Catalog.MaxPeers = 2
		p.Catalog.EvictMinAge = time.Hour
	}))
	b := newNode(t, nw)
	for range 2 {
		k, _ := newKey(t)
		if _, err := a.svc.Merge(sealEntry(t, k, nw, catalog.NewVersion(time.Now()))); err != nil {
			t.Fatal(err)
		}
	}
	zKey, zID := newKey(t)
	if _, err := a.svc.Merge(sealEntry(t, zKey, nw, catalog.NewVersion(time.Now()))); !errors.Is(err, catalog.ErrCatalogChurn) {
		t.Fatalf("a stranger merged into a full catalog of young peers = %v, want %v", err, catalog.ErrCatalogChurn)
	}
	churn := func() uint64 { return a.svc.Stats().RejectedBy["ignored/catalog_churn"] }
	if churn() != 1 {
		t.Fatalf("catalog_churn counted %d times", churn())
	}
	// B connects: its hello gets in although the peer it evicts is young.
	connect(t, b.h, a.h)
	testutil.Eventually(t, 10*time.Second, func() bool { return knows(a.svc, b.h.ID()) }, "A did not take the connected B")
	// A stranger B relays on gossip is ignored too.
	wKey, wID := newKey(t)
	if _, err := b.svc.Merge(sealEntry(t, wKey, nw, catalog.NewVersion(time.Now()))); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return churn() >= 2 }, "A did not refuse the relayed stranger as catalog_churn")
	if knows(a.svc, wID) || knows(a.svc, zID) {
		t.Fatal("a stranger got into the full catalog")
	}
	if r := a.svc.Stats().Rejected; r != 0 {
		t.Fatalf("%d inputs rejected: churn must be ignored, not rejected", r)
	}
}
