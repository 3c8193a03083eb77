// Package demo runs the mosaik-go reference node's local demonstration: a
// small network in one process on 127.0.0.1 that streams typed data from
// two tagged producers to consumers of three different policies, loses one
// producer half-way and shows who fails over. cmd/mosaik-node's "demo"
// command calls it; it lives here so that it is tested.
//
// # Layout
//
//	bootstrap   no tags; every other node is given only its address
//	eu          producer of "prices", tag "eu"
//	us          producer of "prices", tag "us", holds a ticket signed by the demo issuer
//	tag-eu      consumer, streams.WithRequireTags("eu")
//	rtt         consumer, streams.WithMaxRTT(Config.MaxRTT, 50 ms by default)
//	ticket      consumer, streams.WithTicketValidators(policy.NewSignedTicketValidator(network, issuer))
//	any-1 …     consumers without a policy, one per extra node (Config.Nodes)
//
// Both producers send Rate datums per second. At Duration/2 the eu producer
// closes: tag-eu loses its only eligible producer and idles (its policy
// excludes us), rtt and any-N carry on with us, ticket never used eu.
//
// The rtt consumer admits only producers whose smoothed RTT, as its node
// measured it, is below MaxRTT. On 127.0.0.1 that is normally well under a
// millisecond, but on a loaded machine (or under the race detector) samples
// can exceed 50 ms: the demo then says so and carries on with the producers
// the rtt consumer has.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/node"
	"github.com/mosaik-go/mosaik/policy"
	"github.com/mosaik-go/mosaik/streams"
)

// fixedNodes is the demo's fixed layout: bootstrap, 2 producers, 3 consumers.
const fixedNodes = 6

// maxExtra bounds Config.Nodes so that the live output stays readable.
const maxExtra = 26

// stream is the name of the demo stream.
const stream = "prices"

// Config tunes the demo. The zero value runs the default demo.
type Config struct {
	// Nodes is the number of extra nodes beyond the fixed layout of six
	// (bootstrap, 2 producers, 3 policy consumers); each runs a consumer
	// without a policy, "any-1" … "any-N". Within [0, 26], default 0.
	Nodes int
	// Network is the network name (default "mosaik-demo").
	Network string
	// Duration is how long data streams once every consumer is subscribed;
	// the eu producer stops at Duration/2 (default 10 s, at least 2 s).
	Duration time.Duration
	// MaxRTT is the rtt consumer's bound (default 50 ms).
	MaxRTT time.Duration
	// Rate is the number of datums each producer sends per second
	// (default 200, at most 1000).
	Rate int
	// Timeout bounds the setup: until every consumer is subscribed to the
	// producers its policy admits (default 15 s).
	Timeout time.Duration
	// Logger receives the library logs (default: discarded).
	Logger *slog.Logger
}

