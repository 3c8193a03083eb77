package streams_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/node"
	"github.com/mosaik-go/mosaik/streams"
)

// ticketFunc is a streams.TicketCheck from a function.
type ticketFunc func(e *catalog.Entry, now time.Time) (time.Time, error)

func (f ticketFunc) Check(e *catalog.Entry, now time.Time) (time.Time, error) { return f(e, now) }

// checkOnce receives datums until counter last and checks that each
// counter came once and in order, and that every counter skipped is
// counted in the gap reported on the datum after it.
func checkOnce(t *testing.T, s *rpSetup, last uint64) {
	t.Helper()
	next, missed, reported := uint64(0), uint64(0), uint64(0)
	for next <= last {
		d := s.recv()
		if s.onRecv != nil {
			s.onRecv()
		}
		v, err := rbVal(d.Value)
		if err != nil {
			t.Fatal(err)
		}
		if v < next {
			t.Fatalf("counter %d where %d was due: delivered twice or out of order", v, next)
		}
		if d.Gap != nil {
			reported += d.Gap.Missed
		}
		missed += v - next
		if v > next && d.Gap == nil {
			t.Fatalf("counter %d where %d was due: %d datums missing, no gap reported", v, next, v-next)
		}
		next = v + 1
	}
	if missed != reported {
		t.Errorf("%d datums missed, gaps report %d", missed, reported)
	}
}

// A ticket whose expiry keeps coming (a short-lived, renewed ticket) makes
// the consumer drop and resubscribe to the producer over and over. Each new
// receiver started while the old one was still reading, and resumed from
// the position the old one had when its session began: the replay window
// resent what the old one had delivered (thousands of duplicates in a
// probe). A new receiver now waits for the old one to end.
func TestConsumer_ResubscribeAfterTicketExpiryResumesWhereTheOldReceiverStopped(t *testing.T) {
	tick := testutil.Scale(150 * time.Millisecond)
	expiring := streams.WithTickets(ticketFunc(func(_ *catalog.Entry, now time.Time) (time.Time, error) {
		return now.Add(tick), nil
	}))
	s := newRPSetup(t, "resub-expiry", nil, []streams.ProducerOption{streams.WithReplay(streams.Replay{Datums: 1 << 20})}, expiring)
	const n = 8000
	sent := make(chan error, 1)
	go func() {
		for i := uint64(0); i < n; i++ {
			if err := s.prod.Send(s.ctx, rbU64(i)); err != nil {
				sent <- err
				return
			}
			if i%20 == 0 {
				time.Sleep(2 * time.Millisecond) // paced: the expiries fall while datums flow
			}
		}
		sent <- nil
	}()
	// Subscriptions seen (by when they connected), sampled as datums come.
	subs := map[time.Time]bool{}
	s.onRecv = func() {
		if sub, ok := rbSubscription(s.cons.Producers(), s.pnode.ID()); ok && !sub.Stats.ConnectedAt.IsZero() {
			subs[sub.Stats.ConnectedAt] = true
		}
	}
	checkOnce(t, s, n-1)
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	if len(subs) < 2 {
		t.Fatalf("%d subscription(s) seen: the ticket expiry did not make the consumer subscribe again", len(subs))
	}
	t.Logf("%d subscriptions", len(subs))
}

// A receiver dropped while its delivery buffer is full (the producer no
// longer eligible) loses the datums it had read but not handed over. The
// position it left counted them, so the next subscription resumed after
// them: 63 datums were missing with no gap. It now resumes after the last
// datum handed over, and the replay window resends the rest.
func TestConsumer_DatumsDroppedWithTheReceiverAreResentOrCounted(t *testing.T) {
	var eligible atomic.Bool
	eligible.Store(true)
	s := newRPSetup(t, "resub-dropped", nil, []streams.ProducerOption{streams.WithReplay(streams.Replay{Datums: 1000})},
		streams.WithBuffer(1), streams.WithRequire(func(catalog.PeerInfo) bool { return eligible.Load() }))
	s.send(0, 200)
	// The receiver reads datums it cannot hand over (the buffer holds one
	// datum, which the test does not take yet): counted while their
	// hand-over waits, so two mean at least one read and held.
	testutil.Eventually(t, 10*time.Second, func() bool {
		sub, ok := rbSubscription(s.cons.Producers(), s.pnode.ID())
		return ok && sub.Stats.Datums >= 2
	}, "the consumer read nothing")
	eligible.Store(false)
	testutil.Eventually(t, 20*time.Second, func() bool {
		_, ok := rbSubscription(s.cons.Producers(), s.pnode.ID())
		return !ok
	}, "the consumer did not drop the producer it no longer finds eligible")
	eligible.Store(true)
	testutil.Eventually(t, 20*time.Second, func() bool {
		return rbOnlyConnected(s.cons.Producers(), s.pnode.ID())
	}, "the consumer did not subscribe again")
	checkOnce(t, s, 199)
}

