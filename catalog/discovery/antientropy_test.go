package discovery_test

import (
	"testing"
	"time"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/catalog/discovery"
	"github.com/mosaik-go/mosaik/internal/testutil"
)

// TestAntiEntropy_RepairsWhatGossipMissed: with gossip off, a connection
// to a known peer never syncs again, so only the periodic anti-entropy
// sync can bring a's catalog b's changed entry, and keep b from being
// purged while it stays connected.
func TestAntiEntropy_RepairsWhatGossipMissed(t *testing.T) {
	nw := catalog.IDFromString("discovery-test/anti-entropy")
	params := withParams(func(p *discovery.Params) {
		p.DisableGossip = true
		p.AntiEntropyInterval = 300 * time.Millisecond
	})
	a, b := newNode(t, nw, withoutPubSub(), params), newNode(t, nw, withoutPubSub(), params)
	connect(t, a.h, b.h)
	testutil.Eventually(t, 10*time.Second, func() bool { return knows(a.svc, b.h.ID()) && knows(b.svc, a.h.ID()) },
		"the sync on connect did not run")

	tag := catalog.IDFromString("changed")
	if _, err := b.svc.UpdateLocal(func(e *catalog.Entry) { e.Tags = append(e.Tags, tag) }); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		e, ok := a.svc.Catalog().Get(b.h.ID())
		return ok && e.Entry.HasTag(tag)
	}, "a never got b's changed entry")
	// Twice PurgeAfter: the syncs keep b's entry fresh at a.
	testutil.Never(t, 2*discovery.TestParams().Catalog.PurgeAfter, 100*time.Millisecond, func() string {
		if !knows(a.svc, b.h.ID()) {
			return "a purged b, which is connected"
		}
		return ""
	})
}
