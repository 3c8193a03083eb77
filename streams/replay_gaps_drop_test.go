package streams_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/node"
	"github.com/mosaik-go/mosaik/streams"
)

// A consumer resuming from a position of an older run of producer B
// (WithResumeFrom, an epoch B no longer has) sees a GapRestart on the
// first datum of B's new run it gets, also when the first session of the
// new run was dropped before handing anything over. The restart was lost
// then: the session remembered {newEpoch, 0}, and the next one treated
// the new run as known (found by the replay review).
func TestGaps_RestartOwedAcrossDroppedSession(t *testing.T) {
	const oldEpoch = 0x5eed5eed5eed5eed // B's "previous run"
	h := dropBeforeHandOver(t, "gaps-restart", func(b peer.ID) []streams.ConsumerOption {
		return []streams.ConsumerOption{streams.WithResumeFrom(streams.Position{Producer: b, Epoch: oldEpoch, Seq: 50})}
	})
	c, b, bID, ctx, gapsBefore := h.c, h.b, h.bID, h.ctx, h.gaps
	if err := b.Send(ctx, rbU64(100)); err != nil {
		t.Fatal(err)
	}
	for {
		d, err := c.RecvDatum(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if d.Producer != bID {
			continue
		}
		v, _ := rbVal(d.Value)
		t.Logf("first datum of B: counter %d seq %d epoch %#x gap %v (stats gaps before drop %d)", v, d.Seq, d.Epoch, d.Gap, gapsBefore)
		if d.Epoch == oldEpoch {
			t.Fatal("test setup: epoch collided")
		}
		if d.Gap == nil || d.Gap.Cause != streams.GapRestart {
			t.Fatalf("first datum of B's new run (epoch %#x, resumed from epoch %#x seq 50) carries gap %v, want a GapRestart after 50", d.Epoch, uint64(oldEpoch), d.Gap)
		}
		return
	}
}

// Stats.Gaps counts the gaps of the datums handed to the application. It
// counted a gap when the datum carrying it was read, even when that datum
// was then dropped with the receiver and the next subscription resent the
// "missed" datums from the replay window: the application received every
// datum, with no Gap, yet Stats.Gaps said datums were missed (found by the
// replay review).
func TestGaps_StatsCountOnlyHandedOver(t *testing.T) {
	nodes := connected(t, 4)
	codec := streams.WithCodec[[]byte](streams.Bytes{})
	replay := streams.WithReplay(streams.Replay{Datums: 1000})
	a := mustProducer[[]byte](t, nodes[0], "gaps-stats", codec, replay)
	b := mustProducer[[]byte](t, nodes[1], "gaps-stats", codec, replay)
	bID := nodes[1].ID()
	// D keeps B online while C is not subscribed to it.
	_ = mustConsumer[[]byte](t, nodes[3], "gaps-stats", codec, streams.WithRequire(func(pi catalog.PeerInfo) bool { return pi.Entry.Entry.PeerID == bID }))
	var eligible atomic.Bool
	c := mustConsumer[[]byte](t, nodes[2], "gaps-stats", codec, streams.WithBuffer(1),
		streams.WithResumeFrom(streams.Position{Producer: bID, Epoch: 0x5eed5eed5eed5eed, Seq: 50}), // B's previous run
		streams.WithRequire(func(pi catalog.PeerInfo) bool {
			id := pi.Entry.Entry.PeerID
			return id != bID || eligible.Load()
		}))
	ctx := testCtx(t, 60*time.Second)
	sub := func(p *node.Node) (streams.SubscriptionInfo, bool) { return rbSubscription(c.Producers(), p.ID()) }
	testutil.Eventually(t, 10*time.Second, func() bool { s, ok := sub(nodes[0]); return ok && s.State == streams.Connected }, "not subscribed to A")
	testutil.Eventually(t, 10*time.Second, func() bool { return len(b.Consumers()) == 1 }, "D not subscribed to B")
	for i := uint64(0); i < 10; i++ { // seq 1..10 of B, sent while C is not subscribed to B
		if err := b.Send(ctx, rbU64(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Send(ctx, rbU64(1000)); err != nil { // fills C's delivery buffer
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { s, ok := sub(nodes[0]); return ok && s.Stats.Datums >= 1 }, "A's datum not read")
	eligible.Store(true)
	testutil.Eventually(t, 20*time.Second, func() bool { s, ok := sub(nodes[1]); return ok && s.State == streams.Connected }, "C not subscribed to B")
	for i := uint64(10); i < 100; i++ {
		if err := b.Send(ctx, rbU64(i)); err != nil {
			t.Fatal(err)
		}
	}
	testutil.Eventually(t, 10*time.Second, func() bool { s, ok := sub(nodes[1]); return ok && s.Stats.Datums >= 1 }, "B's datums not read")
	gapsAtDrop := c.Stats().Gaps
	eligible.Store(false)
	testutil.Eventually(t, 20*time.Second, func() bool { _, ok := sub(nodes[1]); return !ok }, "B not dropped")
	eligible.Store(true)
	testutil.Eventually(t, 20*time.Second, func() bool { s, ok := sub(nodes[1]); return ok && s.State == streams.Connected }, "B not resubscribed")
	if err := b.Send(ctx, rbU64(100)); err != nil {
		t.Fatal(err)
	}
	var reported uint64
	next := uint64(0)
	for next <= 100 {
		d, err := c.RecvDatum(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if d.Gap != nil {
			t.Logf("gap before %s seq %d: %v", d.Producer.ShortString(), d.Seq, d.Gap)
			reported += d.Gap.Missed
		}
		if d.Producer != bID {
			continue
		}
		v, _ := rbVal(d.Value)
		if v < next {
			t.Fatalf("B's counter %d where %d was due", v, next)
		}
		next = v + 1
	}
	st := c.Stats()
	t.Logf("B datums 0..100 delivered; gaps reported to the application: %d; Stats.Gaps: %d (at drop: %d)", reported, st.Gaps, gapsAtDrop)
	if st.Gaps != reported {
		t.Fatalf("Stats.Gaps = %d, but the gaps on the datums delivered add up to %d", st.Gaps, reported)
	}
}

// The same resume from an older run, without a dropped session, reports
// GapRestart on B's first datum.
func TestGaps_RestartReportedOnResume(t *testing.T) {
	nodes := connected(t, 2)
	codec := streams.WithCodec[[]byte](streams.Bytes{})
	b := mustProducer[[]byte](t, nodes[0], "gaps-restart-ctl", codec, streams.WithReplay(streams.Replay{Datums: 1000}))
	bID := nodes[0].ID()
	c := mustConsumer[[]byte](t, nodes[1], "gaps-restart-ctl", codec,
		streams.WithResumeFrom(streams.Position{Producer: bID, Epoch: 0x5eed5eed5eed5eed, Seq: 50}))
	ctx := testCtx(t, 30*time.Second)
	if err := b.Send(ctx, rbU64(0)); err != nil {
		t.Fatal(err)
	}
	d, err := c.RecvDatum(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("seq %d gap %v", d.Seq, d.Gap)
	if d.Gap == nil || d.Gap.Cause != streams.GapRestart || d.Gap.After != 50 {
		t.Fatalf("gap %v, want restart after 50", d.Gap)
	}
}
