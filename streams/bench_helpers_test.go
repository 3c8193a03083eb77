package streams_test

// Nodes, raw libp2p baselines and pacing shared by the benchmarks in
// bench_test.go.

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
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

func benchBytes() streams.CodecOption[[]byte] { return streams.WithCodec[[]byte](streams.Bytes{}) }

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
	}, "producer has %d consumers, want %d connected", testutil.Lazy(func() any { return len(prod.Consumers()) }), n)
}

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

func benchCtx(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), testutil.Scale(d))
}
