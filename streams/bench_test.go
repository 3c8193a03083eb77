package streams_test

// Benchmarks of the streams data path against a raw libp2p stream between
// the same two hosts.
//
// Every benchmark runs real nodes on 127.0.0.1 over TCP only (TCP + noise +
// yamux), without a DHT (streams do not use it; it only adds background
// noise), with the test profile. The raw baseline is a libp2p stream on
// /bench/raw/... between the same hosts that writes the exact framing of
// streams (uvarint length, 1 type byte, uvarint sequence number, payload)
// through a 32 KiB bufio.Writer and reads it with a 64 KiB bufio.Reader and
// one reused frame buffer, like the streams frame reader. The raw reader
// checks the sequence number and stops there: no copy of the payload, no
// delivery channel, no application goroutine. It is the physical limit of
// the transport with equal framing; the gap to it is what the streams API
// (queues, copy-out, delivery channel) costs.
//
// Pacing. Producer.Send never waits on a consumer: a consumer whose queue
// (default 1024) is full is cut with TooSlow. An unpaced sender therefore
// outruns any pipeline; BenchmarkThroughputUnpaced shows it. The throughput
// and fan-out benchmarks bound the datums in flight per consumer to the
// queue size with credits returned by the receiving goroutine every 64
// datums (benchWindow), so the queue cannot overflow by construction and
// the default disconnect-on-lag policy stays on.
//
// Run with:
//
//	go test -run '^$' -bench . -benchtime 2s -count 1 ./streams/

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/streams"
)

var benchSizes = []struct {
	name string
	n    int
}{{"64B", 64}, {"1KiB", 1 << 10}, {"64KiB", 64 << 10}}

// BenchmarkThroughput measures one producer to one consumer on another
// node with the Bytes codec, beside the raw stream and beside raw-deliver
// (the raw stream plus the copy-out and channel hand-off to an application
// goroutine that any per-datum []byte API needs). One op is one datum;
// datums/s is delivered datums per second (the timer stops when the last
// datum is received); cpu-ns/datum is the process CPU time (both nodes) per
// delivered datum, the steadier measure on a shared box. allocs/op count the whole process (both nodes,
// noise, yamux) per datum.
func BenchmarkThroughput(b *testing.B) {
	nodes := benchNodes(b, 2)
	pn, cn := nodes[0], nodes[1]
	sink := make(chan benchRawResult, 1024)
	benchRawSink(b, cn.Host(), benchRawProto, nil, sink)
	// raw-deliver: the raw reader also does what a consumer must do with
	// a datum the application owns: copy it out of the frame buffer and
	// hand it through a buffered channel (1024, like the consumer's) to an
	// application goroutine.
	dsink, app := make(chan benchRawResult, 1024), make(chan []byte, benchQueue)
	benchRawSink(b, cn.Host(), benchDelivProto, func(p []byte) { app <- append([]byte(nil), p...) }, dsink)
	for _, sz := range benchSizes {
		payload := make([]byte, sz.n)
		b.Run("size="+sz.name, func(b *testing.B) {
			b.Run("raw", func(b *testing.B) {
				benchRawFanout(b, pn.Host(), benchRawProto, []peer.ID{cn.ID()}, sink, nil, payload)
			})
			b.Run("raw-deliver", func(b *testing.B) {
				benchRawFanout(b, pn.Host(), benchDelivProto, []peer.ID{cn.ID()}, dsink, app, payload)
			})
			name := "tput-" + sz.name
			prod, err := streams.NewProducer[[]byte](pn.Streams(), name, benchBytes())
			if err != nil {
				b.Fatal(err)
			}
			defer prod.Close()
			cons, err := streams.NewConsumer[[]byte](cn.Streams(), name, benchBytes())
			if err != nil {
				b.Fatal(err)
			}
			defer cons.Close()
			benchWaitSubscribed(b, prod, 1)
			b.Run("mosaik", func(b *testing.B) {
				benchMosaikFanout(b, prod, []*streams.Consumer[[]byte]{cons}, payload)
			})
			// The same with a consumer on BorrowedBytes: each datum valid
			// until the next Recv, in a recycled buffer.
			bname := "tput-borrowed-" + sz.name
			bprod, err := streams.NewProducer[[]byte](pn.Streams(), bname, benchBytes())
			if err != nil {
				b.Fatal(err)
			}
			defer bprod.Close()
			bcons, err := streams.NewConsumer[[]byte](cn.Streams(), bname, streams.WithCodec[[]byte](streams.BorrowedBytes{}))
			if err != nil {
				b.Fatal(err)
			}
			defer bcons.Close()
			benchWaitSubscribed(b, bprod, 1)
			b.Run("mosaik-borrowed", func(b *testing.B) {
				benchMosaikFanout(b, bprod, []*streams.Consumer[[]byte]{bcons}, payload)
			})
		})
	}
}

