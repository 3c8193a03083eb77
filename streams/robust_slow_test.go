package streams_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/libp2p/go-libp2p/core/network"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/node"
	"github.com/mosaik-go/mosaik/streams"
)

// Parameters of the slow-consumer tests. Datums are 1 KiB so that a
// consumer that stops reading exhausts the transport's buffering (yamux's
// 256 KiB initial stream window, the 64 KiB frame reader buffer, the
// writer's 32 KiB buffer) after a few hundred datums; with 8-byte datums
// 20 000 of them would fit in those buffers and the producer would never
// notice the slow consumer.
const (
	rbSlowTotal  = 20_000
	rbSlowSize   = 1024
	rbSlowQueue  = 64
	rbSlowWindow = 48 // < rbSlowQueue: the fast consumers' queues can never fill
)

// rbSlowSetup starts a producer and three consumers on four nodes: the
// first consumer (the slow one) has a one-datum buffer and is never read
// while the producer sends; the two others are read by goroutines that
// check the order and count into the returned progress.
type rbSlowSetup struct {
	nodes []*node.Node
	prod  *streams.Producer[[]byte]
	slow  *streams.Consumer[[]byte]
	fast  []*streams.Consumer[[]byte]
	prog  *rbProgress
	wg    sync.WaitGroup
	errs  []error
}

func newRBSlowSetup(t *testing.T, name string, prodOpts ...streams.ProducerOption) *rbSlowSetup {
	t.Helper()
	return newRBSlowSetupOn(t, connected(t, 4), name, prodOpts...)
}

// newRBSlowSetupOn is newRBSlowSetup on four given connected nodes.
func newRBSlowSetupOn(t *testing.T, nodes []*node.Node, name string, prodOpts ...streams.ProducerOption) *rbSlowSetup {
	t.Helper()
	bytesCodec := streams.WithCodec[[]byte](streams.Bytes{})
	s := &rbSlowSetup{nodes: nodes}
	s.prod = mustProducer[[]byte](t, s.nodes[0], name, append([]streams.ProducerOption{bytesCodec, streams.WithQueueSize(rbSlowQueue)}, prodOpts...)...)
	// A long constant backoff: after TooSlow the slow consumer stays in
	// Connecting with the error, where the test can observe it.
	s.slow = mustConsumer[[]byte](t, s.nodes[1], name, bytesCodec, streams.WithBuffer(1),
		streams.WithBackoff(func() backoff.BackOff { return backoff.NewConstantBackOff(time.Hour) }))
	for _, n := range s.nodes[2:] {
		s.fast = append(s.fast, mustConsumer[[]byte](t, n, name, bytesCodec))
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return rbAllConnected(s.prod.Consumers(), 3) },
		"producer did not get its 3 consumers")
	s.prog = newRBProgress(len(s.fast))
	s.errs = make([]error, len(s.fast))
	return s
}

// readFast reads want datums from each fast consumer, in order, from 0.
func (s *rbSlowSetup) readFast(ctx context.Context, want uint64) {
	for i, c := range s.fast {
		s.wg.Go(func() {
			for n := range want {
				b, err := c.Recv(ctx)
				if err != nil {
					s.errs[i] = fmt.Errorf("after %d datums: %w", n, err)
					return
				}
				if v, err := rbVal(b); err != nil || v != n || len(b) != rbSlowSize {
					s.errs[i] = fmt.Errorf("datum %d: counter %d (%v), %d bytes", n, v, err, len(b))
					return
				}
				s.prog.add(i)
			}
		})
	}
}

// sendAll sends rbSlowTotal datums, keeping within rbSlowWindow of the fast
// consumers, and returns the longest single Send.
func (s *rbSlowSetup) sendAll(t *testing.T, ctx context.Context) (longest, inSend time.Duration) {
	t.Helper()
	for i := range uint64(rbSlowTotal) {
		if err := s.prog.waitWithin(ctx, i, rbSlowWindow); err != nil {
			t.Fatalf("before datum %d: %v", i, err)
		}
		start := time.Now()
		if err := s.prod.Send(ctx, rbPadded(i, rbSlowSize)); err != nil {
			t.Fatalf("Send(%d): %v", i, err)
		}
		d := time.Since(start)
		longest = max(longest, d)
		inSend += d
	}
	return longest, inSend
}

