package harness

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/catalog/discovery"
	"github.com/mosaik-go/mosaik/node"
	"github.com/mosaik-go/mosaik/streams"
)

// mosaik streams: node.New on a host of newHost (borrowed, so every libp2p
// system runs on identical hosts), default discovery parameters without
// cascade dialling, default streams parameters, no DHT (streams do not use
// it), codec streams.Bytes. The
// producer runs on the first node, one consumer on each other node, each
// node bootstrapped from the first.

var (
	quiet      = slog.New(slog.DiscardHandler)
	networkSeq atomic.Int64
)

func freshNetwork() string {
	return fmt.Sprintf("mosaik-bench-%d-%d", time.Now().UnixNano(), networkSeq.Add(1))
}

func bytesCodec() streams.CodecOption[[]byte] { return streams.WithCodec[[]byte](streams.Bytes{}) }

type mosaikSystem struct{}

func (mosaikSystem) name() string { return "mosaik" }

// mosaikDrop is mosaik with streams.WithDropLagging: datums are dropped for
// a lagging consumer (counted, seen as gaps) instead of cutting it.
type mosaikDrop struct{ mosaikSystem }

func (mosaikDrop) name() string { return "mosaik-drop" }

func (s mosaikDrop) open(ctx context.Context, o openOpts) (session, error) {
	o.variant = "drop"
	return s.mosaikSystem.open(ctx, o)
}

// mosaikBorrowed is mosaik with consumers on streams.BorrowedBytes: each
// datum is read into a recycled buffer, valid until the next Recv (the
// harness only counts datums and reads their timestamp before the next
// Recv). The producer is unchanged (same wire format).
type mosaikBorrowed struct{ mosaikSystem }

func (mosaikBorrowed) name() string { return "mosaik-borrowed" }

func (s mosaikBorrowed) open(ctx context.Context, o openOpts) (session, error) {
	o.variant = "borrowed"
	return s.mosaikSystem.open(ctx, o)
}

type mosaikSession struct {
	hosts  []host.Host
	nodes  []*node.Node
	prod   *streams.Producer[[]byte]
	cons   []*streams.Consumer[[]byte]
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
	err    error
}

func (mosaikSystem) open(ctx context.Context, o openOpts) (_ session, err error) {
	hs, err := newHosts(1 + o.subs)
	if err != nil {
		return nil, err
	}
	s := &mosaikSession{hosts: hs}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			_ = s.close()
		}
	}()
	net := freshNetwork()
	// Default discovery parameters but no cascade dialling: consumer nodes
	// connect to the producer node only, the star every system gets (the
	// cascade speeds up discovery, which these rows do not measure, and
	// costs N × 8 extra connections).
	dp := discovery.DefaultParams()
	dp.CascadeBelow = 0
	base := []node.Option{node.WithoutDHT(), node.WithLogger(quiet), node.WithDiscoveryParams(dp)}
	n0, err := node.New(net, append(base, node.WithHost(hs[0]))...)
	if err != nil {
		return nil, err
	}
	s.nodes = append(s.nodes, n0)
	popts := []streams.ProducerOption{bytesCodec()}
	if o.variant == "drop" {
		popts = append(popts, streams.WithDropLagging())
	}
	if o.variant == "replay" {
		popts = append(popts, streams.WithReplay(benchReplay))
	}
	// The producer exists before the consumer nodes join, so that their
	// first catalog sync already holds it.
	if s.prod, err = streams.NewProducer[[]byte](n0.Streams(), "bench", popts...); err != nil {
		return nil, err
	}
	for _, h := range hs[1:] {
		n, err := node.New(net, append(base, node.WithHost(h), node.WithBootstrapPeers(addrInfo(hs[0])))...)
		if err != nil {
			return nil, err
		}
		s.nodes = append(s.nodes, n)
		copts := []streams.ConsumerOption{bytesCodec()}
		if o.variant == "borrowed" {
			copts = []streams.ConsumerOption{streams.WithCodec[[]byte](streams.BorrowedBytes{})}
		}
		c, err := streams.NewConsumer[[]byte](n.Streams(), "bench", copts...)
		if err != nil {
			return nil, err
		}
		s.cons = append(s.cons, c)
	}
	if err := s.ready(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// ready waits until the producer has every consumer connected.
func (s *mosaikSession) ready(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		cs := s.prod.Consumers()
		n := 0
		for _, c := range cs {
			if c.State == streams.Connected {
				n++
			}
		}
		if n == len(s.cons) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("mosaik: %d of %d consumers connected: %w", n, len(s.cons), ctx.Err())
		case <-time.After(2 * time.Millisecond): // polling the producer's consumers
		}
	}
}

