package discovery_test

import (
	"testing"
	"time"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/internal/testutil"
)

// TestGossip_RateLimitedUpdatesAreIgnored: a peer that floods updates of
// its own (validly signed) entry gets its burst, then the validator
// ignores the excess (no penalty: it is valid, just too frequent), counts
// it, and does not forward it.
func TestGossip_RateLimitedUpdatesAreIgnored(t *testing.T) {
	nw := catalog.IDFromString("discovery-test/rate-limit")
	scores := &scoreRecorder{}
	a, b, x := gossipLine(t, nw, withPubSubOpts(scoreOptions(nw, scores)...))
	p := a.svc.Store().Params()
	xKey := hostKey(t, x.h)

	base := a.svc.Stats()
	start := catalog.NewVersion(time.Now())
	const flood = 20
	var last catalog.Version
	limited := func() uint64 { return reasonDelta(base, a.svc.Stats())["ignored/rate_limited"] }
	for i := range flood {
		// 1 ms apart: far more often than MinUpdateInterval allows. One at
		// a time, each handled by A before the next: gossip validates in
		// parallel, and a flood sent at once would arrive in any order.
		v := catalog.Version{StartMS: start.StartMS, UpdateMS: start.UpdateMS + int64(i)}
		before := limited()
		x.publish(t, entryAnnouncement(t, sealEntry(t, xKey, nw, v).Bytes()))
		testutil.Eventually(t, 5*time.Second, func() bool {
			e, ok := a.svc.Catalog().Get(x.h.ID())
			return (ok && e.Entry.Version == v) || limited() > before
		}, "A neither took nor refused an update")
		last = v
	}
	if limited() == 0 {
		t.Fatal("A counted no rate-limited update")
	}
	barrier(t, a, b)
	got, ok := a.svc.Catalog().Get(x.h.ID())
	if !ok {
		t.Fatal("A dropped the flooder's first updates too")
	}
	if got.Entry.Version.Compare(last) >= 0 {
		t.Fatalf("A took every update of the flood (%v)", got.Entry.Version)
	}
	if n := got.Entry.Version.UpdateMS - start.UpdateMS + 1; n != int64(p.UpdateBurst) {
		t.Fatalf("A took %d updates in %d ms, the burst is %d", n, flood, p.UpdateBurst)
	}
	if n := limited(); n != flood-uint64(p.UpdateBurst) {
		t.Fatalf("A counted %d rate-limited updates, want %d", n, flood-p.UpdateBurst)
	}
	// B hears only what A accepted: A did not forward the excess.
	if e, ok := b.svc.Catalog().Get(x.h.ID()); ok && e.Entry.Version.Compare(got.Entry.Version) > 0 {
		t.Fatalf("B holds %v, newer than A's %v: A forwarded an ignored update", e.Entry.Version, got.Entry.Version)
	}
	if s, ok := scores.score(x.h.ID()); ok && s < 0 {
		t.Fatalf("the flooder's score went to %v: an ignored update must not penalise", s)
	}
}
