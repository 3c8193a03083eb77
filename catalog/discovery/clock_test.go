package discovery_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/catalog/discovery"
	"github.com/mosaik-go/mosaik/internal/testutil"
)

// TestLocalVersion_ClockStepsBack: the wall clock of node a steps back an
// hour (an NTP correction, a VM restored from a snapshot). Its entry's
// version must still grow, on a change and on heartbeats, so that peers
// that hold an older version take the new ones: b, on the real clock,
// holds a's entry before the step and takes a's changed entry after it.
func TestLocalVersion_ClockStepsBack(t *testing.T) {
	nw := catalog.IDFromString("discovery-test/clock-back")
	start := time.Now()
	var clock atomic.Int64 // unix nanoseconds
	clock.Store(start.UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	gossipOff := withParams(func(p *discovery.Params) { p.DisableGossip = true })
	a := newNode(t, nw, withoutPubSub(), gossipOff, withServiceOpts(discovery.WithClock(now)))
	b := newNode(t, nw, withoutPubSub(), gossipOff)
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Scale(10*time.Second))
	defer cancel()
	if err := a.svc.SyncWith(ctx, addrInfo(b.h)); err != nil {
		t.Fatalf("SyncWith before the step: %v", err)
	}
	before := a.svc.Local().Entry.Version

	clock.Store(start.Add(-time.Hour).UnixNano())
	tag := catalog.IDFromString("after-the-step")
	changed, err := a.svc.UpdateLocal(func(e *catalog.Entry) { e.Tags = append(e.Tags, tag) })
	if err != nil {
		t.Fatalf("UpdateLocal after the step: %v", err)
	}
	if changed.Entry.Version.Compare(before) <= 0 {
		t.Fatalf("version after the clock stepped back: %v, not newer than %v", changed.Entry.Version, before)
	}
	// Heartbeats (every AnnounceInterval) bump it further on the stepped clock.
	testutil.Eventually(t, 10*time.Second, func() bool {
		return a.svc.Local().Entry.Version.Compare(changed.Entry.Version) > 0
	}, "no heartbeat bumped the version after the step")
	if err := a.svc.SyncWith(ctx, addrInfo(b.h)); err != nil {
		t.Fatalf("SyncWith after the step: %v", err)
	}
	got, ok := b.svc.Catalog().Get(a.h.ID())
	if !ok || !got.Entry.HasTag(tag) || got.Entry.Version.Compare(changed.Entry.Version) < 0 {
		t.Fatalf("b holds %v of a (known %v), want the entry changed after the step", got, ok)
	}
}
