package streams_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/node"
	"github.com/mosaik-go/mosaik/streams"
)

// rlAttackHost starts a bare libp2p host on 127.0.0.1 (TCP) without
// resource limits of its own, so that an attack it runs is bounded by
// the victim's limits only (the default limiter would stop it at about
// 150 outbound streams per peer and protocol).
func rlAttackHost(t *testing.T) host.Host {
	t.Helper()
	rm, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(rcmgr.InfiniteLimits))
	if err != nil {
		t.Fatal(err)
	}
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.ResourceManager(rm),
		libp2p.DisableRelay(), libp2p.DisableMetrics())
	if err != nil {
		_ = rm.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return h
}

// rlInbound returns how many inbound streams of protocol streams.ProtocolID
// h's resource manager holds open.
func rlInbound(t *testing.T, h host.Host) int {
	t.Helper()
	var n int
	err := h.Network().ResourceManager().ViewProtocol(streams.ProtocolID, func(s network.ProtocolScope) error {
		n = s.Stat().NumStreamsInbound
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// rlHeap returns the live heap after a collection.
func rlHeap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// rlSlowloris holds `slots` subscribe streams open at a producer: each slot
// opens a stream, sends nothing (even slots) or a prefix of a valid
// Subscribe frame (odd slots, prefixes of varying length), never completes
// it, and waits for the producer to end the stream; then it opens the next,
// until stop. Every end is classified.
type rlSlowloris struct {
	h      host.Host
	target peer.ID
	prefix []byte // a complete Subscribe frame; slots send a strict prefix
	limit  time.Duration

	stop chan struct{}
	wg   sync.WaitGroup

	opened   atomic.Int64 // streams whose opening bytes were sent
	timedOut atomic.Int64 // reset by the producer with ProtocolViolation (400)
	refused  atomic.Int64 // refused by a resource limit (either side) or a plain reset
	mu       sync.Mutex
	took     []time.Duration // from sending the opening to the 400 reset
	other    []error         // unexpected ends (no reset within limit, ...)
}

func (a *rlSlowloris) start(slots int) {
	a.stop = make(chan struct{})
	for i := range slots {
		a.wg.Go(func() { a.slot(i) })
	}
}

// end stops opening new streams and waits until every open one has ended.
func (a *rlSlowloris) end() {
	close(a.stop)
	a.wg.Wait()
}

func (a *rlSlowloris) slot(i int) {
	for k := 0; ; k++ {
		select {
		case <-a.stop:
			return
		default:
		}
		a.once(i, k)
	}
}

func (a *rlSlowloris) once(i, k int) {
	ctx, cancel := context.WithTimeout(context.Background(), a.limit)
	defer cancel()
	st, err := a.h.NewStream(ctx, a.target, streams.ProtocolID)
	if err != nil {
		if errors.Is(err, network.ErrResourceLimitExceeded) {
			a.refused.Add(1)
			return
		}
		a.fail(fmt.Errorf("slot %d: NewStream: %w", i, err))
		return
	}
	defer func() { _ = st.Reset() }()
	var opening []byte
	if i%2 == 1 {
		// 1 .. len-1 bytes: a lone length byte up to all but the last byte.
		opening = a.prefix[:1+(i/2+k)%(len(a.prefix)-1)]
	}
	// An empty write still sends the lazily negotiated protocol header, so
	// the producer's handler runs and starts its handshake timer.
	start := time.Now()
	if _, err := st.Write(opening); err == nil {
		a.opened.Add(1)
	}
	_ = st.SetReadDeadline(start.Add(a.limit))
	_, err = io.Copy(io.Discard, st)
	took := time.Since(start)
	var se *network.StreamError
	switch {
	case errors.As(err, &se) && se.Remote && streams.Code(se.ErrorCode) == streams.CodeProtocolViolation:
		a.timedOut.Add(1)
		a.mu.Lock()
		a.took = append(a.took, took)
		a.mu.Unlock()
	case errors.As(err, &se) && se.Remote && (se.ErrorCode == network.StreamResourceLimitExceeded || se.ErrorCode == 0),
		errors.Is(err, network.ErrResourceLimitExceeded):
		a.refused.Add(1)
	default:
		a.fail(fmt.Errorf("slot %d: stream ended after %v with %v, want a reset", i, took, err))
	}
}

func (a *rlSlowloris) fail(err error) {
	a.mu.Lock()
	a.other = append(a.other, err)
	a.mu.Unlock()
}

// TestRobust_SlowHandshakeFlood: a raw peer keeps 500 subscribe streams
// open at a producer without ever completing the handshake (half send
// nothing, half a prefix of a Subscribe frame; each slot reopens as soon as
// its stream ends), while an honest consumer on another node takes rounds
// of 50 000 datums until two full waves of stalled streams have timed out.
// The honest consumer receives every datum in order, on its first
// subscription (no TooSlow, no reconnect, no gap); every stalled stream is
// reset by the producer with ProtocolViolation, after the handshake timeout
// and long before a generous bound, or refused by a resource limit; each
// timeout is counted in ServiceStats.HandshakeTimeouts and its metric; and once
// the attack ends the process's goroutines and live heap return near their
// level before it.
//
// No timing is asserted about the honest consumer (the machine may be
// small and loaded): the median time of a round without and with the
// attack is logged, with its ratio.
func TestRobust_SlowHandshakeFlood(t *testing.T) {
	const (
		name   = "robust-slow-handshakes"
		slots  = 500
		total  = 50_000
		window = 256 // datums in flight: below the producer's 1024-datum queue
	)
	handshake := testutil.Scale(2 * time.Second)
	sp := streams.DefaultParams()
	sp.HandshakeTimeout, sp.CloseTimeout = handshake, handshake
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())
	pnode := startNode(t, node.WithStreamsParams(sp), node.WithMeterProvider(mp), node.WithoutDHT())
	cnode := startNode(t, node.WithStreamsParams(sp), node.WithBootstrapPeers(pnode.AddrInfo()), node.WithoutDHT())
	bytesCodec := streams.WithCodec[[]byte](streams.Bytes{})
	prod := mustProducer[[]byte](t, pnode, name, bytesCodec)
	cons := mustConsumer[[]byte](t, cnode, name, bytesCodec)
	testutil.Eventually(t, 10*time.Second, func() bool {
		return rbOnlyConnected(prod.Consumers(), cnode.ID()) && rbOnlyConnected(cons.Producers(), pnode.ID())
	}, "honest subscription not established")
	svc := pnode.Streams()

	// transfer sends total datums, numbered from first, and waits until
	// the consumer has taken them, checking each; it returns how long that
	// took. The sender stays within window datums of the consumer, so the
	// producer's queue never fills and only a failure cuts the consumer.
	var next uint64
	transfer := func() time.Duration {
		t.Helper()
		ctx, cancel := context.WithCancel(testCtx(t, 60*time.Second))
		defer cancel()
		first := next
		prog := newRBProgress(1)
		recvErr := make(chan error, 1)
		start := time.Now()
		go func() {
			for want := first; want < first+total; want++ {
				b, err := cons.Recv(ctx)
				if err != nil {
					recvErr <- fmt.Errorf("after %d datums: %w", want-first, err)
					cancel() // and the sender stops waiting
					return
				}
				if got, err := rbVal(b); err != nil || got != want {
					recvErr <- fmt.Errorf("got datum %x (%v), want counter %d", b, err, want)
					cancel()
					return
				}
				prog.add(0)
			}
			recvErr <- nil
		}()
		for i := range uint64(total) {
			if err := prog.waitWithin(ctx, i, window); err != nil {
				t.Fatalf("honest consumer: %v (receiver: %v)", err, <-recvErr)
			}
			if err := prod.Send(ctx, rbU64(first+i)); err != nil {
				t.Fatalf("Send(%d): %v", first+i, err)
			}
		}
		if err := <-recvErr; err != nil {
			t.Fatalf("honest consumer: %v", err)
		}
		next += total
		return time.Since(start)
	}

	before, ok := rbSubscription(cons.Producers(), pnode.ID())
	if !ok {
		t.Fatal("honest receiver not listed")
	}
	// Without the attack: a few rounds (the first warms the path up).
	var quiet []time.Duration
	for range 3 {
		quiet = append(quiet, transfer())
	}

	atk := rlAttackHost(t)
	if err := atk.Connect(testCtx(t, 10*time.Second), pnode.AddrInfo()); err != nil {
		t.Fatal(err)
	}
	// The baseline includes the attacker's host and its idle connection.
	g0, heap0 := runtime.NumGoroutine(), rlHeap()
	r0, to0 := svc.Stats().Rejected, svc.Stats().HandshakeTimeouts
	a := &rlSlowloris{h: atk, target: pnode.ID(), prefix: rbSubscribe(pnode.Network(), prod.StreamID()),
		limit: handshake + testutil.Scale(10*time.Second)}
	a.start(slots)
	stopped := false
	defer func() {
		if !stopped { // a Fatal above: stop the slots before the hosts close
			close(a.stop)
			_ = atk.Close()
			a.wg.Wait()
		}
	}()
	// The attack is in place when the producer holds every slot's stream
	// (the honest subscription is the one other inbound stream), or when
	// its limits have refused some of them.
	testutil.Eventually(t, 20*time.Second, func() bool {
		return rlInbound(t, pnode.Host())-1 >= slots || a.refused.Load() > 0
	}, "the producer does not hold the %d stalled streams", slots)
	held := rlInbound(t, pnode.Host()) - 1
	gPeak, heapPeak := runtime.NumGoroutine(), rlHeap()

	// With the attack: rounds until two full waves of stalled streams have
	// timed out (and been reopened) while the honest datums flowed, so the
	// transfer overlaps the producer's timeouts and resets, not only the
	// idle stalls.
	var attacked []time.Duration
	for len(attacked) < 3 || svc.Stats().HandshakeTimeouts-to0 < 2*slots {
		attacked = append(attacked, transfer())
		if len(attacked) > 1000 {
			t.Fatalf("no two waves of handshake timeouts in %d rounds: %d timeouts", len(attacked), svc.Stats().HandshakeTimeouts-to0)
		}
	}
	heldAfter := rlInbound(t, pnode.Host()) - 1
	timeoutsDuring := svc.Stats().HandshakeTimeouts - to0
	close(a.stop)
	stopped = true
	a.wg.Wait()

	// The honest subscription is the one it was: never cut, never resumed.
	infos := cons.Producers()
	if len(infos) != 1 {
		t.Fatalf("consumer has %d producers, want 1", len(infos))
	}
	if st := infos[0].Stats; infos[0].State != streams.Connected || infos[0].Err != nil || st.Datums != next ||
		st.Gaps != 0 || st.Reconnects != before.Stats.Reconnects || !st.ConnectedAt.Equal(before.Stats.ConnectedAt) {
		t.Errorf("honest receiver: state %v, err %v, stats %+v; want connected, no error, %d datums, no gap, still the connection of %v",
			infos[0].State, infos[0].Err, st, next, before.Stats.ConnectedAt)
	}
	if ci, ok := rbSubscription(prod.Consumers(), cnode.ID()); !ok || ci.State != streams.Connected || ci.Stats.Datums != next || ci.Stats.Dropped != 0 {
		t.Errorf("producer side of the honest consumer: %+v (listed %v); want connected, %d datums, none dropped", ci, ok, next)
	}
	if _, err := cons.TryRecv(); !errors.Is(err, streams.ErrEmpty) {
		t.Errorf("TryRecv after the run = %v, want ErrEmpty (no duplicate)", err)
	}
	if n := len(prod.Consumers()); n != 1 {
		t.Errorf("the producer lists %d consumers, want only the honest one", n)
	}

	// Every stalled stream ended: reset for its timeout, or refused.
	a.mu.Lock()
	for i, err := range a.other {
		if i == 10 {
			t.Errorf("... and %d more", len(a.other)-10)
			break
		}
		t.Error(err)
	}
	took := slices.Clone(a.took)
	slices.Sort(took)
	a.mu.Unlock()
	timedOut, refused := a.timedOut.Load(), a.refused.Load()
	if timedOut+refused < slots {
		t.Errorf("%d stalled streams timed out and %d were refused, want at least %d in all", timedOut, refused, slots)
	}
	if len(took) > 0 {
		// The producer must wait the full timeout (a real consumer on a slow
		// link gets it); a quarter of slack covers timer and scheduling skew.
		if took[0] < handshake*3/4 {
			t.Errorf("a stalled stream was reset after %v, before the %v handshake timeout", took[0], handshake)
		}
		t.Logf("stalled streams reset after min %v, median %v, max %v (handshake timeout %v)",
			took[0], took[len(took)/2], took[len(took)-1], handshake)
	}

	// Counted: each 400 reset the attacker saw is a handshake timeout, in
	// the counter, in Rejected and in the exported metric.
	timeouts := svc.Stats().HandshakeTimeouts - to0
	if timeouts != uint64(timedOut) {
		t.Errorf("HandshakeTimeouts grew by %d, the attacker saw %d timeout resets", timeouts, timedOut)
	}
	if rej := svc.Stats().Rejected - r0; rej != uint64(timedOut) {
		t.Errorf("Rejected grew by %d, want %d (the timeouts)", rej, timedOut)
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	if got, ok := sumOf(&rm, "mosaik.streams.connections.handshake_timeouts"); !ok || got != int64(svc.Stats().HandshakeTimeouts) {
		t.Errorf("metric mosaik.streams.connections.handshake_timeouts = %d (present %v), want %d", got, ok, svc.Stats().HandshakeTimeouts)
	}

	// Bounded, and released: once the streams are gone the goroutines and
	// the live heap come back near where they were before the attack. The
	// bounds are generous (-race doubles memory; background timers come and
	// go); the point is that nothing per stream is kept.
	const goroutineSlack, heapSlack = 50, 16 << 20
	testutil.Eventually(t, 10*time.Second, func() bool { return rlInbound(t, pnode.Host()) == 1 },
		"the producer still holds stalled streams")
	testutil.Eventually(t, 10*time.Second, func() bool { return runtime.NumGoroutine() <= g0+goroutineSlack },
		"goroutines do not come back near the %d before the attack", g0)
	heap1 := rlHeap()
	if heap1 > heap0+heapSlack {
		t.Errorf("live heap %d KiB after the attack, %d KiB before: grew by more than %d MiB", heap1>>10, heap0>>10, heapSlack>>20)
	}
	if heapPeak > heap0+256<<20 {
		t.Errorf("live heap %d MiB under attack, %d MiB before", heapPeak>>20, heap0>>20)
	}

	t.Logf("attack: %d slots, %d streams opened, %d reset for the handshake timeout (%d while the honest transfer ran), %d refused by limits; producer held %d stalled streams at the start of the transfer, %d at its end",
		slots, a.opened.Load(), timedOut, timeoutsDuring, refused, held, heldAfter)
	t.Logf("goroutines: %d before, %d under attack, %d after; live heap: %d KiB before, %d KiB under attack, %d KiB after",
		g0, gPeak, runtime.NumGoroutine(), heap0>>10, heapPeak>>10, heap1>>10)
	qm, am := rlMedian(quiet), rlMedian(attacked)
	t.Logf("honest rounds of %d datums: median %v (%.0f datums/s) in %d rounds without the attack, median %v (%.0f datums/s) in %d rounds with it: time ratio %.2f",
		total, qm, total/qm.Seconds(), len(quiet), am, total/am.Seconds(), len(attacked), float64(am)/float64(qm))
}

// rlMedian is the median of ds (which it sorts).
func rlMedian(ds []time.Duration) time.Duration {
	slices.Sort(ds)
	return ds[len(ds)/2]
}
