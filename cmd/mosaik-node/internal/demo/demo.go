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
//	tag-eu      consumer, streams.WithRequire(policy.HasTags("eu"))
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
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/node"
)

// fixedNodes is the demo's fixed layout: bootstrap, 2 producers, 3 consumers.
const fixedNodes = 6

// MaxExtra bounds Config.Nodes so that the live output stays readable.
const MaxExtra = 26

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
	if c.Nodes < 0 || c.Nodes > MaxExtra {
		return fmt.Errorf("demo: extra nodes must be within [0, %d], got %d", MaxExtra, c.Nodes)
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
	// subscription to the stopped producer (0 if not observed).
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
	// subscription to, in any state (sampled every few ms), plus the sources of
	// the datums it read; sorted.
	Seen []string
	// Gaps is the sum of the gaps streams reported (SubscriptionInfo.Stats.Gaps).
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
