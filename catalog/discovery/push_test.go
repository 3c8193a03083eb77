package discovery_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/catalog/discovery"
	"github.com/mosaik-go/mosaik/internal/framer"
	"github.com/mosaik-go/mosaik/internal/testutil"
)

// pushOnly: no gossip, no anti-entropy, no cascade: after the syncs on
// connect, bump push is the only way a heartbeat travels.
var pushOnly = []nodeOpt{withoutPubSub(), withParams(func(p *discovery.Params) {
	p.DisableGossip, p.AntiEntropyInterval, p.CascadeBelow = true, 0, 0
	p.AnnounceInterval, p.AnnounceJitter = 200*time.Millisecond, 0.25
})}

// versionAt is the version of p's entry in svc's catalog (zero if none).
func versionAt(svc *discovery.Service, p peer.ID) catalog.Version {
	e, ok := svc.Catalog().Get(p)
	if !ok {
		return catalog.Version{}
	}
	return e.Entry.Version
}

// chain connects a - b and b - c and waits until c holds a's entry.
func chain(t *testing.T, a, b, c *testNode) {
	t.Helper()
	connect(t, b.h, a.h)
	testutil.Eventually(t, 5*time.Second, func() bool { return knows(b.svc, a.h.ID()) && knows(a.svc, b.h.ID()) }, "a and b did not sync")
	connect(t, c.h, b.h)
	testutil.Eventually(t, 5*time.Second, func() bool { return knows(c.svc, a.h.ID()) && knows(b.svc, c.h.ID()) }, "c did not learn a through b")
}

// TestPush_HeartbeatsTwoHops: with gossip off, a's heartbeats reach c,
// two hops away, by bump push alone, and c's heartbeats reach a.
func TestPush_HeartbeatsTwoHops(t *testing.T) {
	nw := catalog.IDFromString("discovery-test/push-hops")
	a, b, c := newNode(t, nw, pushOnly...), newNode(t, nw, pushOnly...), newNode(t, nw, pushOnly...)
	chain(t, a, b, c)
	if a.h.Network().Connectedness(c.h.ID()) == network.Connected {
		t.Fatal("a and c are connected: the test needs two hops")
	}
	for _, dir := range []struct{ from, to *testNode }{{a, c}, {c, a}} {
		v := dir.from.svc.Local().Entry.Version
		testutil.Eventually(t, 10*time.Second, func() bool {
			return versionAt(dir.to.svc, dir.from.h.ID()).Compare(v) > 0
		}, "a later heartbeat than %v did not cross two hops", v)
	}
	if st := b.svc.Stats(); st.BumpsMerged == 0 || st.BumpsPushed == 0 {
		t.Fatalf("the middle node merged %d and pushed %d bumps", st.BumpsMerged, st.BumpsPushed)
	}
	if st := a.svc.Stats(); st.BumpHeartbeats == 0 || st.BumpsRefused != 0 {
		t.Fatalf("a: %d heartbeats by push, %d bumps refused", st.BumpHeartbeats, st.BumpsRefused)
	}
	if c.h.Network().Connectedness(a.h.ID()) == network.Connected {
		t.Fatal("a and c connected during the test")
	}
}

// pushFrame writes one bump frame from h to to on the bump protocol.
func pushFrame(t *testing.T, from *testNode, to *testNode, nw catalog.NetworkID, frame []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Scale(5*time.Second))
	defer cancel()
	st, err := from.h.NewStream(ctx, to.h.ID(), discovery.BumpProtocol(nw))
	if err != nil {
		t.Fatalf("NewStream: %v", err)
	}
	if err := framer.WriteFrame(st, frame); err != nil {
		t.Fatalf("write: %v", err)
	}
	_ = st.Close()
}

func bumpRec(t *testing.T, se *catalog.SignedEntry) []byte {
	t.Helper()
	rec, ok := discovery.AppendBumpRecord(nil, se)
	if !ok {
		t.Fatal("no bump record")
	}
	return rec
}

