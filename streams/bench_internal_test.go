package streams

// Allocation micro-benchmarks of the data path, without a network: the
// producer's real Send, fan-out and writer goroutine writing into a stream
// that discards, and the consumer's real session read loop (frame reader,
// sequence check, decode, delivery) reading frames generated in memory.
// allocs/op count every allocation of the process during the timed loop
// (both goroutines), per datum.

import (
	"context"
	"crypto/rand"
	noopmetric "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace/noop"
	"io"
	"log/slog"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/streams/pb"
)

// benchSinkStream is a network.Stream that discards what is written.
type benchSinkStream struct {
	network.Stream
	written atomic.Int64
}

func (s *benchSinkStream) Write(p []byte) (int, error) {
	s.written.Add(int64(len(p)))
	return len(p), nil
}
func (*benchSinkStream) SetDeadline(time.Time) error                  { return nil }
func (*benchSinkStream) SetWriteDeadline(time.Time) error             { return nil }
func (*benchSinkStream) SetReadDeadline(time.Time) error              { return nil }
func (*benchSinkStream) CloseWrite() error                            { return nil }
func (*benchSinkStream) Close() error                                 { return nil }
func (*benchSinkStream) Reset() error                                 { return nil }
func (*benchSinkStream) ResetWithError(network.StreamErrorCode) error { return nil }

var benchDiscard = slog.New(slog.NewTextHandler(io.Discard, nil))

// BenchmarkSendPath measures Producer.Send of a 64 B datum with the Bytes
// codec and one subscription, through the fan-out, the subscription queue
// and the writer goroutine (header, bufio.Writer, flush) into a discarding
// stream. The sender keeps at most half a queue in flight (spinning with
// Gosched), so the subscription is never cut.
func BenchmarkSendPath(b *testing.B) {
	svc := &Service{params: DefaultParams(), log: benchDiscard}
	cfg, codec, _, err := newProducerConfig[[]byte](svc, []ProducerOption{WithCodec[[]byte](Bytes{})})
	if err != nil {
		b.Fatal(err)
	}
	p := &Producer[[]byte]{svc: svc, codec: codec, cfg: cfg, set: newSubscriptionSet(nil), log: benchDiscard}
	p.set.update(func() { p.set.online = p.Subscribed() })
	p.ctx, p.cancel = context.WithCancel(context.Background())
	defer p.cancel()
	s := newOutSub(&subscription{}, &benchSinkStream{}, cfg.queue)
	p.subs = []*outSub{s}
	p.set.add(s.sub)
	p.set.setState(s.sub, Connected, nil)
	p.subWG.Add(1)
	go p.writer(s)
	defer func() {
		p.mu.Lock()
		p.closed = true
		close(s.q)
		p.mu.Unlock()
		p.subWG.Wait()
	}()
	payload := make([]byte, 64)
	ctx := context.Background()
	inflight := uint64(cfg.queue / 2)
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := range uint64(b.N) {
		for i-s.sub.datums.Load() >= inflight {
			runtime.Gosched()
		}
		if err := p.Send(ctx, payload); err != nil {
			b.Fatal(err)
		}
	}
	for s.sub.datums.Load() < uint64(b.N) {
		runtime.Gosched()
	}
	b.StopTimer()
	if d := s.sub.dropped.Load(); d > 0 {
		b.Fatalf("%d datums dropped", d)
	}
}

// benchGenStream is a network.Stream whose reads produce an Accept frame,
// then data frames 1..total carrying payload, then a Close frame.
type benchGenStream struct {
	network.Stream
	accept, close, payload []byte
	scratch, pend          []byte
	seq, total             uint64
	step                   int // 0: Accept next, 1: data, 2: Close sent
}

func (g *benchGenStream) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if len(g.pend) == 0 {
			switch {
			case g.step == 0:
				g.pend, g.step = g.accept, 1
			case g.seq < g.total:
				g.seq++
				g.scratch = append(dataHeader(g.scratch[:0], g.seq, len(g.payload)), g.payload...)
				g.pend = g.scratch
			case g.step == 1:
				g.pend, g.step = g.close, 2
			default:
				if n > 0 {
					return n, nil
				}
				return 0, io.EOF
			}
		}
		c := copy(p[n:], g.pend)
		g.pend = g.pend[c:]
		n += c
	}
	return n, nil
}

func (*benchGenStream) Write(p []byte) (int, error)                  { return len(p), nil }
func (*benchGenStream) SetDeadline(time.Time) error                  { return nil }
func (*benchGenStream) SetReadDeadline(time.Time) error              { return nil }
func (*benchGenStream) SetWriteDeadline(time.Time) error             { return nil }
func (*benchGenStream) Close() error                                 { return nil }
func (*benchGenStream) Reset() error                                 { return nil }
func (*benchGenStream) ResetWithError(network.StreamErrorCode) error { return nil }

