package demo

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/streams"
)

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
		infos := make([][]streams.SubscriptionInfo, len(d.cons))
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

func (d *demo) anyConnectedTo(infos [][]streams.SubscriptionInfo, p peer.ID) bool {
	for i, c := range d.cons {
		if slices.Contains(c.connected(infos[i]), p) {
			return true
		}
	}
	return false
}

// stopProducer closes p and says what each consumer is expected to do,
// judged from the subscriptions it has now.
func (d *demo) stopProducer(p *producerRun, infos [][]streams.SubscriptionInfo) {
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

func (d *demo) printLive(infos [][]streams.SubscriptionInfo, dt time.Duration) {
	for i, c := range d.cons {
		slices.SortStableFunc(infos[i], func(a, b streams.SubscriptionInfo) int { return strings.Compare(d.label(a.Peer), d.label(b.Peer)) })
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
	fmt.Fprint(d.w, inFlightNote)
}

// inFlightNote says why RECEIVED can be a little below SENT with no gaps:
// the demo closes its consumers while the producers still send, without
// waiting for what is on its way.
const inFlightNote = `
  SENT counts the datums a producer accepted; RECEIVED counts those a consumer
  read before the demo closed it. Datums still in flight at that moment (queued
  at the producer or on the wire) are in SENT but not in RECEIVED: they were
  not lost. GAPS counts the datums the streams know a consumer missed.
`

func short(s string) string {
	if len(s) <= 10 {
		return s
	}
	return "…" + s[len(s)-8:]
}