// TestPush_BadBumps: a forged bump is rejected, counted and scored
// against its sender; a replayed or stale one is dropped as known; a
// valid one is merged; malformed frames count double, and past the
// penalty limit the sender's frames are refused.
func TestPush_BadBumps(t *testing.T) {
	nw := catalog.IDFromString("discovery-test/push-bad")
	quiet := withParams(func(p *discovery.Params) { p.AnnounceInterval, p.Catalog.PurgeAfter = time.Minute, 5*time.Minute })
	b := newNode(t, nw, append(pushOnly, quiet)...)
	m := newNode(t, nw, append(pushOnly, quiet)...) // the sender: a member of the network
	sk, x := newKey(t)
	v1 := catalog.NewVersion(time.Now().Add(-time.Second))
	se1 := sealEntry(t, sk, nw, v1)
	if _, err := b.svc.Store().Merge(se1, time.Now()); err != nil {
		t.Fatal(err)
	}
	connect(t, m.h, b.h)
	testutil.Eventually(t, 5*time.Second, func() bool { return knows(b.svc, m.h.ID()) }, "b did not learn m")

	// Forged: the record of a real next version, with its signature altered.
	v2 := v1.Next(time.Now())
	rec := bumpRec(t, sealEntry(t, sk, nw, v2))
	rec[len(rec)-1] ^= 1
	pushFrame(t, m, b, nw, rec)
	testutil.Eventually(t, 5*time.Second, func() bool { return b.svc.Stats().BumpsRefused >= 1 }, "the forged bump was not refused")
	st := b.svc.Stats()
	if st.RejectedBy["rejected/bad_signature"] == 0 || versionAt(b.svc, x) != v1 || b.svc.BumpPenalty(m.h.ID()) < 0.5 {
		t.Fatalf("forged bump: rejected by %v, version %v (want %v), penalty %v", st.RejectedBy, versionAt(b.svc, x), v1, b.svc.BumpPenalty(m.h.ID()))
	}

	// Valid, then replayed and stale.
	pushFrame(t, m, b, nw, bumpRec(t, sealEntry(t, sk, nw, v2)))
	testutil.Eventually(t, 5*time.Second, func() bool { return versionAt(b.svc, x) == v2 }, "the valid bump was not merged")
	frame := append(bumpRec(t, sealEntry(t, sk, nw, v2)), bumpRec(t, se1)...)
	known := b.svc.Stats().BumpsKnown
	pushFrame(t, m, b, nw, frame)
	testutil.Eventually(t, 5*time.Second, func() bool { return b.svc.Stats().BumpsKnown >= known+2 }, "the replayed and stale bumps were not dropped as known")
	if versionAt(b.svc, x) != v2 || b.svc.Stats().BumpsMerged != 1 {
		t.Fatalf("after replays: version %v, %d merged", versionAt(b.svc, x), b.svc.Stats().BumpsMerged)
	}

	// Malformed frames, until the sender is refused.
	for i := 0; b.svc.Stats().BumpErrorsBy["in/penalized"] == 0; i++ {
		if i == 10 {
			t.Fatalf("m never penalized: %v, penalty %v", b.svc.Stats().BumpErrorsBy, b.svc.BumpPenalty(m.h.ID()))
		}
		pushFrame(t, m, b, nw, []byte{38, 1, 2, 3})
		want := uint64(i + 1)
		testutil.Eventually(t, 5*time.Second, func() bool {
			by := b.svc.Stats().BumpErrorsBy
			return by["in/malformed"]+by["in/penalized"] >= want
		}, "frame %d not counted", i)
	}
	if pen := b.svc.BumpPenalty(m.h.ID()); pen <= 16 || discovery.BumpPenaltyScore(pen) >= discovery.GraylistScoreThreshold {
		t.Fatalf("penalty %v, gossip score %v", pen, discovery.BumpPenaltyScore(pen))
	}
}