// benchHost hands out one prepared stream.
type benchHost struct {
	host.Host
	st network.Stream
}

func (h *benchHost) NewStream(context.Context, peer.ID, ...protocol.ID) (network.Stream, error) {
	return h.st, nil
}

// Network reports every peer connected (the prepared stream is).
func (h *benchHost) Network() network.Network { return benchNet{} }

type benchNet struct{ network.Network }

func (benchNet) Connectedness(peer.ID) network.Connectedness { return network.Connected }

type benchDiscovery struct {
	Discovery
	nw   catalog.NetworkID
	snap *catalog.Snapshot // a catalog of the local entry alone
}

func (d benchDiscovery) Network() catalog.NetworkID { return d.nw }

func (d benchDiscovery) Catalog() *catalog.Snapshot { return d.snap }

// newBenchDiscovery returns a benchDiscovery of network nw whose catalog
// holds a local entry alone (a session reads it when accepted).
func newBenchDiscovery(b *testing.B, nw catalog.NetworkID) benchDiscovery {
	sk, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	l, err := catalog.NewLocal(sk, nw, time.Now(), nil)
	if err != nil {
		b.Fatal(err)
	}
	st, err := catalog.NewStore(l.Current(), catalog.TestParams())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = st.Close() })
	return benchDiscovery{nw: nw, snap: st.Snapshot()}
}

// BenchmarkRecvPath measures the consumer's receive path for 64 B datums:
// the session read loop (frame reader, sequence check, Decode, delivery
// into the buffer, counters) and Recv by the application goroutine, with
// the Bytes codec (each datum its own []byte: one allocation) and with
// BorrowedBytes (recycled buffers: none).
func BenchmarkRecvPath(b *testing.B) {
	b.Run("codec=Bytes", func(b *testing.B) { benchRecvPath(b, Bytes{}) })
	b.Run("codec=BorrowedBytes", func(b *testing.B) { benchRecvPath(b, BorrowedBytes{}) })
}

func benchRecvPath(b *testing.B, codec Codec[[]byte]) {
	nw, id := catalog.IDFromString("bench-net"), catalog.IDFromString("bench-stream")
	accept, err := appendControl(nil, frameAccept, &pb.Accept{Network: nw[:], Stream: id[:]})
	if err != nil {
		b.Fatal(err)
	}
	gen := &benchGenStream{accept: accept, close: closeFrame(CodeGracefulShutdown, ""),
		payload: make([]byte, 64), total: uint64(b.N)}
	svc := &Service{h: &benchHost{st: gen}, d: newBenchDiscovery(b, nw), params: DefaultParams(), log: benchDiscard, tracer: noop.NewTracerProvider().Tracer("bench")}
	if _, err := svc.registerMetrics(noopmetric.NewMeterProvider()); err != nil {
		b.Fatal(err)
	}
	cfg, codec, err := newConsumerConfig[[]byte]([]ConsumerOption{WithCodec[[]byte](codec)})
	if err != nil {
		b.Fatal(err)
	}
	c := &Consumer[[]byte]{svc: svc, id: id, codec: codec, cfg: cfg, set: newSubscriptionSet(nil), log: benchDiscard,
		out: newInbox[[]byte](cfg.buffer), refused: map[peer.ID]refusal{}, retries: map[peer.ID]retry{}}
	_, c.borrow = codec.(borrower)
	c.ctx, c.cancel = context.WithCancel(context.Background())
	defer c.cancel()
	r := &receiver{sub: &subscription{stream: id, entry: &catalog.SignedEntry{}, state: Connecting}, done: make(chan struct{})}
	c.set.add(r.sub)
	ctx := context.Background()
	b.SetBytes(int64(len(gen.payload)))
	b.ReportAllocs()
	b.ResetTimer()
	errc := make(chan error, 1)
	var out sessionOutcome
	go func() { errc <- c.session(c.ctx, r, &out) }()
	for range b.N {
		v, err := c.Recv(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if len(v) != 64 {
			b.Fatalf("datum of %d bytes", len(v))
		}
	}
	b.StopTimer()
	if code, ok := codeOf(<-errc); !ok || code != CodeGracefulShutdown {
		b.Fatalf("session ended with code %v", code)
	}
	if got := r.sub.datums.Load(); got != uint64(b.N) {
		b.Fatalf("%d datums counted, want %d", got, b.N)
	}
}
