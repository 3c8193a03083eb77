package demo

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/node"
	"github.com/mosaik-go/mosaik/policy"
	"github.com/mosaik-go/mosaik/streams"
)

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
		opts         []streams.ConsumerOption
	}
	specs := []spec{
		{"tag-eu", `WithRequire(policy.HasTags("eu"))`, []string{"eu"}, 0, []streams.ConsumerOption{streams.WithRequire(policy.HasTags("eu"))}},
		{"rtt", fmt.Sprintf("WithMaxRTT(%v)", cfg.MaxRTT), []string{"eu", "us"}, cfg.MaxRTT, []streams.ConsumerOption{streams.WithMaxRTT(cfg.MaxRTT)}},
		{"ticket", "ticket from issuer " + short(issuerID.String()), []string{"us"}, 0, []streams.ConsumerOption{
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
