package streams_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/node"
	"github.com/mosaik-go/mosaik/streams"
)

// rpSetup is a producer with a keeper consumer (on the producer's
// bootstrap peer, reading everything, so the producer stays online) and an
// observed consumer on its own node, whose link the tests cut.
type rpSetup struct {
	t            *testing.T
	ctx          context.Context
	pnode, cnode *node.Node
	prod         *streams.Producer[[]byte]
	cons         *streams.Consumer[[]byte]
	kept         chan uint64 // counters the keeper received
	onRecv       func()      // if set, called by checkOnce after each datum
}

func newRPSetup(t *testing.T, name string, nopts []node.Option, popts []streams.ProducerOption, copts ...streams.ConsumerOption) *rpSetup {
	t.Helper()
	nodes := connected(t, 2, nopts...)
	s := &rpSetup{t: t, ctx: testCtx(t, 90*time.Second), pnode: nodes[0], kept: make(chan uint64, 1<<16)}
	s.cnode = startNode(t, node.WithBootstrapPeers(nodes[0].AddrInfo()))
	testutil.Eventually(t, 5*time.Second, func() bool {
		_, ok := s.pnode.Catalog().Get(s.cnode.ID())
		_, ok2 := s.cnode.Catalog().Get(s.pnode.ID())
		return ok && ok2
	}, "observed consumer's node did not join")
	bytesCodec := streams.WithCodec[[]byte](streams.Bytes{})
	s.prod = mustProducer[[]byte](t, s.pnode, name, append([]streams.ProducerOption{bytesCodec}, popts...)...)
	// The retry waits long enough that the datums sent right after a cut
	// are sent while the consumer is away.
	wait := testutil.Scale(time.Second)
	s.cons = mustConsumer[[]byte](t, s.cnode, name, append([]streams.ConsumerOption{bytesCodec,
		streams.WithBackoff(func() backoff.BackOff { return backoff.NewConstantBackOff(wait) })}, copts...)...)
	keeper := mustConsumer[[]byte](t, nodes[1], name, bytesCodec)
	testutil.Eventually(t, 10*time.Second, func() bool {
		return rbAllConnected(s.prod.Consumers(), 2) && rbOnlyConnected(s.cons.Producers(), s.pnode.ID())
	}, "producer did not get its 2 consumers")
	go func() {
		for {
			v, err := keeper.Recv(s.ctx)
			if err != nil {
				return
			}
			c, _ := rbVal(v)
			select {
			case s.kept <- c:
			default:
			}
		}
	}()
	return s
}

// send sends counters from..to-1 (datum i has sequence number i+1 when
// the producer sent nothing else).
func (s *rpSetup) send(from, to uint64) {
	s.t.Helper()
	for i := from; i < to; i++ {
		if err := s.prod.Send(s.ctx, rbU64(i)); err != nil {
			s.t.Fatalf("Send(%d): %v", i, err)
		}
	}
}

func (s *rpSetup) recv() streams.Datum[[]byte] {
	s.t.Helper()
	d, err := s.cons.RecvDatum(s.ctx)
	if err != nil {
		s.t.Fatalf("RecvDatum: %v", err)
	}
	return d
}

// expect receives counters from..to-1 in order, the first with gap want.
func (s *rpSetup) expect(from, to uint64, want *streams.Gap) {
	s.t.Helper()
	for i := from; i < to; i++ {
		d := s.recv()
		v, _ := rbVal(d.Value)
		g := want
		if i != from {
			g = nil
		}
		if v != i || d.Seq != i+1 || (d.Gap == nil) != (g == nil) || (g != nil && *d.Gap != *g) {
			s.t.Fatalf("datum %d: counter %d, seq %d, gap %v; want gap %v", i, v, d.Seq, d.Gap, g)
		}
	}
}

