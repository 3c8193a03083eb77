package streams_test

// Benchmarks of setting subscriptions up: time to the first datum and the
// memory of idle subscriptions (see bench_test.go for the method).

import (
	"bufio"
	"encoding/binary"
	"io"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/streams"
)

// BenchmarkFirstDatum measures, per op, the time from NewConsumer to the
// first datum received, with the producer already in the consumer node's
// catalog (and its RTT already sampled after the first op). A goroutine
// calls prod.Send before NewConsumer; Send waits until the producer is
// online and sends at once. The consumer is closed after each op, and the
// next op starts once the producer saw it leave (untimed). The baseline
// opens a raw stream on the existing connection to a handler that writes
// one frame at once, and reads it.
func BenchmarkFirstDatum(b *testing.B) {
	nodes := benchNodes(b, 2)
	pn, cn := nodes[0], nodes[1]
	payload := make([]byte, 64)
	pn.Host().SetStreamHandler(benchFirstProto, func(st network.Stream) {
		bw := bufio.NewWriterSize(st, 32<<10)
		var hdr [24]byte
		_, _ = bw.Write(benchHeader(hdr[:0], 1, len(payload)))
		_, _ = bw.Write(payload)
		if bw.Flush() != nil {
			_ = st.Reset()
			return
		}
		_, _ = st.Read(hdr[:1]) // until the reader closes
		_ = st.Close()
	})
	b.Cleanup(func() { pn.Host().RemoveStreamHandler(benchFirstProto) })
	b.Run("raw", func(b *testing.B) {
		ctx, cancel := benchCtx(60 * time.Second)
		defer cancel()
		samples := make([]time.Duration, 0, b.N)
		b.ResetTimer()
		for range b.N {
			start := time.Now()
			st, err := cn.Host().NewStream(ctx, pn.ID(), benchFirstProto)
			if err != nil {
				b.Fatal(err)
			}
			br := bufio.NewReaderSize(st, 64<<10)
			n, err := binary.ReadUvarint(br)
			if err == nil {
				_, err = io.ReadFull(br, make([]byte, n))
			}
			if err != nil {
				b.Fatal(err)
			}
			samples = append(samples, time.Since(start))
			_ = st.Close()
		}
		b.StopTimer()
		benchReportFirst(b, samples)
	})
	prod, err := streams.NewProducer[[]byte](pn.Streams(), "first", benchBytes())
	if err != nil {
		b.Fatal(err)
	}
	defer prod.Close()
	testutil.Eventually(b, 10*time.Second, func() bool { return len(cn.Catalog().Producers(prod.StreamID())) == 1 },
		"producer not in the consumer node's catalog")
	b.Run("mosaik", func(b *testing.B) {
		ctx, cancel := benchCtx(60 * time.Second)
		defer cancel()
		samples := make([]time.Duration, 0, b.N)
		b.ResetTimer()
		for range b.N {
			sent := make(chan error, 1)
			go func() { sent <- prod.Send(ctx, payload) }()
			start := time.Now()
			cons, err := streams.NewConsumer[[]byte](cn.Streams(), "first", benchBytes())
			if err != nil {
				b.Fatal(err)
			}
			if _, err := cons.Recv(ctx); err != nil {
				b.Fatalf("%v (%s)", err, benchDescribe(cons))
			}
			samples = append(samples, time.Since(start))
			b.StopTimer()
			if err := <-sent; err != nil {
				b.Fatal(err)
			}
			_ = cons.Close()
			if err := prod.WaitOffline(ctx); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		b.StopTimer()
		benchReportFirst(b, samples)
	})
}

func benchReportFirst(b *testing.B, s []time.Duration) {
	slices.Sort(s)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(benchPercentile(s, 0.50)), "p50-ms")
	b.ReportMetric(ms(benchPercentile(s, 0.99)), "p99-ms")
}

