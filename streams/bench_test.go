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
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/node"
	"github.com/mosaik-go/mosaik/streams"
)

const (
	benchRawProto   protocol.ID = "/bench/raw/1.0.0"         // throughput and fan-out sink
	benchDelivProto protocol.ID = "/bench/raw-deliver/1.0.0" // sink that copies out and delivers
	benchLatProto   protocol.ID = "/bench/raw-lat/1.0.0"     // latency sink
	benchFirstProto protocol.ID = "/bench/raw-first/1.0.0"   // first-datum source
	benchIdleProto  protocol.ID = "/bench/raw-idle/1.0.0"    // idle streams

	benchQueue = 1024 // the default producer queue and consumer buffer
	benchBatch = 64   // credit granularity of benchWindow
	benchFrame = 0x10 // the data frame type of the streams wire format
)

var benchEpoch = time.Now() // latency timestamps are monotonic offsets from it

// ---- nodes ------------------------------------------------------------

// benchNodes starts n TCP-only loopback nodes without a DHT, all
// bootstrapped from the first, waits until every catalog holds every node
// and closes them when the benchmark ends.
func benchNodes(b *testing.B, n int) []*node.Node {
	b.Helper()
	start := func(opts ...node.Option) *node.Node {
		nd, err := node.New("streams-bench", append([]node.Option{
			node.WithListenAddrs("/ip4/127.0.0.1/tcp/0"), node.WithFastProfile(),
			node.WithoutDHT(), node.WithLogger(testutil.Logger()),
		}, opts...)...)
		if err != nil {
			b.Fatalf("node.New: %v", err)
		}
		b.Cleanup(func() { _ = nd.Close() })
		return nd
	}
	nodes := []*node.Node{start()}
	for range n - 1 {
		nodes = append(nodes, start(node.WithBootstrapPeers(nodes[0].AddrInfo())))
	}
	testutil.Eventually(b, 20*time.Second, func() bool {
		for _, x := range nodes {
			for _, y := range nodes {
				if _, ok := x.Catalog().Get(y.ID()); !ok {
					return false
				}
			}
		}
		return true
	}, "bench nodes did not converge")
	// Every consumer node dials the producer node (nodes[0]) directly, so
	// raw and streams traffic share one connection per pair.
	for _, x := range nodes[1:] {
		ctx, cancel := context.WithTimeout(context.Background(), testutil.Scale(5*time.Second))
		err := x.Connect(ctx, nodes[0].AddrInfo())
		cancel()
		if err != nil {
			b.Fatalf("connect: %v", err)
		}
	}
	return nodes
}

func benchBytes() streams.Option { return streams.WithCodec[[]byte](streams.Bytes{}) }

// benchWaitSubscribed waits until prod has n connected consumers.
func benchWaitSubscribed(b *testing.B, prod *streams.Producer[[]byte], n int) {
	b.Helper()
	testutil.Eventually(b, 30*time.Second, func() bool {
		cs := prod.Consumers()
		if len(cs) != n {
			return false
		}
		for _, c := range cs {
			if c.State != streams.Connected {
				return false
			}
		}
		return true
	}, "producer has %d consumers, want %d connected", len(prod.Consumers()), n)
}

// ---- raw framing ------------------------------------------------------

// benchHeader appends a data frame header exactly as streams does.
func benchHeader(dst []byte, seq uint64, n int) []byte {
	var tmp [binary.MaxVarintLen64]byte
	sl := binary.PutUvarint(tmp[:], seq)
	dst = binary.AppendUvarint(dst, uint64(1+sl+n))
	dst = append(dst, benchFrame)
	return append(dst, tmp[:sl]...)
}

// benchWriteRaw writes frames 1..n carrying payload through a 32 KiB
// bufio.Writer, then flushes and closes the write side.
func benchWriteRaw(st network.Stream, n int, payload []byte) error {
	bw := bufio.NewWriterSize(st, 32<<10)
	var hdr [24]byte
	for i := 1; i <= n; i++ {
		if _, err := bw.Write(benchHeader(hdr[:0], uint64(i), len(payload))); err != nil {
			return err
		}
		if _, err := bw.Write(payload); err != nil {
			return err
		}
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	return st.CloseWrite()
}

// benchReadRaw reads data frames like the streams frame reader (64 KiB
// bufio.Reader, one reused buffer) until EOF, checks the sequence and calls
// onFrame (if non-nil) for each. It returns the number of frames.
func benchReadRaw(r io.Reader, onFrame func(payload []byte)) (int, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var buf []byte
	next := uint64(1)
	for {
		n, err := binary.ReadUvarint(br)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return int(next - 1), nil
			}
			return int(next - 1), err
		}
		if n == 0 || n > 4<<20 {
			return int(next - 1), fmt.Errorf("bad frame length %d", n)
		}
		if cap(buf) < int(n) {
			buf = make([]byte, n, max(int(n), 4096))
		}
		body := buf[:n]
		if _, err := io.ReadFull(br, body); err != nil {
			return int(next - 1), err
		}
		if body[0] != benchFrame {
			return int(next - 1), fmt.Errorf("frame type %#x", body[0])
		}
		seq, k := binary.Uvarint(body[1:])
		if k <= 0 || seq != next {
			return int(next - 1), fmt.Errorf("sequence %d, want %d", seq, next)
		}
		next++
		if onFrame != nil {
			onFrame(body[1+k:])
		}
	}
}

