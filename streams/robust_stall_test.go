package streams_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/node"
	"github.com/mosaik-go/mosaik/streams"
)

// Parameters of the stalled-consumer tests. A datum is larger than a yamux
// stream's initial receive window (256 KiB), so the writer of a
// subscription that never reads blocks inside the first datum; the queue
// then fills with exactly rbStallQueue datums, deterministically.
const (
	rbStallN     = 10
	rbStallQueue = 4
	rbStallSize  = 512 << 10
	rbStallGrace = 200 * time.Millisecond
)

// rbStallReader reads an honest consumer, checking that datum i carries
// counter i, and lets the test wait until it has taken a number of them.
type rbStallReader struct {
	mu   sync.Mutex
	got  uint64
	err  error
	wake chan struct{}
	wg   sync.WaitGroup
}

func rbReadHonest(ctx context.Context, c *streams.Consumer[[]byte]) *rbStallReader {
	r := &rbStallReader{wake: make(chan struct{}, 1)}
	r.wg.Go(func() {
		for {
			d, err := c.RecvDatum(ctx)
			r.mu.Lock()
			if err == nil {
				v, verr := rbVal(d.Value)
				switch {
				case verr != nil:
					err = verr
				case v != r.got || d.Gap != nil:
					err = fmt.Errorf("datum %d: counter %d, gap %v", r.got, v, d.Gap)
				}
			}
			if err != nil {
				if ctx.Err() == nil {
					r.err = err
				}
				r.mu.Unlock()
				return
			}
			r.got++
			r.mu.Unlock()
			select {
			case r.wake <- struct{}{}:
			default:
			}
		}
	})
	return r
}

// waitFor blocks until the reader took n datums.
func (r *rbStallReader) waitFor(t *testing.T, ctx context.Context, n uint64) {
	t.Helper()
	for {
		r.mu.Lock()
		got, err := r.got, r.err
		r.mu.Unlock()
		if err != nil {
			t.Fatalf("honest consumer: %v", err)
		}
		if got >= n {
			return
		}
		select {
		case <-r.wake:
		case <-ctx.Done():
			t.Fatalf("honest consumer took %d of %d datums", got, n)
		}
	}
}

// rbStalledQueues returns the queues of p's subscriptions from peer id.
func rbStalledQueues[T any](p *streams.Producer[T], id peer.ID) []streams.QueueState {
	var out []streams.QueueState
	for _, q := range streams.Queues(p) {
		if q.Peer == id {
			out = append(out, q)
		}
	}
	return out
}