func (s *rbSlowSetup) checkFast(t *testing.T, want uint64) {
	t.Helper()
	s.wg.Wait()
	for i, err := range s.errs {
		if err != nil {
			t.Fatalf("fast consumer %d: %v", i, err)
		}
	}
	for i, c := range s.fast {
		if !rbOnlyConnected(c.Producers(), s.nodes[0].ID()) {
			t.Fatalf("fast consumer %d: producers %+v, want one connected", i, c.Producers())
		}
		if st := c.Producers()[0].Stats; st.Gaps != 0 || st.Reconnects != 0 || st.Datums != want {
			t.Errorf("fast consumer %d: stats %+v, want %d datums, no gap, no reconnect", i, st, want)
		}
	}
	for _, n := range s.nodes[2:] {
		ci, ok := rbSubscription(s.prod.Consumers(), n.ID())
		if !ok || ci.Stats.Dropped != 0 {
			t.Errorf("producer side, fast consumer %s: %+v (present %v), want nothing dropped", n.ID(), ci.Stats, ok)
		}
	}
}

// TestRobust_SlowConsumerIsCutTooSlow: with the default lagging policy a
// consumer that stops reading is disconnected with TooSlow once its queue
// fills, Send never waits on it, and the two consumers that keep up get
// every datum in order.
func TestRobust_SlowConsumerIsCutTooSlow(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	s := newRBSlowSetupOn(t, connected(t, 4, node.WithMeterProvider(mp)), "robust-slow")
	slowID := s.nodes[1].ID()
	ctx := testCtx(t, 120*time.Second)
	s.readFast(ctx, rbSlowTotal)
	start := time.Now()
	longest, inSend := s.sendAll(t, ctx)
	t.Logf("%d sends of %d B: loop %v, %v inside Send, longest Send %v", rbSlowTotal, rbSlowSize, time.Since(start), inSend, longest)
	// Send cut the slow consumer itself (the cut is synchronous in Send),
	// so it is gone already: no waiting.
	infos := s.prod.Consumers()
	if _, ok := rbSubscription(infos, slowID); ok || len(infos) != 2 {
		t.Fatalf("after the sends the producer has %d consumers (slow one present: %v), want the 2 fast ones", len(infos), ok)
	}
	// Send never blocked on the slow consumer: it never read anything, so a
	// blocking Send would have hung until ctx ended. The bound on a single
	// Send is generous; it only separates "returns" from "waits".
	if limit := testutil.Scale(time.Second); longest > limit {
		t.Errorf("longest Send took %v, want < %v", longest, limit)
	}
	s.checkFast(t, rbSlowTotal)

	// The slow consumer has been blocked handing its second datum to its
	// one-slot buffer: read what it holds, then it reads on, hits the
	// reset and records TooSlow, then waits out its (one hour) backoff.
	var got []uint64
	drain := func() {
		for {
			b, err := s.slow.TryRecv()
			if err != nil {
				return
			}
			v, _ := rbVal(b)
			got = append(got, v)
		}
	}
	var last streams.SubscriptionInfo
	testutil.Eventually(t, 10*time.Second, func() bool {
		drain()
		infos := s.slow.Producers()
		if len(infos) != 1 || infos[0].Err == nil {
			return false
		}
		last = infos[0]
		return true
	}, "slow consumer did not notice its disconnection")
	drain() // what it handed over between the last drain and the error
	for i, v := range got {
		if v != uint64(i) {
			t.Fatalf("slow consumer datum %d is counter %d: out of order", i, v)
		}
	}
	if len(got) == 0 || len(got) >= rbSlowTotal/2 {
		t.Errorf("slow consumer took %d datums before the cut, want some, far fewer than were sent", len(got))
	}
	if last.Stats.Gaps != 0 || last.Stats.Datums != uint64(len(got)) {
		t.Errorf("slow consumer's receiver stats %+v, want %d datums and no gap", last.Stats, len(got))
	}
	t.Logf("slow consumer: %d datums before the cut; receiver %s, err %v", len(got), last.State, last.Err)
	if last.State != streams.Connecting {
		t.Errorf("slow consumer's receiver is %s, want Connecting (TooSlow is retried after backoff)", last.State)
	}
	var se *network.StreamError
	if !errors.As(last.Err, &se) || streams.Code(se.ErrorCode) != streams.CodeTooSlow || !se.Remote {
		t.Errorf("slow consumer's error %v does not carry a remote reset with TooSlow (%d)", last.Err, streams.CodeTooSlow)
	}
	// Regression (fixed): SubscriptionInfo.Err documents "why the subscription last failed", and
	// CodeError is documented as the way to check close codes
	// ("Check it with errors.As"), but a producer's reset reaches the
	// consumer's SubscriptionInfo as a bare *network.StreamError: the receiver
	// stores the raw read error (consumer.go, receive/session) and only
	// its internal codeOf understands it. See the report.
	var ce *streams.CodeError
	if !errors.As(last.Err, &ce) || ce.Code != streams.CodeTooSlow || !ce.Remote {
		t.Errorf("errors.As(%v, *streams.CodeError) = %v, want Code TooSlow, Remote", last.Err, ce)
	}
	// Both ends count the cut by its code, in their handles and metrics.
	for i, side := range []streams.Role{streams.RoleProducer, streams.RoleConsumer} {
		hs := s.nodes[i].Streams().Handles()
		if len(hs) != 1 || hs[0].Role != side || hs[0].Ends[streams.CodeTooSlow] != 1 {
			t.Errorf("node %d (%v) handles %+v, want one counting one TooSlow end", i, side, hs)
		}
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"mosaik.streams.producer.disconnects", "mosaik.streams.consumer.disconnects"} {
		if got := codeSum(&rm, name, streams.CodeTooSlow); got != 1 {
			t.Errorf("%s{code=10413} = %d, want 1", name, got)
		}
	}
}

