package discovery_test

import (
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/catalog/discovery"
	"github.com/mosaik-go/mosaik/internal/testutil"
)

// A burst of gossip entries is merged in batches: every entry lands, in
// fewer catalog snapshots than entries (one snapshot per entry before).
func TestGossip_BurstMergedInBatches(t *testing.T) {
	nw := catalog.IDFromString("discovery-test/gossip-batches")
	a := newNode(t, nw, withParams(func(p *discovery.Params) { p.DisableSync = true }))
	x := newGossipAttacker(t, nw)
	connect(t, x.h, a.h)
	testutil.Eventually(t, 5*time.Second, func() bool { return slices.Contains(x.topic.ListPeers(), a.h.ID()) },
		"the publisher does not see A on the catalog topic")

	const n = 100
	data := make([][]byte, n)
	ids := make([]peer.ID, n)
	for i := range data {
		key, id := newKey(t)
		ids[i] = id
		data[i] = entryAnnouncement(t, sealEntry(t, key, nw, catalog.NewVersion(time.Now())).Bytes())
	}
	v0 := a.svc.Catalog().Version()
	for _, d := range data {
		x.publish(t, d)
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		for _, id := range ids {
			if !knows(a.svc, id) {
				return false
			}
		}
		return true
	}, "A did not merge every entry of the burst")
	if st := a.svc.Stats(); st.Added < n {
		t.Fatalf("A added %d entries, want %d", st.Added, n)
	}
	// The local entry's own changes publish snapshots too; the entries
	// alone took one each before batching.
	if d := a.svc.Catalog().Version() - v0; d >= n {
		t.Fatalf("%d entries took %d snapshots: not batched", n, d)
	}
}