type benchRawResult struct {
	n   int
	err error
}

// benchRawSink makes h count the frames of every inbound stream on proto;
// each stream's count arrives on done at its EOF.
func benchRawSink(b *testing.B, h host.Host, proto protocol.ID, onFrame func([]byte), done chan<- benchRawResult) {
	h.SetStreamHandler(proto, func(st network.Stream) {
		n, err := benchReadRaw(st, onFrame)
		if err != nil {
			_ = st.Reset()
		} else {
			_ = st.Close()
		}
		done <- benchRawResult{n, err}
	})
	b.Cleanup(func() { h.RemoveStreamHandler(proto) })
}

// ---- pacing -----------------------------------------------------------

// benchWindow bounds the datums in flight from one producer to each of n
// consumers to size: the sender takes one credit of every consumer before
// each batch of benchBatch datums, and a consumer returns one after each
// batch it received. With size equal to the producer queue the queue can
// never overflow, whatever the speed of the pipeline.
type benchWindow struct{ credit []chan struct{} }

func newBenchWindow(n, size int) *benchWindow {
	w := &benchWindow{}
	for range n {
		c := make(chan struct{}, size/benchBatch)
		for range size / benchBatch {
			c <- struct{}{}
		}
		w.credit = append(w.credit, c)
	}
	return w
}

// acquire is called by the sender before datum i (0-based).
func (w *benchWindow) acquire(ctx context.Context, i int) error {
	if i%benchBatch != 0 {
		return nil
	}
	for _, c := range w.credit {
		select {
		case <-c:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// release is called by consumer k after receiving datum i (0-based).
func (w *benchWindow) release(k, i int) {
	if (i+1)%benchBatch == 0 {
		w.credit[k] <- struct{}{}
	}
}

// benchRecvN receives n datums on every consumer (one goroutine each),
// returning credits to w; the error channel yields once all are done.
func benchRecvN(ctx context.Context, cons []*streams.Consumer[[]byte], n, size int, w *benchWindow) <-chan error {
	errc := make(chan error, 1)
	var wg sync.WaitGroup
	var first atomic.Pointer[error]
	fail := func(err error) { first.CompareAndSwap(nil, &err) } // err escapes only on failure
	for k, c := range cons {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range n {
				v, err := c.Recv(ctx)
				if err == nil && len(v) != size {
					err = fmt.Errorf("datum of %d bytes, want %d", len(v), size)
				}
				if err != nil {
					fail(fmt.Errorf("consumer %d after %d of %d datums: %w (producers: %s)", k, i, n, err, benchDescribe(c)))
					return
				}
				if w != nil {
					w.release(k, i)
				}
			}
		}()
	}
	go func() {
		wg.Wait()
		if e := first.Load(); e != nil {
			errc <- *e
		}
		close(errc)
	}()
	return errc
}

func benchDescribe(c *streams.Consumer[[]byte]) string {
	s := ""
	for _, p := range c.Producers() {
		s += fmt.Sprintf("[%v reconnects=%d gaps=%d err=%v]", p.State, p.Stats.Reconnects, p.Stats.Gaps, p.Err)
	}
	return s
}

// benchCPU is the CPU time (user + system) the process used so far. Per
// datum, it is a cost measure that other load on a shared box disturbs far
// less than wall-clock rates.
func benchCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func benchCtx(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), testutil.Scale(d))
}

// ---- (a) 1→1 throughput -----------------------------------------------

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

// ---- (b) fan-out 1→N --------------------------------------------------

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

// ---- (c) latency at 1000 datums/s ---------------------------------------

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

// ---- (d) time to first datum ------------------------------------------

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
			if err := prod.When().Offline(ctx); err != nil {
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

// ---- (f) memory per idle subscription ---------------------------------

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