func (s *mosaikSession) start(deliver func(int, []byte)) {
	for i, c := range s.cons {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			for {
				v, err := c.Recv(s.ctx)
				if err != nil {
					return
				}
				deliver(i, v)
			}
		}()
	}
}

func (s *mosaikSession) send(ctx context.Context, p []byte) error { return s.prod.Send(ctx, p) }

// signals: a consumer learns that it was cut (SubscriptionInfo.Err carries
// TooSlow while it reconnects, Stats.Reconnects counts the cut) or, in drop
// mode, sees gaps; the producer counts the datums it could not queue
// (HandleInfo.Totals.Dropped).
func (s *mosaikSession) signals() []signal {
	var tooSlow, reconnects, gaps int64
	for _, c := range s.cons {
		gaps += int64(c.Stats().Gaps)
		for _, p := range c.Producers() {
			reconnects += int64(p.Stats.Reconnects)
			var ce *streams.CodeError
			if errors.As(p.Err, &ce) && ce.Code == streams.CodeTooSlow {
				tooSlow++
			}
		}
	}
	var dropped int64
	for _, h := range s.nodes[0].Streams().Handles() {
		if h.Role == streams.RoleProducer {
			dropped += int64(h.Totals.Dropped)
		}
	}
	return []signal{
		{"consumer Err=TooSlow", tooSlow, false, true},
		{"consumer Reconnects", reconnects, true, true},
		{"consumer Gaps", gaps, true, true},
		{"producer Dropped", dropped, true, true},
	}
}

func (s *mosaikSession) close() error {
	s.once.Do(func() {
		var errs []error
		for _, c := range s.cons {
			errs = append(errs, c.Close())
		}
		s.cancel()
		s.wg.Wait()
		if s.prod != nil {
			errs = append(errs, s.prod.Close())
		}
		// Each node's Close waits for its departure to be sent: close
		// them together.
		nerrs := make([]error, len(s.nodes))
		closeAll(len(s.nodes), func(i int) { nerrs[i] = s.nodes[i].Close() })
		errs = append(errs, nerrs...)
		errs = append(errs, closeHosts(s.hosts))
		s.err = errors.Join(errs...)
	})
	return s.err
}

// firstDatum: the producer runs on one node and is in the other node's
// catalog; each operation calls NewConsumer and waits for its first datum.
// A goroutine blocked in Send (which waits until the producer is online)
// sends as soon as the subscription is accepted. Between operations the
// consumer is closed and the producer seen offline (untimed).
func (mosaikSystem) firstDatum(ctx context.Context, ops int, sample func(time.Duration)) error {
	ss, err := mosaikSystem{}.open(ctx, openOpts{subs: 1})
	if err != nil {
		return err
	}
	s := ss.(*mosaikSession)
	defer func() { _ = s.close() }()
	// Keep only the producer: its entry stays in the consumer node's catalog.
	_ = s.cons[0].Close()
	if err := s.prod.WaitOffline(ctx); err != nil {
		return err
	}
	payload := make([]byte, 64)
	for range ops {
		if err := mosaikFirstOp(ctx, s, payload, sample); err != nil {
			return err
		}
	}
	return nil
}

// mosaikFirstOp is one operation of firstDatum, bounded in time.
func mosaikFirstOp(ctx context.Context, s *mosaikSession, payload []byte, sample func(time.Duration)) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel() // also ends the Send below if NewConsumer fails
	sent := make(chan error, 1)
	go func() { sent <- s.prod.Send(ctx, payload) }()
	start := time.Now()
	c, err := streams.NewConsumer[[]byte](s.nodes[1].Streams(), "bench", bytesCodec())
	if err != nil {
		return err
	}
	_, err = c.Recv(ctx)
	if err == nil {
		sample(time.Since(start))
	}
	_ = c.Close()
	if serr := <-sent; err == nil {
		err = serr
	}
	if err != nil {
		return err
	}
	return s.prod.WaitOffline(ctx)
}

