package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/groups"
	"github.com/mosaik-go/mosaik/node"
	"github.com/mosaik-go/mosaik/streams"
)

// Stream names and the group's secret. Anyone who knows the secret (and
// runs the same book, see Signature) can join as a matcher.
const (
	ordersStream = "orderbook.orders"
	fillsStream  = "orderbook.fills"
	bookSecret   = "orderbook example book"
)

// Summary is what a run found; the test checks it.
type Summary struct {
	Orders      int      // orders the book took
	Fills       []Fill   // every fill, from a strong query at the end
	Taped       int      // distinct fills the tape received
	Resting     int      // orders left in the book
	Leaders     []string // the leaders seen, in order (short peer ids)
	Consistent  bool     // every live matcher's book equals the leader's
	Setup, Took time.Duration
}

// matcher is a member of the order book group: it takes orders from the
// stream into the log, and while it leads, publishes new fills.
type matcher struct {
	n      *node.Node
	g      *groups.Group[Order, FillsSince, Fills]
	orders *streams.Consumer[Order]
	fills  *streams.Producer[Fill]
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed bool
}

// intake executes every order it receives. Every matcher does, and the
// book ignores an order id it has seen, so an order is taken exactly once
// even while a leader is replaced.
func (m *matcher) intake(ctx context.Context) {
	defer m.wg.Done()
	for {
		o, err := m.orders.Recv(ctx)
		if err != nil {
			return
		}
		for {
			_, err := m.g.Execute(ctx, o)
			if err == nil || ctx.Err() != nil {
				break
			}
			if !errors.Is(err, groups.ErrOffline) && !errors.Is(err, groups.ErrNotApplied) {
				return // the group ended on this node
			}
			// No leader right now (an election): retry shortly.
			select {
			case <-ctx.Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
}

// publish sends new fills while this matcher leads. A strong query reads
// the book at a linearizable point, so a deposed leader cannot publish
// fills the group never made. A new leader starts from what it published
// itself; the tape drops fills it already has by their Seq.
func (m *matcher) publish(ctx context.Context) {
	defer m.wg.Done()
	var published uint64
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !m.g.IsLeader() {
			continue
		}
		qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		res, _, err := m.g.Query(qctx, FillsSince{After: published}, groups.Strong)
		cancel()
		if err != nil {
			continue
		}
		for _, f := range res.Fills {
			if err := m.fills.Send(ctx, f); err != nil {
				break
			}
			published = f.Seq
		}
	}
}

func (m *matcher) close() {
	if m.closed {
		return
	}
	m.closed = true
	m.cancel()
	_ = m.orders.Close()
	m.wg.Wait()
	_ = m.fills.Close()
	_ = m.g.Close()
	_ = m.n.Close()
}

// tape prints each fill once, in Seq order.
type tape struct {
	c    *streams.Consumer[Fill]
	w    io.Writer
	mu   sync.Mutex
	seen map[uint64]bool
	n    atomic.Int64
	done chan struct{}
}

func (t *tape) read(ctx context.Context) {
	defer close(t.done)
	for {
		f, err := t.c.Recv(ctx)
		if err != nil {
			return
		}
		t.mu.Lock()
		if !t.seen[f.Seq] {
			t.seen[f.Seq] = true
			t.n.Add(1)
			fmt.Fprintf(t.w, "  fill %3d  %3d @ %d  buy %-6s sell %-6s (log index %d)\n", f.Seq, f.Qty, f.Price, f.Buy, f.Sell, f.Index)
		}
		t.mu.Unlock()
	}
}

// run starts the network, trades, optionally replaces the leader, checks
// the books and returns the summary.
func run(ctx context.Context, cfg config, w io.Writer) (sum Summary, err error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	var closers []func()
	defer func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}()
	start := time.Now()
	quiet := slog.New(slog.DiscardHandler)
	newNode := func(boot *node.Node, tags ...string) (*node.Node, error) {
		opts := []node.Option{node.WithListenAddrs("/ip4/127.0.0.1/tcp/0"), node.WithFastProfile(), node.WithoutDHT(),
			node.WithLogger(quiet), node.WithTags(tags...)}
		if boot != nil {
			opts = append(opts, node.WithBootstrapPeers(boot.AddrInfo()))
		}
		return node.New(cfg.Network, opts...)
	}

	fmt.Fprintf(w, "starting %d matchers, %d traders and a tape on 127.0.0.1\n", cfg.Matchers, cfg.Traders)
	var matchers []*matcher
	mctx, mcancel := context.WithCancel(ctx)
	defer mcancel()
	var boot *node.Node
	for i := range cfg.Matchers {
		n, err := newNode(boot, "matcher")
		if err != nil {
			return sum, err
		}
		if boot == nil {
			boot = n
		}
		m := &matcher{n: n}
		closers = append(closers, m.close)
		// Every matcher joins with the same secret and the same book:
		// the same group id, so they bond and elect a leader by themselves.
		if m.g, err = groups.Join[Order, FillsSince, Fills](n.Groups(), groups.KeyFromSecret(bookSecret), newBook()); err != nil {
			return sum, err
		}
		if m.orders, err = streams.NewConsumer[Order](n.Streams(), ordersStream); err != nil {
			return sum, err
		}
		if m.fills, err = streams.NewProducer[Fill](n.Streams(), fillsStream); err != nil {
			return sum, err
		}
		c, cc := context.WithCancel(mctx)
		m.cancel = cc
		m.wg.Add(2)
		go m.intake(c)
		go m.publish(c)
		matchers = append(matchers, m)
		fmt.Fprintf(w, "matcher %d  %s\n", i+1, short(n.ID().String()))
	}

	tn, err := newNode(boot, "tape")
	if err != nil {
		return sum, err
	}
	closers = append(closers, func() { _ = tn.Close() })
	tc, err := streams.NewConsumer[Fill](tn.Streams(), fillsStream)
	if err != nil {
		return sum, err
	}
	tp := &tape{c: tc, w: w, seen: map[uint64]bool{}, done: make(chan struct{})}
	go tp.read(ctx)
	closers = append(closers, func() { _ = tc.Close(); <-tp.done })

	var traders []*streams.Producer[Order]
	for i := range cfg.Traders {
		n, err := newNode(boot, "trader")
		if err != nil {
			return sum, err
		}
		closers = append(closers, func() { _ = n.Close() })
		p, err := streams.NewProducer[Order](n.Streams(), ordersStream)
		if err != nil {
			return sum, err
		}
		closers = append(closers, func() { _ = p.Close() })
		traders = append(traders, p)
		fmt.Fprintf(w, "trader  %d  %s\n", i+1, short(n.ID().String()))
	}

	// Ready: a leader, every trader heard by every matcher, the tape on
	// every matcher's fills.
	leader, err := matchers[0].g.When().LeaderElected(ctx)
	if err != nil {
		return sum, fmt.Errorf("no leader elected: %w", err)
	}
	sum.Leaders = append(sum.Leaders, short(leader.String()))
	matcherTag := catalog.IDFromString("matcher")
	for _, p := range traders {
		if err := p.Subscribed().WithTags(matcherTag).MinimumOf(cfg.Matchers).Wait(ctx); err != nil {
			return sum, fmt.Errorf("matchers did not subscribe to the orders: %w", err)
		}
	}
	for _, m := range matchers {
		if err := m.fills.Subscribed().Wait(ctx); err != nil {
			return sum, fmt.Errorf("the tape did not subscribe to the fills: %w", err)
		}
	}
	sum.Setup = time.Since(start)
	fmt.Fprintf(w, "ready after %v: leader %s\n\n", sum.Setup.Round(time.Millisecond), short(leader.String()))

	total := cfg.Traders * cfg.Orders
	var twg sync.WaitGroup
	sendErr := make(chan error, len(traders))
	for i, p := range traders {
		twg.Add(1)
		go func() {
			defer twg.Done()
			for k := range cfg.Orders {
				if err := p.Send(ctx, orderOf(i, k)); err != nil {
					sendErr <- fmt.Errorf("trader %d: %w", i+1, err)
					return
				}
				time.Sleep(10 * time.Millisecond) // a trader's pace, so the failover lands mid-stream
			}
		}()
	}

	live := matchers
	if cfg.Failover {
		// Once half the orders are in the book, close the leader's node.
		if err := waitOrders(ctx, live, total/2); err != nil {
			return sum, err
		}
		var old *matcher
		for _, m := range live {
			if m.g.IsLeader() {
				old = m
			}
		}
		if old != nil {
			fmt.Fprintf(w, "\nclosing the leader %s half-way; the other matchers elect a new one and keep taking orders\n\n", short(old.n.ID().String()))
			oldID := old.n.ID()
			old.close()
			live = slices.DeleteFunc(slices.Clone(live), func(m *matcher) bool { return m == old })
			nl, err := live[0].g.When().LeaderOtherThan(ctx, oldID)
			if err != nil {
				return sum, fmt.Errorf("no new leader: %w", err)
			}
			sum.Leaders = append(sum.Leaders, short(nl.String()))
			fmt.Fprintf(w, "\nnew leader %s\n\n", short(nl.String()))
		}
	}
	twg.Wait()
	select {
	case err := <-sendErr:
		return sum, err
	default:
	}
	if err := waitOrders(ctx, live, total); err != nil {
		return sum, err
	}
	res, at, err := live[0].g.Query(ctx, FillsSince{}, groups.Strong)
	if err != nil {
		return sum, err
	}
	sum.Orders, sum.Fills, sum.Resting = res.Orders, res.Fills, res.Resting
	// Every live matcher applies up to the same index and holds the same
	// book.
	sum.Consistent = true
	for _, m := range live {
		if err := m.g.When().Committed(ctx, at); err != nil {
			return sum, err
		}
		r, _, err := m.g.Query(ctx, FillsSince{}, groups.Weak)
		if err != nil {
			return sum, err
		}
		if r.Orders != res.Orders || r.Resting != res.Resting || !slices.Equal(r.Fills, res.Fills) {
			sum.Consistent = false
		}
	}
	for int(tp.n.Load()) < len(res.Fills) {
		select {
		case <-ctx.Done():
			return sum, fmt.Errorf("the tape has %d of %d fills: %w", tp.n.Load(), len(res.Fills), ctx.Err())
		case <-time.After(20 * time.Millisecond): // polling the tape's count
		}
	}
	sum.Taped = int(tp.n.Load())
	sum.Took = time.Since(start)
	var volume uint64
	for _, f := range res.Fills {
		volume += f.Qty
	}
	fmt.Fprintf(w, "\nsummary: %d orders taken, %d fills (volume %d), %d orders resting; leaders %v; books equal on %d matchers: %v; %v in all\n",
		sum.Orders, len(sum.Fills), volume, sum.Resting, sum.Leaders, len(live), sum.Consistent, sum.Took.Round(time.Millisecond))
	return sum, nil
}

// waitOrders waits until the book has taken n orders, by strong queries
// through any live matcher.
func waitOrders(ctx context.Context, ms []*matcher, n int) error {
	for {
		for _, m := range ms {
			qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			res, _, err := m.g.Query(qctx, FillsSince{After: ^uint64(0)}, groups.Strong)
			cancel()
			if err == nil && res.Orders >= n {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %d orders in the book: %w", n, ctx.Err())
		case <-time.After(20 * time.Millisecond): // polling the book
		}
	}
}

// orderOf is trader i's k-th order: buys and sells alternate around a
// price of 100 so that about half of them cross.
func orderOf(i, k int) Order {
	side := Buy
	if (i+k)%2 == 1 {
		side = Sell
	}
	price := uint64(100 + (k*7+i*3)%9 - 4)
	return Order{ID: fmt.Sprintf("t%d-%d", i+1, k+1), Trader: fmt.Sprintf("t%d", i+1), Side: side, Price: price, Qty: uint64(1 + (k*5+i)%10)}
}

func short(s string) string {
	if len(s) <= 10 {
		return s
	}
	return "…" + s[len(s)-6:]
}