// cut breaks the observed consumer's link and waits until the producer
// dropped it.
func (s *rpSetup) cut() {
	s.t.Helper()
	if err := s.cnode.Host().Network().ClosePeer(s.pnode.ID()); err != nil {
		s.t.Fatal(err)
	}
	testutil.Eventually(s.t, 10*time.Second, func() bool {
		_, ok := rbSubscription(s.prod.Consumers(), s.cnode.ID())
		return !ok
	}, "producer did not notice the broken link")
}

func (s *rpSetup) resubscribed() {
	s.t.Helper()
	testutil.Eventually(s.t, 20*time.Second, func() bool {
		return rbAllConnected(s.prod.Consumers(), 2) && rbOnlyConnected(s.cons.Producers(), s.pnode.ID())
	}, "consumer did not resubscribe: %+v", testutil.Lazy(func() any { return s.cons.Producers() }))
}

func (s *rpSetup) replayStats() streams.ReplayStats {
	for _, h := range s.pnode.Streams().Handles() {
		if h.Role == streams.RoleProducer && h.Stream == s.prod.StreamID() && h.Replay != nil {
			return *h.Replay
		}
	}
	s.t.Fatal("the producer reports no replay window")
	return streams.ReplayStats{}
}

// TestReplay_ReconnectWithinWindow: a consumer whose link breaks while the
// producer sends 50 datums resubscribes and receives every datum exactly
// once and in order, with no gap: the 50 from the window, then the live
// ones.
func TestReplay_ReconnectWithinWindow(t *testing.T) {
	s := newRPSetup(t, "replay-within", nil, []streams.ProducerOption{streams.WithReplay(streams.Replay{Datums: 1000})})
	s.send(0, 100)
	s.expect(0, 100, nil)
	s.cut()
	s.send(100, 150)
	s.resubscribed()
	s.send(150, 160)
	s.expect(100, 160, nil)
	if st := s.cons.Stats(); st.Gaps != 0 || st.Datums != 160 {
		t.Errorf("consumer stats %+v, want 160 datums and no gap", st)
	}
	if r := s.replayStats(); r.Replayed != 50 || r.Expired != 0 || r.Datums != 160 {
		t.Errorf("replay stats %+v, want 50 replayed, none expired, 160 held", r)
	}
}

// TestReplay_ReconnectBeyondWindow: with a window of 20 datums and 50 sent
// while the consumer was away, it receives the last 20 and a GapExpired of
// exactly the 30 that left the window.
func TestReplay_ReconnectBeyondWindow(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	s := newRPSetup(t, "replay-beyond", []node.Option{node.WithMeterProvider(mp)},
		[]streams.ProducerOption{streams.WithReplay(streams.Replay{Datums: 20})})
	s.send(0, 100)
	s.expect(0, 100, nil)
	s.cut()
	s.send(100, 150)
	s.resubscribed()
	s.send(150, 160)
	s.expect(130, 160, &streams.Gap{Cause: streams.GapExpired, Missed: 30, After: 100})
	if st := s.cons.Stats(); st.Gaps != 30 || st.Datums != 130 {
		t.Errorf("consumer stats %+v, want 130 datums and 30 gaps", st)
	}
	if r := s.replayStats(); r.Replayed != 20 || r.Expired != 30 || r.Datums != 20 {
		t.Errorf("replay stats %+v, want 20 replayed, 30 expired, 20 held", r)
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(s.ctx, &rm); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]int64{
		"mosaik.streams.producer.replay.items":        20,
		"mosaik.streams.producer.replay.expired":      30,
		"mosaik.streams.producer.replay.window.items": 20,
		"mosaik.streams.producer.replay.window.bytes": 20 * (8 + 40),
	} {
		if got, ok := sumOf(&rm, name); !ok || got != want {
			t.Errorf("%s = %d (present %v), want %d", name, got, ok, want)
		}
	}
}