func (c *Config) setDefaults() error {
	if c.Nodes < 0 || c.Nodes > maxExtra {
		return fmt.Errorf("demo: extra nodes must be within [0, %d], got %d", maxExtra, c.Nodes)
	}
	if c.Network == "" {
		c.Network = "mosaik-demo"
	}
	if c.Duration == 0 {
		c.Duration = 10 * time.Second
	}
	if c.Duration < 2*time.Second {
		return fmt.Errorf("demo: duration must be at least 2s, got %v", c.Duration)
	}
	if c.MaxRTT == 0 {
		c.MaxRTT = 50 * time.Millisecond
	}
	if c.MaxRTT < 0 {
		return fmt.Errorf("demo: max RTT must be > 0, got %v", c.MaxRTT)
	}
	if c.Rate == 0 {
		c.Rate = 200
	}
	if c.Rate < 1 || c.Rate > 1000 {
		return fmt.Errorf("demo: rate must be within [1, 1000] datums/s, got %d", c.Rate)
	}
	if c.Timeout == 0 {
		c.Timeout = 15 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Summary is what the demo observed, for callers (and tests) that check
// data rather than text.
type Summary struct {
	Network   string
	Setup     time.Duration // from the start until every consumer was subscribed
	Elapsed   time.Duration // length of the streaming phase
	Stopped   string        // label of the producer stopped half-way ("eu")
	StoppedAt time.Duration // when, from the start of the streaming phase
	// Failover is the time from the stop until no consumer held a connected
	// channel to the stopped producer (0 if not observed).
	Failover  time.Duration
	Producers []ProducerSummary
	Consumers []ConsumerSummary
}

// ProducerSummary describes one producer.
type ProducerSummary struct {
	Label    string // "eu" or "us", also its tag and the datums' From
	Peer     peer.ID
	Ticketed bool   // holds the demo issuer's ticket
	Sent     uint64 // datums accepted by TrySend
}

// ConsumerSummary describes one consumer.
type ConsumerSummary struct {
	Name      string // "tag-eu", "rtt", "ticket", "any-1", …
	Policy    string // the options that make its policy
	Peer      peer.ID
	Received  uint64            // datums read by the application
	AfterStop uint64            // of which after the producer stopped sending (its queued datums included)
	From      map[string]uint64 // datums per producer label
	// Seen lists the labels of every producer the consumer ever had a
	// channel to, in any state (sampled every few ms), plus the sources of
	// the datums it read; sorted.
	Seen []string
	// Gaps is the sum of the gaps streams reported (ChannelInfo.Stats.Gaps).
	Gaps uint64
	// SeqGaps counts Seq numbers the application saw skipped per producer,
	// which also covers datums lost across resubscriptions.
	SeqGaps uint64
}

// Consumer returns the summary of the consumer named name.
func (s Summary) Consumer(name string) (ConsumerSummary, bool) {
	for _, c := range s.Consumers {
		if c.Name == name {
			return c, true
		}
	}
	return ConsumerSummary{}, false
}

// Run runs the demo, narrating it to w, and closes every producer, consumer
// and node before returning. It returns nil about Duration plus the setup
// time (well under a second on an idle machine) after it starts. It fails
// when a consumer does not subscribe within Timeout; when ctx ends while
// data streams, it prints the summary so far and returns ctx.Err().
func Run(ctx context.Context, w io.Writer, cfg Config) error {
	_, err := RunSummary(ctx, w, cfg)
	return err
}

// price is the datum of the demo stream, sent with the default CBOR codec.
type price struct {
	Symbol string
	Cents  int64
	Seq    uint64 // per producer, from 1
	From   string // the producer's label
}

type producerRun struct {
	label    string
	node     *node.Node
	p        *streams.Producer[price]
	ticketed bool
	sent     atomic.Uint64
	cancel   context.CancelFunc
	done     chan struct{}
}

// send sends rate datums per second until ctx ends, catching up on ticks
// the scheduler delayed so that the rate stays steady. It never blocks on
// consumers: TrySend fails with ErrOffline while nobody is subscribed.
func (p *producerRun) send(ctx context.Context, rate int, seed uint64) {
	defer close(p.done)
	rng := rand.New(rand.NewPCG(seed, seed))
	t := time.NewTicker(time.Second / time.Duration(rate))
	defer t.Stop()
	start := time.Now()
	v := price{Symbol: "ETH", Cents: 350_000, From: p.label}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		due := uint64(time.Since(start).Seconds() * float64(rate))
		for v.Seq < due {
			v.Seq++
			v.Cents += rng.Int64N(201) - 100
			if p.p.TrySend(v) == nil {
				p.sent.Add(1)
			}
		}
	}
}

type consumerRun struct {
	name, policy string
	node         *node.Node
	c            *streams.Consumer[price]
	expect       []string      // labels of the producers its policy admits
	maxRTT       time.Duration // the RTT bound of its policy, if any
	done         chan struct{}

	total atomic.Uint64 // datums read
	mu    sync.Mutex    // guards the fields below
	from  map[string]uint64
	last  map[string]uint64 // last Seq per producer label
	gaps  uint64            // application-level Seq gaps
	after uint64            // datums read after the stop
	stop  bool              // the producer has stopped

	// Maintained by the sampling loop only (one goroutine).
	seen             map[peer.ID]bool
	gapLast, gapBase map[peer.ID]uint64
	lastPrint        uint64 // total at the previous live line
}

// read takes datums until the consumer is closed and drained.
func (c *consumerRun) read() {
	defer close(c.done)
	for {
		v, err := c.c.Recv(context.Background()) // ends with ErrClosed: Close is the reader's stop signal
		if err != nil {
			return
		}
		c.total.Add(1)
		c.mu.Lock()
		c.from[v.From]++
		if l, ok := c.last[v.From]; ok && v.Seq > l+1 {
			c.gaps += v.Seq - l - 1
		}
		c.last[v.From] = v.Seq
		if c.stop {
			c.after++
		}
		c.mu.Unlock()
	}
}

// sample records the producers the consumer has channels to and the gaps
// streams reports. A channel's gap count restarts with a new channel, so a
// decrease starts a new base.
func (c *consumerRun) sample() []streams.ChannelInfo {
	infos := c.c.Producers()
	for _, ci := range infos {
		c.seen[ci.Peer] = true
		if g := ci.Stats.Gaps; g < c.gapLast[ci.Peer] {
			c.gapBase[ci.Peer] += c.gapLast[ci.Peer]
		}
		c.gapLast[ci.Peer] = ci.Stats.Gaps
	}
	return infos
}

func (c *consumerRun) connected(infos []streams.ChannelInfo) []peer.ID {
	var out []peer.ID
	for _, ci := range infos {
		if ci.State == streams.Connected {
			out = append(out, ci.Peer)
		}
	}
	return out
}

// demo is one run: what it started, in order, so that it can be closed in
// reverse.
type demo struct {
	cfg      Config
	w        io.Writer
	start    time.Time
	closers  []func() error
	bootNode *node.Node
	names    map[peer.ID]string // producer labels
	prods    []*producerRun
	cons     []*consumerRun
}

func (d *demo) say(format string, args ...any) {
	fmt.Fprintf(d.w, "[%7.3fs] %s\n", time.Since(d.start).Seconds(), fmt.Sprintf(format, args...))
}

func (d *demo) own(f func() error) { d.closers = append(d.closers, f) }

func (d *demo) close() error {
	var errs []error
	for i := len(d.closers) - 1; i >= 0; i-- {
		errs = append(errs, d.closers[i]())
	}
	d.closers = nil
	return errors.Join(errs...)
}

func (d *demo) label(p peer.ID) string {
	if l, ok := d.names[p]; ok {
		return l
	}
	return short(p.String())
}

// RunSummary is Run that also returns what the demo observed. The summary
// is filled in as far as the demo got, also on error.
func RunSummary(ctx context.Context, w io.Writer, cfg Config) (sum Summary, err error) {
	if err := cfg.setDefaults(); err != nil {
		return Summary{}, err
	}
	d := &demo{cfg: cfg, w: w, start: time.Now(), names: map[peer.ID]string{}}
	defer func() {
		if cerr := d.close(); cerr != nil && err == nil {
			err = fmt.Errorf("demo: close: %w", cerr)
		}
	}()
	sum.Network = cfg.Network

	fmt.Fprintf(w, "mosaik-go streams demo: %d nodes on 127.0.0.1 (TCP), network %q (%s)\n",
		fixedNodes+cfg.Nodes, cfg.Network, catalog.IDFromString(cfg.Network).Short())
	fmt.Fprintf(w, "stream %q: {Symbol, Cents, Seq, From} in CBOR, %d datums/s from each producer for %v; producer eu stops half-way\n\n",
		stream, cfg.Rate, cfg.Duration)

	if err := d.setup(ctx); err != nil {
		return sum, err
	}
	if err := d.waitSubscribed(ctx); err != nil {
		return sum, err
	}
	sum.Setup = time.Since(d.start)
	sum.Stopped = "eu"
	streamErr := d.stream(ctx, &sum)
	d.finish(&sum)
	d.printSummary(sum)
	if streamErr != nil {
		return sum, streamErr
	}
	fmt.Fprintln(w, "\ndone. Next: `go test -race -count=1 -p 1 ./...` (the test suite), or read README.md for the Go API.")
	return sum, nil
}

// setup starts the nodes, the producers and the consumers.
func (d *demo) setup(ctx context.Context) error {
	cfg := d.cfg
	opts := func(tags ...string) []node.Option {
		return []node.Option{
			node.WithListenAddrs("/ip4/127.0.0.1/tcp/0"), node.WithFastProfile(), node.WithoutDHT(),
			node.WithLogger(cfg.Logger), node.WithTags(tags...),
		}
	}
	newNode := func(tags ...string) (*node.Node, error) {
		o := opts(tags...)
		if d.bootNode != nil {
			o = append(o, node.WithBootstrapPeers(d.bootNode.AddrInfo()))
		}
		n, err := node.New(cfg.Network, o...)
		if err != nil {
			return nil, err
		}
		d.own(n.Close)
		return n, nil
	}
	boot, err := newNode()
	if err != nil {
		return err
	}
	d.bootNode = boot
	d.say("bootstrap  %s  %s", short(boot.ID().String()), boot.Addrs()[0])

	issuer, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		return fmt.Errorf("demo: issuer key: %w", err)
	}
	issuerID, err := peer.IDFromPrivateKey(issuer)
	if err != nil {
		return fmt.Errorf("demo: issuer key: %w", err)
	}
	for _, label := range []string{"eu", "us"} {
		n, err := newNode(label)
		if err != nil {
			return err
		}
		pr := &producerRun{label: label, node: n, done: make(chan struct{})}
		note := ""
		if label == "us" {
			t, err := policy.IssueSignedTicket(issuer, policy.SignedTicket{
				Subject: n.ID(), Network: n.Network(), Expires: time.Now().Add(time.Hour),
			})
			if err != nil {
				return err
			}
			if err := n.AddTicket(t); err != nil {
				return err
			}
			pr.ticketed = true
			note = fmt.Sprintf(", holds a ticket signed by issuer %s (expires in 1h)", short(issuerID.String()))
		}
		p, err := streams.NewProducer[price](n.Streams(), stream)
		if err != nil {
			return err
		}
		d.own(p.Close)
		pr.p = p
		d.prods = append(d.prods, pr)
		d.names[n.ID()] = label
		d.say("producer   %s  %-8s tag %q%s", short(n.ID().String()), label, label, note)
	}

	type spec struct {
		name, policy string
		expect       []string
		maxRTT       time.Duration
		opts         []streams.Option
	}
	specs := []spec{
		{"tag-eu", `WithRequireTags("eu")`, []string{"eu"}, 0, []streams.Option{streams.WithRequireTags("eu")}},
		{"rtt", fmt.Sprintf("WithMaxRTT(%v)", cfg.MaxRTT), []string{"eu", "us"}, cfg.MaxRTT, []streams.Option{streams.WithMaxRTT(cfg.MaxRTT)}},
		{"ticket", "ticket from issuer " + short(issuerID.String()), []string{"us"}, 0, []streams.Option{
			streams.WithTicketValidators(policy.NewSignedTicketValidator(catalog.IDFromString(cfg.Network), issuerID)),
		}},
	}
	for i := range cfg.Nodes {
		specs = append(specs, spec{fmt.Sprintf("any-%d", i+1), "none", []string{"eu", "us"}, 0, nil})
	}
	for _, s := range specs {
		n, err := newNode()
		if err != nil {
			return err
		}
		c, err := streams.NewConsumer[price](n.Streams(), stream, s.opts...)
		if err != nil {
			return err
		}
		cr := &consumerRun{name: s.name, policy: s.policy, node: n, c: c, expect: s.expect, maxRTT: s.maxRTT, done: make(chan struct{}),
			from: map[string]uint64{}, last: map[string]uint64{},
			seen: map[peer.ID]bool{}, gapLast: map[peer.ID]uint64{}, gapBase: map[peer.ID]uint64{}}
		d.cons = append(d.cons, cr)
		go cr.read()
		d.own(func() error { err := c.Close(); <-cr.done; return err }) // the reader ends once c is closed and drained
		d.say("consumer   %s  %-8s %s", short(n.ID().String()), s.name, s.policy)
	}
	return nil
}