// BenchmarkIdleSubscription creates K = 200 idle subscriptions to one
// producer (200 Consumer handles, 50 on each of 4 consumer nodes) and
// reports the growth of HeapInuse and StackInuse (after runtime.GC) and of
// the goroutine count, per subscription, both ends included. The baseline
// is 200 raw streams laid out the same way, each with one goroutine blocked
// in Read at each end and no buffers. One op is one round of K.
func BenchmarkIdleSubscription(b *testing.B) {
	const (
		consumerNodes = 4
		k             = 200
	)
	nodes := benchNodes(b, 1+consumerNodes)
	pn := nodes[0]
	var accepted atomic.Int64
	pn.Host().SetStreamHandler(benchIdleProto, func(st network.Stream) {
		var one [1]byte
		if _, err := st.Read(one[:]); err != nil {
			_ = st.Reset()
			return
		}
		accepted.Add(1)
		_, _ = st.Read(one[:]) // idle until the other end closes
		_ = st.Reset()
	})
	b.Cleanup(func() { pn.Host().RemoveStreamHandler(benchIdleProto) })
	b.Run("raw", func(b *testing.B) {
		benchIdle(b, k, func() func() {
			ctx, cancel := benchCtx(30 * time.Second)
			defer cancel()
			accepted.Store(0)
			var wg sync.WaitGroup
			sts := make([]network.Stream, k)
			for i := range sts {
				st, err := nodes[1+i%consumerNodes].Host().NewStream(ctx, pn.ID(), benchIdleProto)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := st.Write([]byte{1}); err != nil {
					b.Fatal(err)
				}
				sts[i] = st
				wg.Add(1)
				go func() {
					defer wg.Done()
					var one [1]byte
					_, _ = st.Read(one[:])
				}()
			}
			testutil.Eventually(b, 20*time.Second, func() bool { return accepted.Load() == k }, "raw idle streams not accepted")
			return func() {
				for _, st := range sts {
					_ = st.Reset()
				}
				wg.Wait()
			}
		})
	})
	prod, err := streams.NewProducer[[]byte](pn.Streams(), "idle", benchBytes())
	if err != nil {
		b.Fatal(err)
	}
	defer prod.Close()
	for _, cn := range nodes[1:] {
		testutil.Eventually(b, 10*time.Second, func() bool { return len(cn.Catalog().Producers(prod.StreamID())) == 1 },
			"producer not in a consumer node's catalog")
	}
	b.Run("mosaik", func(b *testing.B) {
		benchIdle(b, k, func() func() {
			cons := make([]*streams.Consumer[[]byte], k)
			for i := range cons {
				c, err := streams.NewConsumer[[]byte](nodes[1+i%consumerNodes].Streams(), "idle", benchBytes())
				if err != nil {
					b.Fatal(err)
				}
				cons[i] = c
			}
			benchWaitSubscribed(b, prod, k)
			testutil.Eventually(b, 10*time.Second, func() bool {
				for _, c := range cons {
					ps := c.Producers()
					if len(ps) != 1 || ps[0].State != streams.Connected {
						return false
					}
				}
				return true
			}, "consumers not connected")
			return func() {
				for _, c := range cons {
					_ = c.Close()
				}
				testutil.Eventually(b, 10*time.Second, func() bool { return len(prod.Consumers()) == 0 }, "subscriptions did not end")
			}
		})
	})
}

// benchIdle runs b.N rounds of: measure, set up k idle subscriptions,
// measure, tear down; and reports the mean growth per subscription.
func benchIdle(b *testing.B, k int, setup func() (teardown func())) {
	measure := func() (heap, stack uint64, gr int) {
		var ms runtime.MemStats
		// Twice: the first cycle may leave finalizer-freed objects behind.
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return ms.HeapInuse, ms.StackInuse, runtime.NumGoroutine()
	}
	var heap, stack, gr float64
	for range b.N {
		b.StopTimer()
		h0, s0, g0 := measure()
		b.StartTimer()
		teardown := setup()
		b.StopTimer()
		h1, s1, g1 := measure()
		heap += float64(int64(h1)-int64(h0)) / float64(k)
		stack += float64(int64(s1)-int64(s0)) / float64(k)
		gr += float64(g1-g0) / float64(k)
		teardown()
		b.StartTimer()
	}
	n := float64(b.N)
	b.ReportMetric(heap/n/1024, "heap-KiB/sub")
	b.ReportMetric(stack/n/1024, "stack-KiB/sub")
	b.ReportMetric(gr/n, "goroutines/sub")
}