// benchRawFanout writes b.N frames of payload to one raw stream on proto
// per destination (one writer goroutine each, like the producer's
// per-consumer writers) and waits until every sink has read them all and,
// with app, until b.N datums per destination came out of app.
func benchRawFanout(b *testing.B, h host.Host, proto protocol.ID, dst []peer.ID, sink <-chan benchRawResult, app <-chan []byte, payload []byte) {
	ctx, cancel := benchCtx(60 * time.Second)
	defer cancel()
	sts := make([]network.Stream, len(dst))
	for i, p := range dst {
		st, err := h.NewStream(ctx, p, proto)
		if err != nil {
			b.Fatal(err)
		}
		sts[i] = st
	}
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	b.ResetTimer()
	start, cpu0 := time.Now(), benchCPU()
	appDone := make(chan struct{})
	go func() {
		defer close(appDone)
		if app == nil {
			return
		}
		for range b.N * len(dst) {
			select {
			case <-app:
			case <-ctx.Done():
				return
			}
		}
	}()
	errc := make(chan error, len(sts))
	for _, st := range sts {
		go func() { errc <- benchWriteRaw(st, b.N, payload) }()
	}
	for range sts {
		if err := <-errc; err != nil {
			b.Fatal(err)
		}
	}
	for range sts {
		select {
		case r := <-sink:
			if r.err != nil || r.n != b.N {
				b.Fatalf("raw sink read %d of %d frames: %v", r.n, b.N, r.err)
			}
		case <-ctx.Done():
			b.Fatal("raw sink timed out")
		}
	}
	<-appDone
	if ctx.Err() != nil {
		b.Fatal("raw delivery timed out")
	}
	el, cpu := time.Since(start), benchCPU()-cpu0
	b.StopTimer()
	for _, st := range sts {
		_ = st.Close()
	}
	b.ReportMetric(float64(b.N*len(dst))/el.Seconds(), "datums/s")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*len(dst)), "cpu-ns/datum")
}

// benchMosaikFanout sends b.N datums with prod.Send, paced by a window of
// one queue per consumer, and waits until every consumer received them.
func benchMosaikFanout(b *testing.B, prod *streams.Producer[[]byte], cons []*streams.Consumer[[]byte], payload []byte) {
	ctx, cancel := benchCtx(60 * time.Second)
	defer cancel()
	benchWaitSubscribed(b, prod, len(cons)) // a previous run may have been cut
	w := newBenchWindow(len(cons), benchQueue)
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	b.ResetTimer()
	start, cpu0 := time.Now(), benchCPU()
	errc := benchRecvN(ctx, cons, b.N, len(payload), w)
	for i := range b.N {
		if err := w.acquire(ctx, i); err != nil {
			b.Fatalf("window after %d datums: %v (consumer 0: %s)", i, err, benchDescribe(cons[0]))
		}
		if err := prod.Send(ctx, payload); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
	el, cpu := time.Since(start), benchCPU()-cpu0
	b.StopTimer()
	b.ReportMetric(float64(b.N*len(cons))/el.Seconds(), "datums/s")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*len(cons)), "cpu-ns/datum")
	for _, c := range prod.Consumers() {
		if c.Stats.Dropped > 0 {
			b.Fatalf("consumer %s: %d datums dropped", c.Peer, c.Stats.Dropped)
		}
	}
}

