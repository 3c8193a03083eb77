package streams

import (
	"context"
	"iter"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/mosaik-go/mosaik/catalog"
)

// Consumer subscribes to every eligible producer of its stream and merges
// their datums into one bounded buffer, read with Recv, TryRecv or All.
// Datums of one producer arrive in order; there is no order across
// producers and no de-duplication.
//
// It watches the catalog: a producer with no RTT sample is probed first,
// then judged by the require predicates and tickets, then subscribed to by a
// receiver that reconnects with backoff. On every catalog change, producers
// that were purged, fail a predicate or hold invalid tickets are dropped.
// A producer that withdrew the stream or departed closes its subscriptions
// itself after delivering what it had queued; its link is read to the end
// (at most Params.CloseTimeout, during which it still counts as connected),
// then dropped. A producer that refused the consumer for good (a final
// close code) is retried when its entry or the consumer's own changes
// in content, not on heartbeats, and then after a backoff
// (Params.RefusalRetryMin, RefusalRetryMax; PROTOCOL.md section 16.4);
// without a change, once RefusalRetryMax has passed, since a verdict can
// change with time alone (a ticket's not-before).
//
// Safe for concurrent use; Close ends it.
type Consumer[T any] struct {
	svc   *Service
	id    StreamID
	name  string
	codec Codec[T]
	cfg   *consumerConfig
	log   *slog.Logger
	set   *subscriptionSet

	out  *inbox[T]
	wake chan struct{}

	mu      sync.Mutex
	attrs   metric.MeasurementOption // network and stream labels
	recvs   map[peer.ID]*receiver
	probing map[peer.ID]bool
	// refused holds producers whose receiver ended for good (a final close
	// code, or backoff exhausted), with the content of both entries at
	// that time: they are retried once either changes, after a backoff,
	// or without a change after RefusalRetryMax (see refusal).
	refused map[peer.ID]refusal
	// retries holds the refusal backoff of producers being retried after
	// a refusal, until one accepts the consumer or leaves the catalog.
	retries map[peer.ID]retry
	// seen holds, per producer, where its datums were last received: the
	// producer's epoch and the last sequence number, so a resubscription
	// can tell how many datums were missed in between.
	seen map[peer.ID]position
	// taken holds, per producer, the position of the last datum the
	// application took (Positions).
	taken map[peer.ID]*posCell
	// running holds, per producer, the done channel of its newest
	// receiver until that receiver ends: a receiver started while an
	// older one of the same producer still winds down waits for it, so
	// that it resumes from where the older one stopped (see start).
	running map[peer.ID]chan struct{}

	datums, bytes atomic.Uint64
	gaps          atomic.Uint64 // missed sequence numbers over all producers
	reconnects    atomic.Uint64 // reconnections over all subscriptions, past ones included
	ends          codeCounts    // links to producers ended, by close code
	created       time.Time

	// With a borrowing codec (BorrowedBytes) datums are read into
	// recycled buffers: held is the one the application holds, free the
	// recycled ones (LIFO, so the next datum lands in a hot buffer).
	borrow bool
	bmu    sync.Mutex
	held   *borrowBuf
	free   []*borrowBuf

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // worker, receivers, probes
	timers timerGroup     // ticket-expiry, drain and retention timers
	once   sync.Once
}

// delivery is a datum in the delivery buffer with its payload size, for
// the stats counted when the application takes it, and its origin.
// It is kept small: the delivery buffer holds up to WithBuffer of them.
type delivery[T any] struct {
	v     T
	n     int
	seq   uint64
	epoch uint64
	sub   *subscription // where it came from
	gap   *Gap          // missed right before it
	bb    *borrowBuf    // the recycled buffer v lives in (borrowing codecs)
}

// borrowBuf is a recycled datum buffer of a borrowing consumer.
type borrowBuf struct{ b []byte }

// NewConsumer creates a consumer of the stream named name (an ID by the
// string rule) on svc and starts finding producers.
func NewConsumer[T any](svc *Service, name string, opts ...ConsumerOption) (*Consumer[T], error) {
	cfg, codec, err := newConsumerConfig[T](opts)
	if err != nil {
		return nil, err
	}
	id := catalog.IDFromString(name)
	c := &Consumer[T]{svc: svc, id: id, name: name, codec: codec, cfg: cfg, set: newSubscriptionSet(svc.protect),
		log: svc.log.With("stream", id.Short(), "role", "consumer"),
		out: newInbox[T](cfg.buffer), wake: make(chan struct{}, 1),
		recvs: map[peer.ID]*receiver{}, probing: map[peer.ID]bool{}, refused: map[peer.ID]refusal{}, retries: map[peer.ID]retry{},
		seen: map[peer.ID]position{}, taken: map[peer.ID]*posCell{}, running: map[peer.ID]chan struct{}{}, created: time.Now()}
	for _, p := range cfg.resume {
		c.seen[p.Producer] = position{epoch: p.Epoch, last: p.Seq}
		c.taken[p.Producer] = &posCell{epoch: p.Epoch, seq: p.Seq}
	}
	online := c.Subscribed().MinimumOf(0)
	if cfg.onlineCondition != nil {
		online = cfg.onlineCondition(c.Subscribed())
	}
	c.set.update(func() { c.set.online = online })
	_, c.borrow = codec.(borrower)
	stream := streamAttrs(name, id)
	c.attrs = metric.WithAttributes(attribute.String("network", svc.d.Network().Short()), stream[0], stream[1])
	c.ctx, c.cancel = context.WithCancel(svc.ctx)
	c.wg.Add(1)
	go c.worker()
	// Registered last: once listed, Service.Close may close it at any time.
	if err := svc.addConsumer(c); err != nil {
		_ = c.Close()
		return nil, err
	}
	return c, nil
}