// TestReplay_ResumeAfterConsumerRestart: a consumer saves its Positions,
// closes; the producer goes on; a new consumer created with
// WithResumeFrom(saved...) receives what followed, exactly once, in order,
// with no gap, and its Positions follow.
func TestReplay_ResumeAfterConsumerRestart(t *testing.T) {
	const name = "replay-restart-consumer"
	s := newRPSetup(t, name, nil, []streams.ProducerOption{streams.WithReplay(streams.Replay{Datums: 1000, Bytes: 1 << 20, Age: time.Hour})})
	s.send(0, 100)
	s.expect(0, 90, nil) // the last 10 stay in the delivery buffer: not taken, not saved
	saved := s.cons.Positions()
	if len(saved) != 1 || saved[0].Producer != s.pnode.ID() || saved[0].Seq != 90 || saved[0].Epoch == 0 {
		t.Fatalf("Positions() = %+v, want seq 90 of %s", saved, s.pnode.ID())
	}
	_ = s.cons.Close()
	testutil.Eventually(t, 10*time.Second, func() bool {
		_, ok := rbSubscription(s.prod.Consumers(), s.cnode.ID())
		return !ok
	}, "producer did not notice the closed consumer")
	s.send(100, 150)
	bytesCodec := streams.WithCodec[[]byte](streams.Bytes{})
	s.cons = mustConsumer[[]byte](t, s.cnode, name, bytesCodec, streams.WithResumeFrom(saved...))
	if got := s.cons.Positions(); len(got) != 1 || got[0] != saved[0] {
		t.Errorf("new consumer's Positions() = %+v before any datum, want the saved %+v", got, saved)
	}
	s.resubscribed()
	s.send(150, 160)
	s.expect(90, 160, nil)
	for _, h := range s.cnode.Streams().Handles() {
		if h.Role == streams.RoleConsumer && h.Totals.Gaps != 0 {
			t.Errorf("restarted consumer counted %d gaps", h.Totals.Gaps)
		}
	}
	if got := s.cons.Positions(); len(got) != 1 || got[0].Seq != 160 || got[0].Epoch != saved[0].Epoch {
		t.Errorf("Positions() = %+v, want seq 160 of epoch %d", got, saved[0].Epoch)
	}
}

// TestReplay_ProducerRestartEmptiesWindow: a new producer of the stream
// (a new epoch) starts with an empty window: a consumer resuming from the
// old run gets nothing of it resent, and follows the new run as without
// replay.
func TestReplay_ProducerRestartEmptiesWindow(t *testing.T) {
	const name = "replay-restart-producer"
	win := streams.WithReplay(streams.Replay{Datums: 1000})
	s := newRPSetup(t, name, nil, []streams.ProducerOption{win})
	s.send(0, 20)
	s.expect(0, 20, nil)
	old := s.cons.Positions()
	_ = s.prod.Close()
	s.prod = mustProducer[[]byte](t, s.pnode, name, streams.WithCodec[[]byte](streams.Bytes{}), win)
	s.resubscribed()
	if r := s.replayStats(); r.Datums != 0 {
		t.Fatalf("the new run's window holds %d datums", r.Datums)
	}
	s.send(0, 10)
	for i := range uint64(10) {
		d := s.recv()
		v, _ := rbVal(d.Value)
		if v != i || d.Seq != i+1 || d.Epoch == old[0].Epoch || d.Epoch == 0 {
			t.Fatalf("new run, datum %d: counter %d, seq %d, epoch %d (old %d)", i, v, d.Seq, d.Epoch, old[0].Epoch)
		}
		// The old run ended with a Close: a new run starting at 1 lost nothing.
		if d.Gap != nil && (i > 0 || d.Gap.Cause != streams.GapRestart) {
			t.Fatalf("new run, datum %d: gap %v", i, d.Gap)
		}
	}
	if r := s.replayStats(); r.Replayed != 0 || r.Datums != 10 {
		t.Errorf("new run's replay stats %+v, want nothing replayed and 10 held", r)
	}
}