// TestPush_UnknownPeerPulls: a bump for a peer the receiver does not know
// makes it sync with the sender, which brings the entry.
func TestPush_UnknownPeerPulls(t *testing.T) {
	nw := catalog.IDFromString("discovery-test/push-pull")
	quiet := withParams(func(p *discovery.Params) { p.AnnounceInterval, p.Catalog.PurgeAfter = time.Minute, 5*time.Minute })
	a, b := newNode(t, nw, append(pushOnly, quiet)...), newNode(t, nw, append(pushOnly, quiet)...)
	connect(t, b.h, a.h)
	testutil.Eventually(t, 5*time.Second, func() bool { return knows(b.svc, a.h.ID()) && knows(a.svc, b.h.ID()) }, "a and b did not sync")
	// Let the syncs on connect settle, so the pull is what brings y.
	time.Sleep(testutil.Scale(300 * time.Millisecond)) // past SyncMinInterval (200 ms)
	sk, y := newKey(t)
	v1 := catalog.NewVersion(time.Now().Add(-time.Second))
	if _, err := a.svc.Store().Merge(sealEntry(t, sk, nw, v1), time.Now()); err != nil {
		t.Fatal(err)
	}
	// Heartbeats of y, merged into a as a caller's updates, go out as
	// bumps. A pull can be put off by the per-peer sync pacing (a sync on
	// connect that ran late): the next heartbeat's bump pulls again.
	v := v1
	last := time.Time{}
	testutil.Eventually(t, 10*time.Second, func() bool {
		if versionAt(b.svc, y).Compare(v1) > 0 {
			return true
		}
		if time.Since(last) > 300*time.Millisecond {
			v, last = v.Next(time.Now()), time.Now()
			if out, err := a.svc.Merge(sealEntry(t, sk, nw, v)); err != nil || out != catalog.Updated {
				t.Fatalf("Merge: %v %v", out, err)
			}
		}
		return false
	}, "b did not pull y's entry")
	if st := b.svc.Stats(); st.BumpsPulled == 0 {
		t.Fatalf("b pulled no bump: %+v", st)
	}
}

// TestPush_PullStartsNoSyncWithSyncsDisabled: DisableSync turns syncs off
// (SyncWith aside); a bump of an unknown peer started one all the same.
// (The catalog scale benchmark's newcomer, meant to run exactly one sync,
// ran two, and its time and bytes counted both.)
func TestPush_PullStartsNoSyncWithSyncsDisabled(t *testing.T) {
	nw := catalog.IDFromString("discovery-test/push-nosync")
	quiet := withParams(func(p *discovery.Params) { p.AnnounceInterval, p.Catalog.PurgeAfter = time.Minute, 5*time.Minute })
	a := newNode(t, nw, append(pushOnly, quiet)...)
	b := newNode(t, nw, append(pushOnly, quiet, withParams(func(p *discovery.Params) { p.DisableSync = true }))...)
	connect(t, b.h, a.h)
	sk, y := newKey(t)
	v := catalog.NewVersion(time.Now().Add(-time.Second))
	if _, err := a.svc.Store().Merge(sealEntry(t, sk, nw, v), time.Now()); err != nil {
		t.Fatal(err)
	}
	last := time.Time{}
	testutil.Eventually(t, 10*time.Second, func() bool {
		if b.svc.Stats().BumpsPulled > 0 {
			return true
		}
		if time.Since(last) > 300*time.Millisecond { // a heartbeat of y, pushed to b as a bump
			v, last = v.Next(time.Now()), time.Now()
			if out, err := a.svc.Merge(sealEntry(t, sk, nw, v)); err != nil || out != catalog.Updated {
				t.Fatalf("Merge: %v %v", out, err)
			}
		}
		return false
	}, "b noted no pull of y's bump")
	if st := b.svc.Stats(); st.SyncsStarted != 0 || knows(b.svc, y) {
		t.Fatalf("b, with syncs disabled, started %d syncs (knows y: %v)", st.SyncsStarted, knows(b.svc, y))
	}
}