// BenchmarkThroughputUnpaced is the finding behind the window: one op is
// one Send at full speed, with the default queue (1024) and
// disconnect-on-lag, and the run stops when the consumer has been cut with
// TooSlow (Send returns ErrFull for the datum that found the only queue
// full, and the producer is offline from then on). accepted is how many
// datums the producer took before the cut (b.N if none), delivered how many
// the consumer received of them, cut 1 if the consumer was cut. ns/op is
// the time per accepted datum.
func BenchmarkThroughputUnpaced(b *testing.B) {
	nodes := benchNodes(b, 2)
	pn, cn := nodes[0], nodes[1]
	for _, sz := range benchSizes[:2] {
		payload := make([]byte, sz.n)
		b.Run("size="+sz.name, func(b *testing.B) {
			name := "unpaced-" + sz.name
			prod, err := streams.NewProducer[[]byte](pn.Streams(), name, benchBytes())
			if err != nil {
				b.Fatal(err)
			}
			defer prod.Close()
			cons, err := streams.NewConsumer[[]byte](cn.Streams(), name, benchBytes())
			if err != nil {
				b.Fatal(err)
			}
			defer cons.Close()
			var got atomic.Int64
			rctx, rcancel := context.WithCancel(context.Background())
			var rwg sync.WaitGroup
			rwg.Add(1)
			go func() {
				defer rwg.Done()
				for {
					if _, err := cons.Recv(rctx); err != nil {
						return
					}
					got.Add(1)
				}
			}()
			defer func() { rcancel(); rwg.Wait() }()
			b.Run("mosaik", func(b *testing.B) {
				benchWaitSubscribed(b, prod, 1)
				reconnects := func() uint64 {
					var n uint64
					for _, p := range cons.Producers() {
						n += p.Stats.Reconnects
					}
					return n
				}
				r0, g0 := reconnects(), got.Load()
				accepted := 0
				var serr error
				b.ResetTimer()
				start := time.Now()
				ctx, cancel := benchCtx(30 * time.Second)
				defer cancel()
				for range b.N {
					if !prod.IsOnline() { // cut by the previous Send
						serr = streams.ErrOffline
						break
					}
					if serr = prod.Send(ctx, payload); serr != nil {
						break
					}
					accepted++
				}
				el := time.Since(start)
				b.StopTimer()
				cut := 0.0
				if serr != nil {
					// Let the cut consumer reconnect, so the next run
					// starts subscribed.
					cut = 1
					testutil.Eventually(b, 10*time.Second, func() bool { return reconnects() > r0 }, "cut consumer did not reconnect")
				} else {
					testutil.Eventually(b, 10*time.Second, func() bool { return got.Load()-g0 == int64(accepted) }, "datums lost without a cut")
				}
				b.ReportMetric(float64(el.Nanoseconds())/float64(max(accepted, 1)), "ns/op")
				b.ReportMetric(float64(accepted), "accepted")
				b.ReportMetric(float64(got.Load()-g0), "delivered")
				b.ReportMetric(cut, "cut")
				if serr != nil {
					b.Logf("b.N=%d: cut after %d datums (%d delivered): Send: %v; consumer: %s", b.N, accepted, got.Load()-g0, serr, benchDescribe(cons))
				}
			})
		})
	}
}

// BenchmarkFanout measures one producer to N consumers at 256 B: N
// Consumer handles (each its own subscription and libp2p stream) spread
// round-robin over min(N, 5) consumer nodes, against N raw streams laid out
// the same way, each with its own writer goroutine. datums/s is the
// aggregate delivered; one op is one datum sent to all N.
func BenchmarkFanout(b *testing.B) {
	const consumerNodes = 5
	nodes := benchNodes(b, 1+consumerNodes)
	pn := nodes[0]
	sink := make(chan benchRawResult, 1024)
	for _, cn := range nodes[1:] {
		benchRawSink(b, cn.Host(), benchRawProto, nil, sink)
	}
	payload := make([]byte, 256)
	for _, n := range []int{1, 10, 50} {
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) {
			dst := make([]peer.ID, n)
			for i := range dst {
				dst[i] = nodes[1+i%consumerNodes].ID()
			}
			b.Run("raw", func(b *testing.B) { benchRawFanout(b, pn.Host(), benchRawProto, dst, sink, nil, payload) })
			name := fmt.Sprintf("fanout-%d", n)
			prod, err := streams.NewProducer[[]byte](pn.Streams(), name, benchBytes())
			if err != nil {
				b.Fatal(err)
			}
			defer prod.Close()
			cons := make([]*streams.Consumer[[]byte], n)
			for i := range cons {
				c, err := streams.NewConsumer[[]byte](nodes[1+i%consumerNodes].Streams(), name, benchBytes())
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				cons[i] = c
			}
			benchWaitSubscribed(b, prod, n)
			b.Run("mosaik", func(b *testing.B) { benchMosaikFanout(b, prod, cons, payload) })
		})
	}
}

