package discovery_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/catalog/discovery"
	"github.com/mosaik-go/mosaik/internal/testutil"
)

// TestSync_JoinSyncIsNotRelayed: a node that joins with an empty catalog
// does not republish on gossip the entries its first syncs bring (the
// network holds them already), while the member it joined relays the
// newcomer's entry, and a node with a catalog of its own relays the
// entries a later sync brings (a healed partition).
func TestSync_JoinSyncIsNotRelayed(t *testing.T) {
	nw := catalog.IDFromString("discovery-test/join-relay")
	// Heartbeats far apart: only relays publish others' entries.
	slow := withParams(func(p *discovery.Params) {
		p.AnnounceInterval, p.AntiEntropyInterval, p.CascadeBelow = time.Minute, 0, 0
		p.Catalog.PurgeAfter = 5 * time.Minute
	})
	fill := func(n *testNode, k int) {
		for i := range k {
			sk, _ := newKey(t)
			se := sealEntry(t, sk, nw, catalog.NewVersion(time.Now()), catalog.IDFromString(fmt.Sprint(i)))
			if _, err := n.svc.Store().Merge(se, time.Now()); err != nil {
				t.Fatalf("merge: %v", err)
			}
		}
	}
	a := newNode(t, nw, slow)
	fill(a, 5)
	b := newNode(t, nw, slow)
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Scale(10*time.Second))
	defer cancel()
	if err := b.svc.SyncWith(ctx, addrInfo(a.h)); err != nil {
		t.Fatalf("SyncWith: %v", err)
	}
	if got := b.svc.Catalog().Len(); got != 6 {
		t.Fatalf("the newcomer holds %d entries after its sync, want 6", got)
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return a.svc.Stats().Relayed >= 1 }, "the member did not relay the newcomer's entry")
	// Syncs on connect run too: a may sync with b before it merged b's
	// hello, and b, serving it, relays the entry of a's hello (an
	// initiator's entry is always relayed: that is how a newcomer's
	// spreads). None of the 5 other entries may be relayed by b.
	testutil.Never(t, time.Second, 20*time.Millisecond, func() string {
		if r := b.svc.Stats().Relayed; r > 1 {
			return fmt.Sprintf("the newcomer relayed %d entries, want at most the member's own", r)
		}
		return ""
	})
	before := b.svc.Stats().Relayed

	c := newNode(t, nw, slow)
	fill(c, 3)
	if err := b.svc.SyncWith(ctx, addrInfo(c.h)); err != nil {
		t.Fatalf("SyncWith: %v", err)
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return b.svc.Stats().Relayed-before >= 4 }, "a member relayed %d of the 4 entries new to it, want all", b.svc.Stats().Relayed-before)
}