// TestPush_MixedVersions: a node without bump push (an older node) and
// two with it, in a chain old - a - b with gossip on: each one's
// heartbeats reach the others. a bridges b's bumps onto gossip for the
// old node, and b gets its heartbeats from a by push alone.
func TestPush_MixedVersions(t *testing.T) {
	nw := catalog.IDFromString("discovery-test/push-mixed")
	opts := withParams(func(p *discovery.Params) { p.AntiEntropyInterval, p.CascadeBelow = 0, 0 })
	old := newNode(t, nw, opts, withParams(func(p *discovery.Params) { p.BumpInterval = 0 }))
	a, b := newNode(t, nw, opts), newNode(t, nw, opts)
	connect(t, a.h, old.h)
	connect(t, b.h, a.h)
	testutil.Eventually(t, 10*time.Second, func() bool {
		return knows(old.svc, b.h.ID()) && knows(b.svc, old.h.ID())
	}, "old and b did not learn each other")
	for _, dir := range []struct{ from, to *testNode }{{b, old}, {old, b}, {a, old}, {old, a}} {
		v := dir.from.svc.Local().Entry.Version
		testutil.Eventually(t, 10*time.Second, func() bool {
			return versionAt(dir.to.svc, dir.from.h.ID()).Compare(v) > 0
		}, "a later heartbeat than %v did not arrive", v)
	}
	if a.svc.Stats().BumpsMerged == 0 {
		t.Fatal("a merged no bump from b")
	}
	if st := old.svc.Stats(); st.BumpFramesReceived != 0 {
		t.Fatalf("the old node received %d frames", st.BumpFramesReceived)
	}
}

// TestPush_FullRoundSendsSeveralFrames: a round sends a peer up to four
// frames when its bumps overflow one (about 500 bumps of 64 KiB), so 1 200
// heartbeats accepted at once cross in one BumpInterval, not three.
func TestPush_FullRoundSendsSeveralFrames(t *testing.T) {
	nw := catalog.IDFromString("discovery-test/push-frames")
	interval := 3 * time.Second
	slow := withParams(func(p *discovery.Params) {
		p.BumpInterval = interval
		p.AnnounceInterval, p.Catalog.PurgeAfter = time.Minute, 5*time.Minute
	})
	a, b := newNode(t, nw, append(pushOnly, slow)...), newNode(t, nw, append(pushOnly, slow)...)
	const n = 1200
	keys := make([]crypto.PrivKey, n)
	ids := make([]peer.ID, n)
	v1 := catalog.NewVersion(time.Now().Add(-time.Minute))
	for i := range n {
		keys[i], ids[i] = newKey(t)
		se := sealEntry(t, keys[i], nw, v1)
		for _, x := range []*testNode{a, b} {
			if _, err := x.svc.Store().Merge(se, time.Now()); err != nil {
				t.Fatal(err)
			}
		}
	}
	connect(t, b.h, a.h)
	// Bumps first, until one crosses by push: b is then a push peer of
	// a's (a new push peer gets only what a accepts after it joined the
	// push set) when the batch comes.
	warm, last := v1, time.Time{}
	testutil.Eventually(t, 20*time.Second, func() bool {
		if b.svc.Stats().BumpsMerged > 0 {
			return true
		}
		if time.Since(last) > interval/2 {
			warm, last = warm.Next(time.Now()), time.Now()
			if out, err := a.svc.Merge(sealEntry(t, keys[0], nw, warm)); err != nil || out != catalog.Updated {
				t.Fatalf("Merge: %v %v", out, err)
			}
		}
		return false
	}, "a pushed nothing to b")
	v2 := warm.Next(time.Now())
	bumps := make([]*catalog.SignedEntry, n)
	for i := range n {
		bumps[i] = sealEntry(t, keys[i], nw, v2)
	}
	framesIn := b.svc.Stats().BumpFramesReceived
	start := time.Now()
	for _, se := range bumps {
		if out, err := a.svc.Merge(se); err != nil || out != catalog.Updated {
			t.Fatalf("Merge: %v %v", out, err)
		}
	}
	testutil.Eventually(t, 30*time.Second, func() bool {
		for _, id := range ids {
			if versionAt(b.svc, id).Compare(v2) < 0 {
				return false
			}
		}
		return true
	}, "b did not get every bump: a %+v, b %+v", testutil.Lazy(func() any { return a.svc.Stats() }), testutil.Lazy(func() any { return b.svc.Stats() }))
	took := time.Since(start)
	if got := b.svc.Stats().BumpFramesReceived - framesIn; got < 3 {
		t.Errorf("b received %d frames for %d bumps, want at least 3", got, n)
	}
	// One frame a round would take three rounds: at least two intervals.
	if took >= 2*interval {
		t.Errorf("the bumps took %v to cross, two rounds of %v or more", took, interval)
	}
}