// BenchmarkLatency sends one 64 B datum per millisecond (benchPace) that
// carries its send time, and reports the end-to-end delay at the receiving
// goroutine: p50 and p99 over the b.N datums of the run. The raw stream
// flushes after every frame, as the producer's writer does when its queue
// is empty.
func BenchmarkLatency(b *testing.B) {
	nodes := benchNodes(b, 2)
	pn, cn := nodes[0], nodes[1]
	lat := make(chan time.Duration, 1<<16)
	sink := make(chan benchRawResult, 16)
	benchRawSink(b, cn.Host(), benchLatProto, func(p []byte) {
		lat <- time.Since(benchEpoch) - time.Duration(binary.LittleEndian.Uint64(p))
	}, sink)
	stamp := func() []byte {
		p := make([]byte, 64)
		binary.LittleEndian.PutUint64(p, uint64(time.Since(benchEpoch)))
		return p
	}
	b.Run("raw", func(b *testing.B) {
		ctx, cancel := benchCtx(30 * time.Second)
		defer cancel()
		st, err := pn.Host().NewStream(ctx, cn.ID(), benchLatProto)
		if err != nil {
			b.Fatal(err)
		}
		samples := make([]time.Duration, 0, b.N)
		bw := bufio.NewWriterSize(st, 32<<10)
		var hdr [24]byte
		b.ResetTimer()
		start := time.Now()
		for i := 1; i <= b.N; i++ {
			benchPace(start, i-1)
			p := stamp()
			_, _ = bw.Write(benchHeader(hdr[:0], uint64(i), len(p)))
			_, _ = bw.Write(p)
			if err := bw.Flush(); err != nil {
				b.Fatal(err)
			}
		}
		_ = st.CloseWrite()
		for range b.N {
			samples = append(samples, <-lat)
		}
		b.StopTimer()
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "datums/s")
		if r := <-sink; r.err != nil || r.n != b.N {
			b.Fatalf("raw sink read %d of %d: %v", r.n, b.N, r.err)
		}
		_ = st.Close()
		benchReportLatency(b, samples)
	})
	prod, err := streams.NewProducer[[]byte](pn.Streams(), "latency", benchBytes())
	if err != nil {
		b.Fatal(err)
	}
	defer prod.Close()
	cons, err := streams.NewConsumer[[]byte](cn.Streams(), "latency", benchBytes())
	if err != nil {
		b.Fatal(err)
	}
	defer cons.Close()
	benchWaitSubscribed(b, prod, 1)
	b.Run("mosaik", func(b *testing.B) {
		ctx, cancel := benchCtx(30 * time.Second)
		defer cancel()
		samples := make([]time.Duration, 0, b.N)
		done := make(chan error, 1)
		go func() {
			for range b.N {
				v, err := cons.Recv(ctx)
				if err != nil {
					done <- err
					return
				}
				samples = append(samples, time.Since(benchEpoch)-time.Duration(binary.LittleEndian.Uint64(v)))
			}
			done <- nil
		}()
		b.ResetTimer()
		start := time.Now()
		for i := range b.N {
			benchPace(start, i)
			if err := prod.Send(ctx, stamp()); err != nil {
				b.Fatal(err)
			}
		}
		if err := <-done; err != nil {
			b.Fatalf("%v (%s)", err, benchDescribe(cons))
		}
		b.StopTimer()
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "datums/s")
		benchReportLatency(b, samples)
	})
}

// benchPace waits until datum i (0-based) is due at 1000 datums/s after
// start. The schedule is absolute, so a late wake-up (timers on this box
// fire up to ~1 ms late) is caught up and the mean rate is exact.
func benchPace(start time.Time, i int) {
	if d := time.Until(start.Add(time.Duration(i) * time.Millisecond)); d > 0 {
		time.Sleep(d) // pacing the benchmark's send rate, not synchronisation
	}
}

func benchPercentile(s []time.Duration, q float64) time.Duration {
	if len(s) == 0 {
		return 0
	}
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

func benchReportLatency(b *testing.B, s []time.Duration) {
	slices.Sort(s)
	us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
	b.ReportMetric(us(benchPercentile(s, 0.50)), "p50-µs")
	b.ReportMetric(us(benchPercentile(s, 0.99)), "p99-µs")
	b.ReportMetric(us(s[len(s)-1]), "max-µs")
}