// rttGrace is how long the setup waits for the rtt consumer once every
// other consumer is subscribed: whether it admits a producer depends on RTT
// samples, which a loaded machine can push above the bound.
const rttGrace = 3 * time.Second

// waitSubscribed waits until every consumer is connected to the producers
// its policy admits: exactly those for the tag, ticket and unrestricted
// consumers (or it fails after Timeout), both for the rtt consumer unless
// rttGrace passes first, when the demo says why and carries on.
func (d *demo) waitSubscribed(ctx context.Context) error {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, d.cfg.Timeout)
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	var others time.Time // when every consumer but rtt was ready
	var late []*consumerRun
	for {
		var missing []string
		late = late[:0]
		for _, c := range d.cons {
			got := d.labels(c.connected(c.sample()))
			if slices.Equal(got, c.expect) {
				continue
			}
			if c.maxRTT > 0 {
				late = append(late, c)
				continue
			}
			missing = append(missing, fmt.Sprintf("%s has [%s], wants [%s]", c.name, strings.Join(got, " "), strings.Join(c.expect, " ")))
		}
		if len(missing) == 0 && others.IsZero() {
			others = time.Now()
		}
		if len(missing) == 0 && (len(late) == 0 || time.Since(others) >= rttGrace) {
			break
		}
		select {
		case <-ctx.Done():
			for _, c := range late {
				missing = append(missing, fmt.Sprintf("%s has [%s], wants [%s]", c.name, strings.Join(d.labels(c.connected(c.sample())), " "), strings.Join(c.expect, " ")))
			}
			return fmt.Errorf("demo: consumers did not subscribe to their producers within %v (%s): %w",
				d.cfg.Timeout, strings.Join(missing, "; "), ctx.Err())
		case <-tick.C:
		}
	}
	var parts []string
	for _, c := range d.cons {
		got := d.labels(c.connected(c.sample()))
		if len(got) == 0 {
			got = []string{"nothing"}
		}
		parts = append(parts, c.name+" ← "+strings.Join(got, ", "))
	}
	d.say("consumers subscribed after %v: %s", time.Since(start).Round(time.Millisecond), strings.Join(parts, "; "))
	for _, c := range late {
		var rtts []string
		for _, p := range d.prods {
			if rtt, ok := c.node.Discovery().RTT().Get(p.node.ID()); ok {
				rtts = append(rtts, fmt.Sprintf("%s %v", p.label, rtt.Round(time.Microsecond)))
			} else {
				rtts = append(rtts, p.label+" not measured yet")
			}
		}
		d.say("note: %s is not on every producer: smoothed RTT %s, bound %v (a loaded machine or a tight bound); it subscribes when a catalog change finds an RTT below the bound",
			c.name, strings.Join(rtts, ", "), c.maxRTT)
	}
	return nil
}