// The same with nothing handed over: the delivery buffer is full of
// another producer's datum when the receiver of a first subscription is
// dropped. Its position was not remembered, so the next subscription
// started as a first one: what had been read was lost, with no gap and no
// replay asked for. It is remembered as the run's start now.
func TestConsumer_FirstSubscriptionDroppedBeforeHandingOverResumesFromTheStart(t *testing.T) {
	h := dropBeforeHandOver(t, "resub-first", nil)
	c, b, bID, ctx := h.c, h.b, h.bID, h.ctx
	if err := b.Send(ctx, rbU64(100)); err != nil {
		t.Fatal(err)
	}

	next := uint64(0)
	for next <= 100 {
		d, err := c.RecvDatum(ctx)
		if err != nil {
			t.Fatalf("after B's counter %d: %v", next, err)
		}
		if d.Producer != bID {
			continue
		}
		v, _ := rbVal(d.Value)
		if v < next {
			t.Fatalf("B's counter %d where %d was due: twice or out of order", v, next)
		}
		if missed := v - next; missed > 0 && d.Gap == nil {
			t.Fatalf("B's counter %d where %d was due: %d datums missing, no gap reported", v, next, missed)
		}
		next = v + 1
	}
}

// handOverDrop is dropBeforeHandOver's set-up.
type handOverDrop struct {
	c    *streams.Consumer[[]byte]
	b    *streams.Producer[[]byte]
	bID  peer.ID
	ctx  context.Context
	gaps uint64 // the consumer's Stats.Gaps right before B was dropped
}

// dropBeforeHandOver runs producers A and B (replay windows of 1000
// datums) and a consumer of stream name with a one-datum delivery buffer
// (and the options extra returns for B's peer ID, if extra is not nil):
// A's datum fills the buffer, B's 100 datums (counters 0 to
// 99) are read but not handed over, then the consumer drops B and
// subscribes to it again.
func dropBeforeHandOver(t *testing.T, name string, extra func(b peer.ID) []streams.ConsumerOption) *handOverDrop {
	t.Helper()
	nodes := connected(t, 3)
	codec := streams.WithCodec[[]byte](streams.Bytes{})
	replay := streams.WithReplay(streams.Replay{Datums: 1000})
	a := mustProducer[[]byte](t, nodes[0], name, codec, replay)
	b := mustProducer[[]byte](t, nodes[1], name, codec, replay)
	bID := nodes[1].ID()
	var eligible atomic.Bool
	eligible.Store(true)
	opts := []streams.ConsumerOption{codec, streams.WithBuffer(1),
		streams.WithRequire(func(pi catalog.PeerInfo) bool { return pi.Entry.Entry.PeerID != bID || eligible.Load() })}
	if extra != nil {
		opts = append(opts, extra(bID)...)
	}
	c := mustConsumer[[]byte](t, nodes[2], name, opts...)
	ctx := testCtx(t, 60*time.Second)
	sub := func(p *node.Node) (streams.SubscriptionInfo, bool) { return rbSubscription(c.Producers(), p.ID()) }
	testutil.Eventually(t, 10*time.Second, func() bool {
		sa, oka := sub(nodes[0])
		sb, okb := sub(nodes[1])
		return oka && okb && sa.State == streams.Connected && sb.State == streams.Connected
	}, "the consumer did not subscribe to both producers")
	// A's datum fills the delivery buffer; B's are read but not handed over.
	if err := a.Send(ctx, rbU64(1000)); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { s, ok := sub(nodes[0]); return ok && s.Stats.Datums >= 1 }, "A's datum not read")
	for i := uint64(0); i < 100; i++ {
		if err := b.Send(ctx, rbU64(i)); err != nil {
			t.Fatal(err)
		}
	}
	// B's receiver holds what it read (at least one datum) in a hand-over
	// that waits for room.
	testutil.Eventually(t, 10*time.Second, func() bool { s, ok := sub(nodes[1]); return ok && s.Stats.Datums >= 1 }, "B's datums not read")
	gaps := c.Stats().Gaps
	eligible.Store(false)
	testutil.Eventually(t, 20*time.Second, func() bool { _, ok := sub(nodes[1]); return !ok }, "the consumer did not drop B")
	eligible.Store(true)
	testutil.Eventually(t, 20*time.Second, func() bool { s, ok := sub(nodes[1]); return ok && s.State == streams.Connected }, "the consumer did not subscribe to B again")
	return &handOverDrop{c: c, b: b, bID: bID, ctx: ctx, gaps: gaps}
}