// TestRobust_StalledConsumersShareOneGrace: ten subscriptions that never
// read (raw streams from one node) have full queues when a Send comes. The
// Send waits for all of them at once, one lag grace in all where waiting
// for each in turn takes ten, then cuts the ten with TooSlow (or, in drop
// mode, drops the datum for each), while an honest consumer on another
// node gets every datum in order.
func TestRobust_StalledConsumersShareOneGrace(t *testing.T) {
	nodes := connected(t, 3)
	pn, sn, hn := nodes[0], nodes[1], nodes[2]
	for _, drop := range []bool{false, true} {
		t.Run(fmt.Sprintf("drop=%v", drop), func(t *testing.T) {
			name := fmt.Sprintf("robust-stall-%v", drop)
			opts := []streams.ProducerOption{streams.WithCodec[[]byte](streams.Bytes{}),
				streams.WithQueueSize(rbStallQueue), streams.WithLagGrace(rbStallGrace)}
			if drop {
				opts = append(opts, streams.WithDropLagging())
			}
			prod := mustProducer[[]byte](t, pn, name, opts...)
			honest := mustConsumer[[]byte](t, hn, name, streams.WithCodec[[]byte](streams.Bytes{}))
			ctx := testCtx(t, 60*time.Second)
			var raws []network.Stream
			for range rbStallN {
				st, err := sn.Host().NewStream(ctx, pn.ID(), streams.ProtocolID)
				if err != nil {
					t.Fatalf("NewStream: %v", err)
				}
				t.Cleanup(func() { _ = st.Reset() })
				if _, err := st.Write(rbSubscribe(pn.Network(), prod.StreamID())); err != nil {
					t.Fatal(err)
				}
				raws = append(raws, st)
			}
			testutil.Eventually(t, 10*time.Second, func() bool { return rbAllConnected(prod.Consumers(), rbStallN+1) },
				"producer did not get its %d consumers: %+v", rbStallN+1, testutil.Lazy(func() any { return prod.Consumers() }))
			r := rbReadHonest(ctx, honest)

			// The first datum blocks every stalled writer inside it; each
			// of the next rbStallQueue datums takes one slot of every
			// stalled queue. The honest consumer takes each datum before
			// the next is sent, so its queue never fills.
			send := func(i uint64) time.Duration {
				t.Helper()
				start := time.Now()
				if err := prod.Send(ctx, rbPadded(i, rbStallSize)); err != nil {
					t.Fatalf("Send(%d): %v", i, err)
				}
				return time.Since(start)
			}
			send(0)
			r.waitFor(t, ctx, 1)
			testutil.Eventually(t, 10*time.Second, func() bool {
				qs := rbStalledQueues(prod, sn.ID())
				for _, q := range qs {
					if q.Len != 0 {
						return false
					}
				}
				return len(qs) == rbStallN
			}, "the stalled writers did not take their first datum: %+v", testutil.Lazy(func() any { return streams.Queues(prod) }))
			for i := range uint64(rbStallQueue) {
				if d := send(i + 1); d >= rbStallGrace {
					t.Fatalf("Send(%d) took %v before any queue was full", i+1, d)
				}
				r.waitFor(t, ctx, i+2)
			}
			for _, q := range rbStalledQueues(prod, sn.ID()) {
				if q.Len != q.Cap {
					t.Fatalf("stalled queues %+v, want all full", rbStalledQueues(prod, sn.ID()))
				}
			}

			// Ten full queues: one grace, not ten. The bound is generous
			// (scheduling on a loaded machine), and far below ten graces.
			const last = rbStallQueue + 1
			took := send(last)
			t.Logf("Send with %d full queues took %v (lag grace %v)", rbStallN, took, rbStallGrace)
			if took < rbStallGrace || took >= 3*rbStallGrace {
				t.Errorf("Send took %v, want within [%v, %v): one lag grace for all stalled consumers", took, rbStallGrace, 3*rbStallGrace)
			}
			r.waitFor(t, ctx, last+1)

			h := rbHandle(t, pn, prod.StreamID())
			if h.Totals.Dropped != rbStallN {
				t.Errorf("producer dropped %d datums, want %d (one per stalled consumer)", h.Totals.Dropped, rbStallN)
			}
			if drop {
				infos := prod.Consumers()
				if len(infos) != rbStallN+1 || h.Ends[streams.CodeTooSlow] != 0 {
					t.Fatalf("drop mode: %d consumers, %d TooSlow ends, want all %d kept", len(infos), h.Ends[streams.CodeTooSlow], rbStallN+1)
				}
				for _, ci := range infos {
					if want := uint64(0); ci.Peer == sn.ID() {
						want = 1
						if ci.Stats.Dropped != want {
							t.Errorf("stalled consumer: %d dropped, want %d", ci.Stats.Dropped, want)
						}
					} else if ci.Stats.Dropped != want {
						t.Errorf("honest consumer: %d dropped, want %d", ci.Stats.Dropped, want)
					}
				}
				return
			}
			// The cut is synchronous in Send.
			if infos := prod.Consumers(); !rbOnlyConnected(infos, hn.ID()) || h.Ends[streams.CodeTooSlow] != rbStallN {
				t.Fatalf("after the Send: consumers %+v, %d TooSlow ends, want only the honest one and %d", infos, h.Ends[streams.CodeTooSlow], rbStallN)
			}
			for i, st := range raws {
				if se := rbStreamReset(t, st, 10*time.Second); streams.Code(se.ErrorCode) != streams.CodeTooSlow {
					t.Errorf("stalled stream %d: reset %v, want TooSlow", i, se)
				}
			}
			// The producer serves the honest consumer on.
			for i := uint64(last + 1); i < last+4; i++ {
				send(i)
				r.waitFor(t, ctx, i+1)
			}
		})
	}
}

// rbHandle returns n's producer handle of stream id.
func rbHandle(t *testing.T, n *node.Node, id streams.StreamID) streams.HandleInfo {
	t.Helper()
	for _, h := range n.Streams().Handles() {
		if h.Role == streams.RoleProducer && h.Stream == id {
			return h
		}
	}
	t.Fatalf("no producer handle for %s", id.Short())
	return streams.HandleInfo{}
}