// labels returns the sorted labels of ps.
func (d *demo) labels(ps []peer.ID) []string {
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		out = append(out, d.label(p))
	}
	slices.Sort(out)
	return out
}

// stream runs the streaming phase: producers send, a line per consumer
// every second, the eu producer stops half-way.
func (d *demo) stream(ctx context.Context, sum *Summary) error {
	fmt.Fprintf(d.w, "\nstreaming for %v (one line per consumer each second: datums/s ← connected producers)\n", d.cfg.Duration)
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	for i, p := range d.prods {
		pctx, pcancel := context.WithCancel(sctx)
		p.cancel = pcancel
		go p.send(pctx, d.cfg.Rate, uint64(i+1))
		d.own(func() error { pcancel(); <-p.done; return nil })
	}
	begin := time.Now()
	last := begin
	stopped := false
	var stopAt time.Time
	eu := d.prods[0]
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	nextPrint := time.Second
	var err error
loop:
	for {
		select {
		case <-ctx.Done():
			err = ctx.Err()
			d.say("interrupted: %v", err)
			break loop
		case <-tick.C:
		}
		infos := make([][]streams.ChannelInfo, len(d.cons))
		for i, c := range d.cons {
			infos[i] = c.sample()
		}
		el := time.Since(begin)
		if el >= nextPrint {
			now := time.Now()
			d.printLive(infos, now.Sub(last))
			last = now
			nextPrint += time.Second
		}
		if stopped && sum.Failover == 0 && !d.anyConnectedTo(infos, eu.node.ID()) {
			sum.Failover = max(time.Since(stopAt), time.Nanosecond)
			var parts []string
			for i, c := range d.cons {
				var on []string
				for _, p := range c.connected(infos[i]) {
					on = append(on, d.label(p))
				}
				if len(on) == 0 {
					parts = append(parts, c.name+" idle")
				} else {
					parts = append(parts, c.name+" ← "+strings.Join(on, ", "))
				}
			}
			d.say("failover done %v after the stop: no consumer is connected to eu; %s",
				sum.Failover.Round(time.Microsecond), strings.Join(parts, "; "))
		}
		if !stopped && el >= d.cfg.Duration/2 {
			stopped, stopAt = true, time.Now()
			sum.StoppedAt = el
			d.stopProducer(eu, infos)
		}
		if el >= d.cfg.Duration {
			break
		}
	}
	sum.Elapsed = time.Since(begin)
	for _, p := range d.prods {
		p.cancel()
		<-p.done
	}
	return err
}