func (c *Consumer[T]) handle() HandleInfo {
	return HandleInfo{Role: RoleConsumer, Stream: c.id, Name: c.name, Online: c.IsOnline(), Subscriptions: c.Producers(), Totals: c.Stats(), Ends: c.ends.snapshot()}
}

// StreamID is the consumer's stream.
func (c *Consumer[T]) StreamID() StreamID { return c.id }

// Subscribed is the condition "at least one connected producer"; refine it
// with MinimumOf, WithTags, WithPredicate or Unmet, and wait with Wait.
func (c *Consumer[T]) Subscribed() *Condition { return newCondition(c.set, 1) }

// Unsubscribed is Subscribed().Unmet().
func (c *Consumer[T]) Unsubscribed() *Condition { return c.Subscribed().Unmet() }

// WaitOnline blocks until the consumer is online (at once if it is), ctx
// ends, or the consumer closes (ErrClosed).
func (c *Consumer[T]) WaitOnline(ctx context.Context) error { return c.set.waitOnline(ctx, true) }

// WaitOffline blocks until the consumer is offline (at once if it is), ctx
// ends, or the consumer closes (ErrClosed).
func (c *Consumer[T]) WaitOffline(ctx context.Context) error { return c.set.waitOnline(ctx, false) }

// IsOnline reports whether the online condition holds.
func (c *Consumer[T]) IsOnline() bool { return c.set.isOn.Load() }

// Producers returns a snapshot of the receivers, including those
// connecting or backing off.
func (c *Consumer[T]) Producers() []SubscriptionInfo { return c.set.infos() }

// Stats returns the aggregate counts of datums taken by the application,
// the sequence numbers missed over all producers and subscriptions (Gaps:
// each is a datum a producer skipped for this consumer), and the
// reconnections of every subscription, past ones included.
func (c *Consumer[T]) Stats() Stats {
	return Stats{Datums: c.datums.Load(), Bytes: c.bytes.Load(), Gaps: c.gaps.Load(), Reconnects: c.reconnects.Load(), ConnectedAt: c.created}
}

// Recv returns the next datum, blocking until one arrives, ctx ends, or the
// consumer is closed and drained (ErrClosed). RecvDatum also tells where
// the datum came from and what was missed before it.
func (c *Consumer[T]) Recv(ctx context.Context) (T, error) {
	d, err := c.recv(ctx)
	return d.v, err
}

// RecvDatum is Recv returning the datum with its producer, its sequence
// number and the gap before it, if datums of that producer were missed.
func (c *Consumer[T]) RecvDatum(ctx context.Context) (Datum[T], error) {
	d, err := c.recv(ctx)
	var from peer.ID
	if d.sub != nil {
		from = d.sub.peer
	}
	return Datum[T]{Value: d.v, Producer: from, Seq: d.seq, Epoch: d.epoch, Gap: d.gap}, err
}

func (c *Consumer[T]) recv(ctx context.Context) (delivery[T], error) {
	d, _, err := c.out.take(ctx, true)
	if err != nil {
		return delivery[T]{}, err
	}
	return c.take(d), nil
}

// TryRecv returns the next datum if one is buffered, ErrEmpty if none is,
// or ErrClosed once the consumer is closed and drained.
func (c *Consumer[T]) TryRecv() (T, error) {
	d, ok, err := c.out.take(context.Background(), false)
	switch {
	case err != nil:
		var zero T
		return zero, err
	case !ok:
		var zero T
		return zero, ErrEmpty
	}
	return c.take(d).v, nil
}

// take counts a datum handed to the application and, with a borrowing
// codec, recycles the buffer of the datum it held until now.
func (c *Consumer[T]) take(d delivery[T]) delivery[T] {
	c.datums.Add(1)
	c.bytes.Add(uint64(d.n))
	if d.sub != nil && d.sub.pos != nil {
		d.sub.pos.set(d.epoch, d.seq)
	}
	if c.borrow {
		c.bmu.Lock()
		old := c.held
		c.held, d.bb = d.bb, nil
		if old != nil && len(c.free) <= c.cfg.buffer {
			c.free = append(c.free, old)
		}
		c.bmu.Unlock()
	}
	return d
}

// getBuf returns a buffer of length n for a borrowed datum: the most
// recently recycled one (hot in cache) when there is one.
func (c *Consumer[T]) getBuf(n int) *borrowBuf {
	var bb *borrowBuf
	c.bmu.Lock()
	if k := len(c.free); k > 0 {
		bb = c.free[k-1]
		c.free[k-1] = nil
		c.free = c.free[:k-1]
	}
	c.bmu.Unlock()
	if bb == nil {
		bb = &borrowBuf{}
	}
	if cap(bb.b) < n {
		bb.b = make([]byte, n, max(n, 512))
	}
	bb.b = bb.b[:n]
	return bb
}

// All iterates over datums until ctx ends or the consumer closes; the
// final error (ctx.Err() or ErrClosed) is yielded once before stopping.
func (c *Consumer[T]) All(ctx context.Context) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		for {
			v, err := c.Recv(ctx)
			if !yield(v, err) || err != nil {
				return
			}
		}
	}
}

// Close stops every receiver (cancelling its subscription), the worker and
// the consumer's timers. It does not wait on the network: every goroutine
// it waits for stops on cancellation, so it returns promptly. Datums still
// buffered can be read until Recv returns ErrClosed. Service.Close closes
// the consumers created on it. Idempotent; safe to call concurrently.
func (c *Consumer[T]) Close() error {
	c.once.Do(func() {
		c.svc.removeConsumer(c)
		c.cancel()
		c.wg.Wait()
		c.timers.stop()
		c.set.close()
		c.out.close()
	})
	return nil
}

func (c *Consumer[T]) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}