// mosaikDiscovery: nodes with node.New defaults (default discovery
// parameters, gossipsub, sync-on-connect and the kad-dht) on hosts of
// newHost (127.0.0.1 TCP only: the standalone node's stack without QUIC),
// each bootstrapped from the first. The hosts are borrowed so that
// teardown closes every node before any host (see newHost for the
// go-libp2p Close deadlock this avoids).
type mosaikDiscovery struct{}

func (mosaikDiscovery) name() string { return "mosaik" }

func (mosaikDiscovery) converge(ctx context.Context, n int, limit time.Duration) (convergence, error) {
	net := freshNetwork()
	var (
		hosts []host.Host
		nodes []*node.Node
	)
	defer func() {
		closeAll(len(nodes), func(i int) { _ = nodes[i].Close() })
		_ = closeHosts(hosts)
	}()
	tr := newConvTrace()
	start1 := func(opts ...node.Option) (nd *node.Node, err error) {
		i := len(nodes)
		profLabel(i, func() {
			var h host.Host
			if h, err = newHost(); err != nil {
				return
			}
			hosts = append(hosts, h)
			tr.started(i, h.ID().String())
			var boot peer.ID
			if i > 0 {
				boot = hosts[0].ID()
			}
			tr.watch(i, h, boot)
			nd, err = node.New(net, append([]node.Option{node.WithHost(h), node.WithLogger(tr.logger(i))}, opts...)...)
		})
		if err != nil {
			return nil, err
		}
		tr.built(i)
		nodes = append(nodes, nd)
		return nd, nil
	}
	boot, err := start1()
	if err != nil {
		return convergence{}, err
	}
	start, u0 := time.Now(), processUsage()
	tr.profileWindow(n)
	for range n - 1 {
		if _, err := start1(node.WithBootstrapPeers(boot.AddrInfo())); err != nil {
			return convergence{}, err
		}
	}
	started := time.Since(start)
	stop := tr.cpuTo99(n, start, func(i int) int { return nodes[i].Catalog().Len() + 1 })
	defer stop()
	c, err := pollDiscovery(ctx, start, u0, n, limit, func(i int) int { return nodes[i].Catalog().Len() + 1 })
	c.started = started
	tr.connected(hosts)
	tr.dump(os.Stderr, n, c)
	if err != nil {
		return c, fmt.Errorf("mosaik N=%d: %w", n, err)
	}
	return c, nil
}

// pollDiscovery polls known(i), the number of nodes node i knows (itself
// included), for all n nodes every millisecond, and returns when 99 % of
// the n² pairs were first known and when all were, or limit after start,
// and what the process used from start (u0 is processUsage then) to 99 %.
func pollDiscovery(ctx context.Context, start time.Time, u0 usage, n int, limit time.Duration, known func(int) int) (convergence, error) {
	var c convergence
	want99 := int(0.99 * float64(n*n))
	for {
		sum := 0
		for i := range n {
			sum += min(known(i), n)
		}
		now := time.Now()
		if c.p99 == 0 && sum >= want99 {
			c.p99 = now.Sub(start)
			u := processUsage()
			c.cpu99, c.faults99 = u.cpu-u0.cpu, u.faults-u0.faults
		}
		if sum == n*n {
			c.all = now.Sub(start)
			return c, nil
		}
		if now.Sub(start) >= limit {
			c.all, c.capped = limit, true
			if c.p99 == 0 {
				c.p99, c.capped99 = limit, true
			}
			return c, nil
		}
		select {
		case <-ctx.Done():
			return c, ctx.Err()
		case <-time.After(time.Millisecond): // polling interval of the convergence check
		}
	}
}

// closeAll runs f(0..n-1) concurrently and waits.
func closeAll(n int, f func(int)) {
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() { defer wg.Done(); f(i) }()
	}
	wg.Wait()
}