func (d *demo) anyConnectedTo(infos [][]streams.ChannelInfo, p peer.ID) bool {
	for i, c := range d.cons {
		if slices.Contains(c.connected(infos[i]), p) {
			return true
		}
	}
	return false
}

// stopProducer closes p and says what each consumer is expected to do,
// judged from the channels it has now.
func (d *demo) stopProducer(p *producerRun, infos [][]streams.ChannelInfo) {
	p.cancel()
	<-p.done
	for _, c := range d.cons {
		c.mu.Lock()
		c.stop = true
		c.mu.Unlock()
	}
	d.say("stopping producer %s (%s): Producer.Close sends GracefulShutdown to its consumers and withdraws %q from its entry",
		p.label, short(p.node.ID().String()), stream)
	for i, c := range d.cons {
		var others []string
		on := false
		for _, id := range c.connected(infos[i]) {
			if id == p.node.ID() {
				on = true
			} else {
				others = append(others, d.label(id))
			}
		}
		var what string
		switch {
		case !on:
			what = fmt.Sprintf("unaffected: it is not subscribed to %s", p.label)
		case len(others) > 0:
			what = "fails over: carries on with " + strings.Join(others, ", ")
		default:
			what = fmt.Sprintf("loses its only producer; its policy (%s) admits no other, so it idles", c.policy)
		}
		fmt.Fprintf(d.w, "            %-9s %s\n", c.name, what)
	}
	_ = p.p.Close()
}