// TestPush_PulledChangeGoesOn: in a chain a - b - c with gossip off, b
// and c hold an old content of a third peer y, and a holds its new
// content (a change that gossip did not bring to b and c). A heartbeat of
// y at a goes out as a bump that b cannot splice: b pulls y's entry from
// a. Once the pull has merged it, b pushes the bump on, and c, which
// holds the old content as well, pulls from b. One heartbeat crosses the
// chain: without the push after the pull, c waited for y's next
// heartbeat (one more heartbeat per hop), and a node that had purged a
// live peer stopped carrying that peer's heartbeats the same way.
func TestPush_PulledChangeGoesOn(t *testing.T) {
	nw := catalog.IDFromString("discovery-test/push-pulled")
	quiet := withParams(func(p *discovery.Params) { p.AnnounceInterval, p.Catalog.PurgeAfter = time.Minute, 5*time.Minute })
	opts := append(pushOnly[:len(pushOnly):len(pushOnly)], quiet)
	a, b, c := newNode(t, nw, opts...), newNode(t, nw, opts...), newNode(t, nw, opts...)
	chain(t, a, b, c)
	// Let the syncs on connect and the repair syncs at SettleDelay (250 ms)
	// run first, so that the pulls are what bring the change.
	time.Sleep(testutil.Scale(time.Second)) // past SettleDelay and SyncMinInterval (200 ms)
	sk, y := newKey(t)
	oldTag, newTag := catalog.IDFromString("old"), catalog.IDFromString("new")
	v1 := catalog.NewVersion(time.Now().Add(-time.Second))
	v2 := v1.Next(time.Now().Add(-500 * time.Millisecond))
	for _, n := range []*testNode{b, c} {
		if _, err := n.svc.Store().Merge(sealEntry(t, sk, nw, v1, oldTag), time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.svc.Store().Merge(sealEntry(t, sk, nw, v2, newTag), time.Now()); err != nil {
		t.Fatal(err)
	}
	v3 := v2.Next(time.Now())
	if out, err := a.svc.Merge(sealEntry(t, sk, nw, v3, newTag)); err != nil || out != catalog.Updated {
		t.Fatalf("Merge: %v %v", out, err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		return versionAt(c.svc, y).Compare(v3) >= 0
	}, "y's heartbeat did not cross two hops (b holds %v, c holds %v)", testutil.Lazy(func() catalog.Version { return versionAt(b.svc, y) }), testutil.Lazy(func() catalog.Version { return versionAt(c.svc, y) }))
	if e, _ := c.svc.Catalog().Get(y); !e.Entry.HasTags(newTag) {
		t.Fatalf("c holds y's version %v without its new tag", e.Entry.Version)
	}
	for _, n := range []*testNode{b, c} {
		if st := n.svc.Stats(); st.BumpsPulled == 0 {
			t.Fatalf("a node of the chain pulled no bump: %+v", st)
		}
	}
}

// TestPush_IdleStreamNotLost: a receiver closes a push stream that stayed
// idle for SyncTimeout plus four BumpIntervals. A sender whose heartbeats
// are further apart than that (a small network at the default 30 s) must
// not write its next frame on the stream the receiver reset: the sender
// closes its idle stream first, and the next heartbeat goes on a new one.
func TestPush_IdleStreamNotLost(t *testing.T) {
	nw := catalog.IDFromString("discovery-test/push-idle")
	quiet := withParams(func(p *discovery.Params) {
		p.AnnounceInterval, p.Catalog.PurgeAfter = time.Minute, 5*time.Minute
		p.SyncTimeout = 400 * time.Millisecond // a receiver closes an idle push stream after 800 ms
	})
	opts := append(pushOnly[:len(pushOnly):len(pushOnly)], quiet)
	a, b := newNode(t, nw, opts...), newNode(t, nw, opts...)
	connect(t, b.h, a.h)
	testutil.Eventually(t, 5*time.Second, func() bool { return knows(b.svc, a.h.ID()) && knows(a.svc, b.h.ID()) }, "a and b did not sync")
	sk, y := newKey(t)
	v := catalog.NewVersion(time.Now().Add(-time.Second))
	for _, n := range []*testNode{a, b} {
		if _, err := n.svc.Store().Merge(sealEntry(t, sk, nw, v), time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	for round := range 3 {
		v = v.Next(time.Now())
		if out, err := a.svc.Merge(sealEntry(t, sk, nw, v)); err != nil || out != catalog.Updated {
			t.Fatalf("Merge: %v %v", out, err)
		}
		testutil.Eventually(t, 2*time.Second, func() bool { return versionAt(b.svc, y).Compare(v) >= 0 },
			"round %d: y's heartbeat %v did not reach b by push (b holds %v; a's push errors %v)", round, v, testutil.Lazy(func() catalog.Version { return versionAt(b.svc, y) }), testutil.Lazy(func() any { return a.svc.Stats().BumpErrorsBy }))
		// Idle past the receiver's limit (800 ms) before the next heartbeat:
		// the point of the test is a stream left idle that long.
		time.Sleep(testutil.Scale(1200 * time.Millisecond))
	}
	if errs := a.svc.Stats().BumpErrorsBy; len(errs) != 0 {
		t.Fatalf("a's pushes failed: %v", errs)
	}
}

// Peers not in the catalog hold at most half of the inbound push streams,
// and a member's stream takes the slot of the oldest stranger's when the
// table is full: 64 made-up peers that keep push streams open (empty
// frames) cannot shut out a member's heartbeats. Before, they held every
// slot and the member's heartbeats were refused until it was purged.
func TestPush_StrangersCannotHoldEverySlot(t *testing.T) {
	nw := catalog.IDFromString("discovery-test/push-slots")
	quiet := withParams(func(p *discovery.Params) { p.DisableGossip, p.DisableSync = true, true })
	v := newNode(t, nw, withoutPubSub(), quiet)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	const strangers = 64
	for range strangers {
		x := newHost(t)
		connect(t, x, v.h)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if st, err := x.NewStream(ctx, v.h.ID(), discovery.BumpProtocol(nw)); err == nil {
					for ctx.Err() == nil {
						if _, err := st.Write([]byte{0}); err != nil { // an empty frame
							break
						}
						select {
						case <-ctx.Done():
						case <-time.After(100 * time.Millisecond): // keeps the stream busy
						}
					}
					_ = st.Reset()
				}
				select {
				case <-ctx.Done():
				case <-time.After(100 * time.Millisecond): // then tries again
				}
			}
		}()
	}
	testutil.Eventually(t, 20*time.Second, func() bool {
		return v.svc.Stats().BumpErrorsBy["in/stranger"] >= strangers/2
	}, "the strangers' streams were not read")

	a := newNode(t, nw, withoutPubSub(), quiet)
	if _, err := v.svc.Merge(a.svc.Catalog().Local()); err != nil {
		t.Fatal(err)
	}
	first := versionAt(v.svc, a.h.ID())
	connect(t, a.h, v.h)
	testutil.Eventually(t, 20*time.Second, func() bool {
		return versionAt(v.svc, a.h.ID()).Compare(first) > 0
	}, "no heartbeat of member a reached v: push errors %v", testutil.Lazy(func() any { return v.svc.Stats().BumpErrorsBy }))
}