// TestReplay_SlowReplayDoesNotStallLive: a consumer resuming a long range
// from the window whose application does not read stalls only itself: its
// writer blocks on the transport while the live datums keep flowing to the
// other consumer, and it is not cut (it is not in the fan-out, whose
// queues are small and whose lag grace would cut it). When it reads
// again, it gets every datum exactly once and in order while live datums
// keep coming, across the seam between the window and the live queue.
func TestReplay_SlowReplayDoesNotStallLive(t *testing.T) {
	const (
		size    = 16 << 10
		away    = 3000 // 48 MiB: more than yamux's window and the sockets' buffers
		blocked = 200  // live datums sent while the replay is blocked
		drain   = 300  // live datums sent while it catches up
	)
	s := newRPSetup(t, "replay-slow", nil, []streams.ProducerOption{streams.WithReplay(streams.Replay{Datums: 100_000}),
		streams.WithQueueSize(64), streams.WithLagGrace(testutil.Scale(2 * time.Second))},
		streams.WithBuffer(1))
	sendPadded := func(from, to uint64) {
		t.Helper()
		for i := from; i < to; i++ {
			if err := s.prod.Send(s.ctx, rbPadded(i, size)); err != nil {
				t.Errorf("Send(%d): %v", i, err)
				return
			}
		}
	}
	go sendPadded(0, 100) // the consumer buffers one datum: read as they come
	s.expect(0, 100, nil)
	s.cut()
	sendPadded(100, 100+away)
	s.resubscribed()
	testutil.Eventually(t, 10*time.Second, func() bool { return s.replayStats().Replayed > 0 }, "replay did not start")
	start := time.Now()
	sendPadded(100+away, 100+away+blocked)
	took := time.Since(start)
	r := s.replayStats()
	t.Logf("%d live datums sent in %v while the replay was at %d of %d", blocked, took, r.Replayed, away)
	if r.Replayed >= away {
		t.Fatalf("the replay was not blocked (%d of %d resent): the test proves nothing", r.Replayed, away)
	}
	if ci, ok := rbSubscription(s.prod.Consumers(), s.cnode.ID()); !ok || ci.State != streams.Connected {
		t.Fatalf("the replaying consumer was cut: %+v", ci)
	}
	for _, h := range s.pnode.Streams().Handles() {
		if h.Role == streams.RoleProducer && h.Ends[streams.CodeTooSlow] != 0 {
			t.Fatalf("the producer cut %d consumers with TooSlow", h.Ends[streams.CodeTooSlow])
		}
	}
	// The keeper has the live datums (and everything before them).
	for want := uint64(0); want < 100+away+blocked; want++ {
		select {
		case got := <-s.kept:
			if got != want {
				t.Fatalf("keeper got counter %d, want %d", got, want)
			}
		case <-s.ctx.Done():
			t.Fatalf("keeper stuck at %d", want)
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		sendPadded(100+away+blocked, 100+away+blocked+drain)
	}()
	s.expect(100, 100+away+blocked+drain, nil)
	<-done
	if st := s.cons.Stats(); st.Gaps != 0 {
		t.Errorf("consumer stats %+v, want no gap", st)
	}
}

// TestReplay_ProducerCloseDuringReplay: a producer closed while a consumer
// is still catching up from the window delivers what it can within
// Params.CloseTimeout and returns; the consumer gets a contiguous run of
// the datums, in order, without a gap or a duplicate (and goleak, in
// TestMain, checks that the replaying writer is gone).
func TestReplay_ProducerCloseDuringReplay(t *testing.T) {
	const (
		size = 16 << 10
		away = 1500
	)
	s := newRPSetup(t, "replay-close", nil, []streams.ProducerOption{streams.WithReplay(streams.Replay{Datums: 100_000})},
		streams.WithBuffer(1))
	go func() {
		for i := range uint64(100) {
			if err := s.prod.Send(s.ctx, rbPadded(i, size)); err != nil && !errors.Is(err, streams.ErrFull) {
				t.Errorf("Send(%d): %v", i, err)
				return
			}
		}
	}()
	s.expect(0, 100, nil)
	s.cut()
	for i := uint64(100); i < 100+away; i++ {
		// ErrFull: the keeper lagged too (a loaded machine); the datum is
		// numbered and in the window all the same.
		if err := s.prod.Send(s.ctx, rbPadded(i, size)); err != nil && !errors.Is(err, streams.ErrFull) {
			t.Fatalf("Send(%d): %v", i, err)
		}
	}
	s.resubscribed()
	testutil.Eventually(t, 10*time.Second, func() bool { return s.replayStats().Replayed > 0 }, "replay did not start")
	closed := make(chan time.Duration, 1)
	go func() {
		start := time.Now()
		_ = s.prod.Close()
		closed <- time.Since(start)
	}()
	want := uint64(100)
	for want < 100+away {
		rctx, cancel := context.WithTimeout(s.ctx, testutil.Scale(10*time.Second))
		d, err := s.cons.RecvDatum(rctx)
		cancel()
		if err != nil {
			break // the producer is gone: what arrived must be a contiguous run
		}
		v, _ := rbVal(d.Value)
		if v != want || d.Gap != nil {
			t.Fatalf("datum %d: counter %d, gap %v", want, v, d.Gap)
		}
		want++
	}
	select {
	case took := <-closed:
		t.Logf("Close took %v; the consumer got %d of the %d datums to resend", took, want-100, away)
	case <-time.After(testutil.Scale(30 * time.Second)):
		t.Fatal("Close did not return")
	}
}

// TestReplay_ResumeAfterTooSlow: a consumer cut with TooSlow (its
// application stopped reading) resubscribes once it reads again and gets
// every datum exactly once, in order, with no gap: what it missed comes
// from the window.
func TestReplay_ResumeAfterTooSlow(t *testing.T) {
	const (
		size = 16 << 10
		away = 3000 // 48 MiB: more than the transport holds, so the queue fills
	)
	s := newRPSetup(t, "replay-tooslow", nil, []streams.ProducerOption{streams.WithReplay(streams.Replay{Datums: 100_000}),
		streams.WithQueueSize(16), streams.WithLagGrace(testutil.Scale(200 * time.Millisecond))},
		streams.WithBuffer(1))
	go func() {
		for i := range uint64(100) {
			if err := s.prod.Send(s.ctx, rbPadded(i, size)); err != nil && !errors.Is(err, streams.ErrFull) {
				t.Errorf("Send(%d): %v", i, err)
				return
			}
		}
	}()
	s.expect(0, 100, nil)
	cut := func() uint64 {
		for _, h := range s.pnode.Streams().Handles() {
			if h.Role == streams.RoleProducer {
				return h.Ends[streams.CodeTooSlow]
			}
		}
		return 0
	}
	for i := uint64(100); i < 100+away; i++ {
		// ErrFull: the keeper lagged too (a loaded machine); the datum is
		// numbered and in the window all the same.
		if err := s.prod.Send(s.ctx, rbPadded(i, size)); err != nil && !errors.Is(err, streams.ErrFull) {
			t.Fatalf("Send(%d): %v", i, err)
		}
	}
	if cut() == 0 {
		t.Fatal("the consumer that stopped reading was not cut: the test proves nothing")
	}
	s.expect(100, 100+away, nil)
	if st := s.cons.Stats(); st.Gaps != 0 {
		t.Errorf("consumer stats %+v, want no gap", st)
	}
	if ci, ok := rbSubscription(s.cons.Producers(), s.pnode.ID()); !ok || ci.Stats.Reconnects == 0 {
		t.Errorf("the observed consumer did not resubscribe (%+v): the cut was another's", ci)
	}
	t.Logf("TooSlow cuts: %d; replay %+v", cut(), s.replayStats())
}