func (d *demo) printLive(infos [][]streams.ChannelInfo, dt time.Duration) {
	for i, c := range d.cons {
		slices.SortStableFunc(infos[i], func(a, b streams.ChannelInfo) int { return strings.Compare(d.label(a.Peer), d.label(b.Peer)) })
		total := c.total.Load()
		rate := float64(total-c.lastPrint) / dt.Seconds()
		c.lastPrint = total
		var parts []string
		for _, ci := range infos[i] {
			l := d.label(ci.Peer) + " " + short(ci.Peer.String())
			switch ci.State {
			case streams.Connected:
				if rtt, ok := c.node.Discovery().RTT().Get(ci.Peer); ok && c.maxRTT > 0 {
					l += fmt.Sprintf(" (rtt %v)", rtt.Round(time.Microsecond))
				}
			case streams.Connecting:
				l += " connecting"
			case streams.Terminated:
				why := "ended"
				var ce *streams.CodeError
				if errors.As(ci.Err, &ce) {
					why = "ended: " + ce.Code.String()
				}
				l = "[" + l + " " + why + "]"
			}
			parts = append(parts, l)
		}
		if len(parts) == 0 {
			parts = []string{"(no producer)"}
		}
		d.say("%-9s %4.0f datums/s ← %s", c.name, rate, strings.Join(parts, ", "))
	}
}