// TestRobust_DropLaggingCountsGaps: with WithDropLagging a consumer that
// stops reading is kept, the producer counts the datums it missed, the
// consumer sees exactly those as sequence gaps once it reads again (each
// one on the datum after it, as RecvDatum's Gap), the consumers that keep
// up get everything, and the loss metrics say the same.
func TestRobust_DropLaggingCountsGaps(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	s := newRBSlowSetupOn(t, connected(t, 4, node.WithMeterProvider(mp)), "robust-drop", streams.WithDropLagging())
	slowID := s.nodes[1].ID()
	ctx := testCtx(t, 120*time.Second)
	s.readFast(ctx, rbSlowTotal+1) // the run, then one marker
	longest, _ := s.sendAll(t, ctx)
	if limit := testutil.Scale(time.Second); longest > limit {
		t.Errorf("longest Send took %v, want < %v", longest, limit)
	}
	ci, ok := rbSubscription(s.prod.Consumers(), slowID)
	if !ok || len(s.prod.Consumers()) != 3 {
		t.Fatalf("slow consumer was disconnected in drop mode (producer has %d consumers)", len(s.prod.Consumers()))
	}
	if ci.State != streams.Connected || ci.Stats.Dropped == 0 {
		t.Fatalf("producer side, slow consumer: %s %+v, want connected with drops", ci.State, ci.Stats)
	}
	t.Logf("producer dropped %d of %d datums for the slow consumer", ci.Stats.Dropped, rbSlowTotal)

	// The slow consumer now reads everything that reached it, in order.
	// Each datum's gap must say exactly how many counters it skipped.
	var got []uint64
	var gapErr error
	var reported uint64 // Missed over every gap the application was shown
	var mu sync.Mutex
	var rwg sync.WaitGroup
	rctx, stopReading := context.WithCancel(ctx)
	rwg.Go(func() {
		prev := int64(-1)
		for {
			d, err := s.slow.RecvDatum(rctx)
			if err != nil {
				return
			}
			v, _ := rbVal(d.Value)
			mu.Lock()
			got = append(got, v)
			skipped := uint64(int64(v) - prev - 1)
			switch {
			case d.Seq != v+1:
				gapErr = fmt.Errorf("counter %d has seq %d, want %d", v, d.Seq, v+1)
			case skipped == 0 && d.Gap != nil, skipped > 0 && (d.Gap == nil || d.Gap.Cause != streams.GapDropped || d.Gap.Missed != skipped || d.Gap.After != uint64(prev+1)):
				gapErr = fmt.Errorf("counter %d after %d: gap %v, want %d dropped after seq %d", v, prev, d.Gap, skipped, prev+1)
			}
			if d.Gap != nil {
				reported += d.Gap.Missed
			}
			prev = int64(v)
			mu.Unlock()
		}
	})
	lastGot := func() (uint64, int) {
		mu.Lock()
		defer mu.Unlock()
		if len(got) == 0 {
			return 0, 0
		}
		return got[len(got)-1], len(got)
	}
	// Gaps are seen only before a datum that arrives, so finish with a
	// marker. Send it once the slow consumer has taken every datum that was
	// not dropped: its queue is empty then, so the marker cannot be dropped.
	dropped := ci.Stats.Dropped
	testutil.Eventually(t, 20*time.Second, func() bool {
		infos := s.slow.Producers()
		return len(infos) == 1 && infos[0].Stats.Datums+dropped == rbSlowTotal
	}, "slow consumer did not catch up: %+v, %d dropped", testutil.Lazy(func() any { return s.slow.Producers() }), dropped)
	const marker = rbSlowTotal
	if err := s.prod.Send(ctx, rbPadded(marker, rbSlowSize)); err != nil {
		t.Fatalf("Send(marker): %v", err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		v, n := lastGot()
		return n > 0 && v == marker
	}, "slow consumer never received the marker")
	stopReading()
	rwg.Wait()
	s.checkFast(t, rbSlowTotal+1)

	ci, _ = rbSubscription(s.prod.Consumers(), slowID)
	infos := s.slow.Producers()
	if len(infos) != 1 || infos[0].State != streams.Connected || infos[0].Stats.Reconnects != 0 {
		t.Fatalf("slow consumer's producers: %+v, want one, connected, never reconnected", infos)
	}
	st := infos[0].Stats
	t.Logf("slow consumer got %d datums, saw %d gaps; producer dropped %d", len(got), st.Gaps, ci.Stats.Dropped)
	if st.Gaps == 0 || st.Gaps != ci.Stats.Dropped {
		t.Errorf("slow consumer saw %d gaps, producer dropped %d: want equal and > 0", st.Gaps, ci.Stats.Dropped)
	}
	if agg := s.slow.Stats().Gaps; agg != st.Gaps {
		t.Errorf("consumer Stats().Gaps = %d, want the per-producer %d", agg, st.Gaps)
	}
	if gapErr != nil || reported != st.Gaps {
		t.Errorf("gaps shown to the application: %d missed in all (%v), want %d", reported, gapErr, st.Gaps)
	}
	// The metrics of all four nodes (one provider): the producer's drops
	// and the consumers' gaps (the fast ones have none) match the stats.
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]uint64{
		"mosaik.streams.producer.items.dropped": ci.Stats.Dropped,
		"mosaik.streams.consumer.gaps":          st.Gaps,
	} {
		if got, ok := sumOf(&rm, name); !ok || uint64(got) != want {
			t.Errorf("%s = %d (present %v), want %d", name, got, ok, want)
		}
	}
	if uint64(len(got))+ci.Stats.Dropped != rbSlowTotal+1 || ci.Stats.Dropped != dropped {
		t.Errorf("slow consumer got %d datums and %d were dropped (%d before the marker), want %d in all", len(got), ci.Stats.Dropped, dropped, rbSlowTotal+1)
	}
	for i := 1; i < len(got); i++ {
		if got[i] <= got[i-1] {
			t.Fatalf("slow consumer: counter %d after %d", got[i], got[i-1])
		}
	}
}
