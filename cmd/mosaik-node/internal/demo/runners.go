package demo

import (
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/node"
	"github.com/mosaik-go/mosaik/streams"
)

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

// sample records the producers the consumer has subscriptions to and the gaps
// streams reports. A subscription's gap count restarts with a new one, so a
// decrease starts a new base.
func (c *consumerRun) sample() []streams.SubscriptionInfo {
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

func (c *consumerRun) connected(infos []streams.SubscriptionInfo) []peer.ID {
	var out []peer.ID
	for _, ci := range infos {
		if ci.State == streams.Connected {
			out = append(out, ci.Peer)
		}
	}
	return out
}