// finish closes the consumers, lets their readers drain and fills in the
// summary.
func (d *demo) finish(sum *Summary) {
	for _, c := range d.cons {
		c.sample()
	}
	for _, c := range d.cons {
		_ = c.c.Close()
		<-c.done
	}
	for _, p := range d.prods {
		sum.Producers = append(sum.Producers, ProducerSummary{Label: p.label, Peer: p.node.ID(), Ticketed: p.ticketed, Sent: p.sent.Load()})
	}
	for _, c := range d.cons {
		c.mu.Lock()
		cs := ConsumerSummary{Name: c.name, Policy: c.policy, Peer: c.node.ID(), Received: c.total.Load(),
			AfterStop: c.after, From: maps.Clone(c.from), SeqGaps: c.gaps}
		c.mu.Unlock()
		seen := map[string]bool{}
		for p := range c.seen {
			seen[d.label(p)] = true
		}
		for l := range cs.From {
			seen[l] = true
		}
		cs.Seen = slices.Sorted(maps.Keys(seen))
		for p, g := range c.gapLast {
			cs.Gaps += g + c.gapBase[p]
		}
		sum.Consumers = append(sum.Consumers, cs)
	}
}

func (d *demo) printSummary(sum Summary) {
	fmt.Fprintf(d.w, "\nsummary: streamed %v after a %v setup", sum.Elapsed.Round(time.Millisecond), sum.Setup.Round(time.Millisecond))
	if sum.StoppedAt > 0 {
		fmt.Fprintf(d.w, "; producer %s stopped %v into it", sum.Stopped, sum.StoppedAt.Round(time.Millisecond))
	}
	if sum.Failover > 0 {
		fmt.Fprintf(d.w, ", failover took %v", sum.Failover.Round(time.Microsecond))
	}
	fmt.Fprint(d.w, "\n\n")
	tw := tabwriter.NewWriter(d.w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  CONSUMER\tPOLICY\tRECEIVED\tAFTER STOP\tFROM\tPRODUCERS SEEN\tGAPS")
	for _, c := range sum.Consumers {
		var from []string
		for _, l := range slices.Sorted(maps.Keys(c.From)) {
			from = append(from, fmt.Sprintf("%s %d", l, c.From[l]))
		}
		seen := strings.Join(c.Seen, ", ")
		if seen == "" {
			seen = "-"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%d\t%d\t%s\t%s\t%d\n", c.Name, c.Policy, c.Received, c.AfterStop, strings.Join(from, ", "), seen, c.Gaps)
	}
	_ = tw.Flush()
	fmt.Fprintln(d.w)
	tw = tabwriter.NewWriter(d.w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  PRODUCER\tPEER\tTAG\tTICKET\tSENT\tSTOPPED")
	for _, p := range sum.Producers {
		ticket, stopped := "no", "-"
		if p.Ticketed {
			ticket = "yes"
		}
		if p.Label == sum.Stopped && sum.StoppedAt > 0 {
			stopped = sum.StoppedAt.Round(time.Millisecond).String() + " into the stream"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%d\t%s\n", p.Label, short(p.Peer.String()), p.Label, ticket, p.Sent, stopped)
	}
	_ = tw.Flush()
}

func short(s string) string {
	if len(s) <= 10 {
		return s
	}
	return "…" + s[len(s)-8:]
}
