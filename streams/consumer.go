package streams

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/streams/pb"
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
// then dropped.
//
// Safe for concurrent use; Close ends it.
type Consumer[T any] struct {
	svc   *Service
	id    StreamID
	name  string
	codec Codec[T]
	cfg   *config
	log   *slog.Logger
	hub   *hub

	out  chan delivery[T]
	wake chan struct{}

	mu      sync.Mutex
	attrs   metric.MeasurementOption // network and stream labels
	recvs   map[peer.ID]*receiver
	probing map[peer.ID]bool
	// refused holds producers whose receiver ended for good (a final close
	// code, or backoff exhausted), with the entry versions of both ends at
	// that time: they are retried only once either entry changes.
	refused map[peer.ID]refusal
	// seen holds, per producer, where its datums were last received: the
	// producer's epoch and the last sequence number, so a resubscription
	// can tell how many datums were missed in between.
	seen map[peer.ID]position

	datums, bytes atomic.Uint64
	gaps          atomic.Uint64 // missed sequence numbers over all producers
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
	once   sync.Once
}

type refusal struct {
	theirs, ours catalog.Version
	ch           *channel // kept in Producers() as Terminated, with its error
}

// delivery is a datum in the delivery buffer with its payload size, for
// the stats counted when the application takes it, and its origin.
// It is kept small: the delivery buffer holds up to WithBuffer of them.
type delivery[T any] struct {
	v   T
	n   int
	seq uint64
	ch  *channel   // where it came from
	gap *Gap       // missed right before it
	bb  *borrowBuf // the recycled buffer v lives in (borrowing codecs)
}

// borrowBuf is a recycled datum buffer of a borrowing consumer.
type borrowBuf struct{ b []byte }

// position is where a producer's datums were last received.
type position struct {
	epoch, last uint64
	clean       bool // the producer's run ended with a graceful Close after last
}

// maxSeen bounds Consumer.seen: beyond it, positions of producers without a
// receiver are forgotten (their next subscription counts as a first one).
const maxSeen = 4096

// receiver is the consumer's link to one producer.
type receiver struct {
	ch     *channel
	cancel context.CancelFunc
	expiry *time.Timer
	done   chan struct{}
	// drain is set (under Consumer.mu) while the producer ended in order
	// (withdrew the stream or departed) and the receiver is left to read
	// what is still on the link; it cancels the receiver when it fires.
	drain    *time.Timer
	drainGen uint64      // which drain the timer belongs to (under Consumer.mu)
	draining atomic.Bool // no retries once the current session ends
	// ended is set once the producer ended in order: the link's end is
	// then no refusal, so a producer that comes back (re-added the stream,
	// restarted) is subscribed to again at once.
	ended atomic.Bool
}

// NewConsumer creates a consumer of the stream named name (an ID by the
// string rule) on svc and starts finding producers.
func NewConsumer[T any](svc *Service, name string, opts ...Option) (*Consumer[T], error) {
	cfg, codec, err := newConfig[T](consumerSide, opts)
	if err != nil {
		return nil, err
	}
	id := catalog.IDFromString(name)
	c := &Consumer[T]{svc: svc, id: id, name: name, codec: codec, cfg: cfg, hub: newHub(svc.protect),
		log: svc.log.With("stream", id.Short(), "role", "consumer"),
		out: make(chan delivery[T], cfg.buffer), wake: make(chan struct{}, 1),
		recvs: map[peer.ID]*receiver{}, probing: map[peer.ID]bool{}, refused: map[peer.ID]refusal{},
		seen: map[peer.ID]position{}, created: time.Now()}
	when := (When{c.hub}).Subscribed().MinimumOf(0)
	if cfg.onlineWhen != nil {
		when = cfg.onlineWhen((When{c.hub}).Subscribed())
	}
	c.hub.update(func() { c.hub.online = when })
	_, c.borrow = codec.(borrower)
	c.attrs = metric.WithAttributes(attribute.String("network", svc.d.Network().Short()), attribute.String("stream", id.Short()))
	c.ctx, c.cancel = context.WithCancel(svc.ctx)
	svc.addConsumer(c)
	c.wg.Add(1)
	go c.worker()
	return c, nil
}

func (c *Consumer[T]) handle() HandleInfo {
	return HandleInfo{Role: RoleConsumer, Stream: c.id, Name: c.name, Online: c.IsOnline(), Channels: c.Producers(), Totals: c.Stats(), Ends: c.ends.snapshot()}
}

// StreamID is the consumer's stream.
func (c *Consumer[T]) StreamID() StreamID { return c.id }

// When observes the consumer's producers and online state.
func (c *Consumer[T]) When() When { return When{c.hub} }

// IsOnline reports whether the online condition holds.
func (c *Consumer[T]) IsOnline() bool { return c.hub.isOn.Load() }

// Producers returns a snapshot of the receivers, including those
// connecting or backing off.
func (c *Consumer[T]) Producers() []ChannelInfo { return c.hub.infos() }

// Stats returns the aggregate counts of datums taken by the application,
// and the sequence numbers missed over all producers and subscriptions
// (Gaps: each is a datum a producer skipped for this consumer).
func (c *Consumer[T]) Stats() Stats {
	return Stats{Datums: c.datums.Load(), Bytes: c.bytes.Load(), Gaps: c.gaps.Load(), ConnectedAt: c.created}
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
	if d.ch != nil {
		from = d.ch.peer
	}
	return Datum[T]{Value: d.v, Producer: from, Seq: d.seq, Gap: d.gap}, err
}

func (c *Consumer[T]) recv(ctx context.Context) (delivery[T], error) {
	select { // fast path: a buffered datum, without arming ctx
	case d, ok := <-c.out:
		if !ok {
			return delivery[T]{}, ErrClosed
		}
		return c.take(d), nil
	default:
	}
	select {
	case d, ok := <-c.out:
		if !ok {
			return delivery[T]{}, ErrClosed
		}
		return c.take(d), nil
	case <-ctx.Done():
		return delivery[T]{}, ctx.Err()
	}
}

// TryRecv returns the next datum if one is buffered, ErrEmpty if none is,
// or ErrClosed once the consumer is closed and drained.
func (c *Consumer[T]) TryRecv() (T, error) {
	select {
	case d, ok := <-c.out:
		if !ok {
			var zero T
			return zero, ErrClosed
		}
		return c.take(d).v, nil
	default:
		var zero T
		return zero, ErrEmpty
	}
}

// take counts a datum handed to the application and, with a borrowing
// codec, recycles the buffer of the datum it held until now.
func (c *Consumer[T]) take(d delivery[T]) delivery[T] {
	c.datums.Add(1)
	c.bytes.Add(uint64(d.n))
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

// Close stops every receiver (cancelling its subscription) and the worker.
// Datums still buffered can be read until Recv returns ErrClosed.
// Idempotent.
func (c *Consumer[T]) Close() error {
	c.once.Do(func() {
		c.svc.removeConsumer(c)
		c.cancel()
		c.wg.Wait()
		c.hub.close()
		close(c.out)
	})
	return nil
}

func (c *Consumer[T]) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *Consumer[T]) worker() {
	defer c.wg.Done()
	for {
		snap := c.svc.d.Catalog()
		c.evaluate(snap)
		select {
		case <-c.ctx.Done():
			c.mu.Lock()
			for _, r := range c.recvs {
				r.cancel()
				r.stopTimers()
			}
			c.mu.Unlock()
			return
		case <-snap.Changed():
		case <-c.wake:
		}
	}
}

// evaluate subscribes to eligible producers and drops ineligible ones.
func (c *Consumer[T]) evaluate(snap *catalog.Snapshot) {
	now := time.Now()
	rtt := c.svc.d.RTT()
	var eligible []candidate
	ours := snap.Local().Entry.Version
	for _, e := range snap.Producers(c.id) {
		c.mu.Lock()
		ref, refused := c.refused[e.Entry.PeerID]
		if refused && ref.theirs == e.Entry.Version && ref.ours == ours {
			c.mu.Unlock()
			continue // refused for good; wait for either entry to change
		}
		delete(c.refused, e.Entry.PeerID)
		c.mu.Unlock()
		if refused {
			c.hub.remove(ref.ch)
		}
		info := rtt.Info(e)
		if !info.RTTKnown {
			c.probe(e.Entry.PeerID)
			continue
		}
		expires, _, err := c.cfg.eligible(info, now)
		if err != nil {
			continue
		}
		eligible = append(eligible, candidate{e, info, expires})
	}
	if k := c.cfg.lowestK; k > 0 {
		eligible = c.lowest(eligible, k)
	}
	keep := map[peer.ID]bool{}
	for _, x := range eligible {
		p := x.e.Entry.PeerID
		keep[p] = true
		c.mu.Lock()
		r, ok := c.recvs[p]
		c.mu.Unlock()
		if ok {
			c.hub.update(func() { // through the hub: online conditions see it
				r.ch.mu.Lock()
				r.ch.entry = x.e
				r.ch.mu.Unlock()
			})
			c.armExpiry(r, x.expires) // a renewed ticket pushes the expiry back
			continue
		}
		c.start(x.e, x.expires)
	}
	// Forget refusals of producers that left: their channels leave
	// Producers() too.
	present := map[peer.ID]bool{}
	for _, e := range snap.Producers(c.id) {
		present[e.Entry.PeerID] = true
	}
	var stale []*channel
	c.mu.Lock()
	for p, ref := range c.refused {
		if !present[p] {
			delete(c.refused, p)
			stale = append(stale, ref.ch)
		}
	}
	c.mu.Unlock()
	for _, ch := range stale {
		c.hub.remove(ch)
	}
	// Drop receivers of producers that are gone or no longer eligible, but
	// let a connected one finish reading a producer that ended in order.
	c.mu.Lock()
	var drop, drain []*receiver
	for p, r := range c.recvs {
		switch {
		case keep[p]:
			if r.drain != nil { // eligible again: the link goes on
				r.drain.Stop()
				r.drain = nil
				r.draining.Store(false)
			}
		case r.drain != nil: // already draining
		case endedInOrder(snap, p, c.id) && r.ch.info().State == Connected:
			r.ended.Store(true)
			r.draining.Store(true)
			r.drainGen++
			gen := r.drainGen
			r.drain = time.AfterFunc(c.svc.params.CloseTimeout, func() { c.drained(r, gen) })
			drain = append(drain, r)
		default:
			drop = append(drop, r)
			delete(c.recvs, p)
		}
	}
	c.mu.Unlock()
	for _, r := range drain {
		c.log.Debug("producer ended; reading what is left on the link", "peer", r.ch.peer)
	}
	for _, r := range drop {
		c.log.Debug("dropping ineligible producer", "peer", r.ch.peer)
		c.stop(r)
	}
}

// endedInOrder reports whether producer p left the stream in order: its
// current entry no longer lists the stream, or it sent a signed departure.
// A producer does both only after it closed its subscriptions (each gets
// what was queued for it, then a Close frame), so a consumer that cancelled
// its subscription on hearing of it would drop the last datums unread. A
// producer purged for silence, or one that no longer passes the
// consumer's predicates or tickets, is cut at once.
func endedInOrder(snap *catalog.Snapshot, p peer.ID, id StreamID) bool {
	if e, ok := snap.Get(p); ok {
		return !e.Entry.Produces(id)
	}
	return snap.Departed(p)
}

// drained cancels a draining receiver whose producer did not close the
// subscription within CloseTimeout. gen tells a stale timer (its drain was
// ended and another started) from the current one.
func (c *Consumer[T]) drained(r *receiver, gen uint64) {
	c.mu.Lock()
	cut := r.drain != nil && r.drainGen == gen && c.recvs[r.ch.peer] == r
	if cut {
		delete(c.recvs, r.ch.peer)
	}
	c.mu.Unlock()
	if cut {
		c.log.Debug("producer that ended did not close its subscription in time", "peer", r.ch.peer)
		c.stop(r)
		c.poke()
	}
}

// candidate is an eligible producer.
type candidate struct {
	e       *catalog.SignedEntry
	info    catalog.PeerInfo
	expires time.Time
}

// lowest keeps the k candidates with the lowest RTT. An incumbent (already
// subscribed) outside the best k stays unless the k-th best beats it by
// more than the hysteresis margin, so RTT noise does not churn links.
func (c *Consumer[T]) lowest(cands []candidate, k int) []candidate {
	if len(cands) <= k {
		return cands
	}
	slices.SortFunc(cands, func(a, b candidate) int { return cmp.Compare(a.info.RTT, b.info.RTT) })
	chosen := slices.Clone(cands[:k])
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, x := range cands[k:] {
		if c.recvs[x.e.Entry.PeerID] == nil {
			continue
		}
		// Replace the worst newcomer among the chosen, if any, when the
		// incumbent is within the margin of it.
		for i := len(chosen) - 1; i >= 0; i-- {
			if c.recvs[chosen[i].e.Entry.PeerID] != nil {
				continue
			}
			if float64(chosen[i].info.RTT) >= float64(x.info.RTT)*(1-c.cfg.hysteresis) {
				chosen[i] = x
			}
			break
		}
	}
	return chosen
}

// probe takes an RTT sample of p in the background, then re-evaluates.
func (c *Consumer[T]) probe(p peer.ID) {
	c.mu.Lock()
	if c.probing[p] {
		c.mu.Unlock()
		return
	}
	c.probing[p] = true
	c.wg.Add(1)
	c.mu.Unlock()
	go func() {
		defer c.wg.Done()
		_, err := c.svc.d.Probe(c.ctx, p)
		c.mu.Lock()
		delete(c.probing, p)
		c.mu.Unlock()
		if err == nil {
			c.poke()
		} else if c.ctx.Err() == nil {
			c.log.Debug("RTT probe of producer failed", "peer", p, "err", err)
		}
	}()
}

func (c *Consumer[T]) start(e *catalog.SignedEntry, expires time.Time) {
	ctx, cancel := context.WithCancel(c.ctx)
	r := &receiver{ch: &channel{stream: c.id, peer: e.Entry.PeerID, entry: e, state: Connecting}, cancel: cancel, done: make(chan struct{})}
	c.mu.Lock()
	if c.ctx.Err() != nil {
		c.mu.Unlock()
		cancel()
		return
	}
	c.recvs[e.Entry.PeerID] = r
	c.wg.Add(1)
	c.mu.Unlock()
	c.hub.add(r.ch)
	c.armExpiry(r, expires)
	go c.receive(ctx, r)
}

// armExpiry (re)sets a receiver's ticket-expiry timer. The timer belongs to
// this receiver, so it can never cut a later one.
func (c *Consumer[T]) armExpiry(r *receiver, expires time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case expires.IsZero():
		if r.expiry != nil {
			r.expiry.Stop()
		}
	case r.expiry == nil:
		r.expiry = time.AfterFunc(time.Until(expires), func() {
			c.mu.Lock()
			if c.recvs[r.ch.peer] == r {
				delete(c.recvs, r.ch.peer)
			}
			c.mu.Unlock()
			c.log.Debug("producer ticket expired", "peer", r.ch.peer)
			c.stop(r)
			c.poke()
		})
	default:
		r.expiry.Reset(time.Until(expires))
	}
}

func (c *Consumer[T]) stop(r *receiver) {
	c.mu.Lock()
	r.stopTimers()
	c.mu.Unlock()
	r.cancel()
}

// stopTimers stops the receiver's ticket-expiry and drain timers. Called
// with Consumer.mu held.
func (r *receiver) stopTimers() {
	if r.expiry != nil {
		r.expiry.Stop()
	}
	if r.drain != nil {
		r.drain.Stop()
	}
}

// receive runs one producer's receiver until it terminates.
func (c *Consumer[T]) receive(ctx context.Context, r *receiver) {
	defer c.wg.Done()
	defer close(r.done)
	var err error
	defer func() {
		if code, ok := codeOf(err); ok {
			var ce *CodeError
			if !errors.As(err, &ce) { // a reset carrying the code: expose it as a CodeError
				err = fmt.Errorf("%w: %w", &CodeError{Code: code, Remote: true}, err)
			}
		}
		c.hub.setState(r.ch, Terminated, err)
		keep := false
		c.mu.Lock()
		if c.recvs[r.ch.peer] == r {
			delete(c.recvs, r.ch.peer)
		}
		r.stopTimers()
		if err != nil && ctx.Err() == nil && !r.ended.Load() {
			// Ended for good: do not retry until either entry changes
			// (mosaik retries on the next catalog change), and keep the
			// channel visible in Producers() with its reason until then.
			snap := c.svc.d.Catalog()
			if e, ok := snap.Get(r.ch.peer); ok {
				if old, had := c.refused[r.ch.peer]; had {
					defer c.hub.remove(old.ch)
				}
				c.refused[r.ch.peer] = refusal{theirs: e.Entry.Version, ours: snap.Local().Entry.Version, ch: r.ch}
				keep = true
			}
		}
		c.mu.Unlock()
		if !keep {
			c.hub.remove(r.ch)
		}
		c.poke()
	}()
	bo := c.cfg.backoff()
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			wait := bo.NextBackOff()
			if wait == backoff.Stop {
				err = fmt.Errorf("streams: gave up on producer %s: %w", r.ch.peer, err)
				return
			}
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			r.ch.reconnects.Add(1)
		}
		delivered := false
		err = c.session(ctx, r, &delivered)
		if delivered {
			bo.Reset() // the backoff restarts after a session that carried data
		}
		if ctx.Err() != nil {
			err = nil
			return
		}
		code, hasCode := codeOf(err)
		if hasCode {
			c.ends.add(code)
		}
		if r.draining.Load() { // the producer ended: no retries
			return
		}
		switch {
		case errors.Is(err, errDecode):
			return // a producer sending undecodable datums is broken or hostile
		case hasCode && code == CodeUnknownPeer:
			// The producer does not know us yet: sync catalogs, then retry.
			e := r.ch.info().Entry
			sctx, cancel := context.WithTimeout(ctx, c.svc.params.HandshakeTimeout)
			serr := c.svc.d.SyncWith(sctx, e.Entry.AddrInfo())
			cancel()
			if serr != nil {
				err = fmt.Errorf("%w; catalog sync failed: %v", err, serr)
				return
			}
		case hasCode && code.Final():
			return
		}
		if hasCode {
			var ce *CodeError
			if !errors.As(err, &ce) {
				err = fmt.Errorf("%w: %w", &CodeError{Code: code, Remote: true}, err)
			}
		}
		c.hub.setState(r.ch, Connecting, err)
		c.log.Debug("producer link failed; retrying", "peer", r.ch.peer, "err", err)
	}
}

var errDecode = errors.New("streams: datum does not decode")

// remember records where a producer's datums were last received. Beyond
// maxSeen producers, those without a receiver are forgotten.
func (c *Consumer[T]) remember(p peer.ID, pos position) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.seen[p]; ok && old.epoch == pos.epoch && old.last > pos.last {
		pos.last = old.last // a stale session ending late never moves it back
	}
	c.seen[p] = pos
	if len(c.seen) > maxSeen {
		for q := range c.seen {
			if c.recvs[q] == nil && q != p {
				delete(c.seen, q)
			}
		}
	}
}

// session connects, subscribes and reads datums until the link fails.
// It sets *delivered once a datum was handed to the buffer.
func (c *Consumer[T]) session(ctx context.Context, r *receiver, delivered *bool) error {
	h := c.svc.h
	e := r.ch.info().Entry
	if len(e.Entry.Addrs) > 0 {
		h.Peerstore().AddAddrs(e.Entry.PeerID, e.Entry.Addrs, time.Hour)
	}
	start := time.Now()
	sctx, span := c.svc.tracer.Start(ctx, "mosaik.streams.subscribe", trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("peer", r.ch.peer.String()), attribute.String("stream", c.id.Short())))
	handshake := func(err error) {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		} else {
			c.svc.subscribeDur.Record(ctx, time.Since(start).Seconds(), c.attrs)
		}
		span.End()
	}
	if h.Network().Connectedness(r.ch.peer) != network.Connected {
		// The receiver paces its own retries: a dial that failed while the
		// producer was down must not keep its restarted run out for the
		// swarm's dial backoff (which grows to minutes).
		if sw, ok := h.Network().(interface{ Backoff() *swarm.DialBackoff }); ok {
			sw.Backoff().Clear(r.ch.peer)
		}
	}
	hctx, cancel := context.WithTimeout(sctx, c.svc.params.HandshakeTimeout)
	st, err := h.NewStream(hctx, r.ch.peer, ProtocolID)
	cancel()
	if err != nil {
		handshake(err)
		return err
	}
	// Close the stream when ctx ends, so a blocked read returns.
	stop := context.AfterFunc(ctx, func() { _ = st.ResetWithError(network.StreamErrorCode(CodeCancelled)) })
	defer stop()
	defer st.Close()
	nw := c.svc.d.Network()
	sub, _ := appendControl(nil, frameSubscribe, &pb.Subscribe{Network: nw[:], Stream: c.id[:], Criteria: c.cfg.criteria})
	_ = st.SetDeadline(time.Now().Add(c.svc.params.HandshakeTimeout))
	if _, err := st.Write(sub); err != nil {
		_ = st.Reset()
		handshake(err)
		return err
	}
	fr := newFrameReader(st, c.svc.params.MaxFrameSize)
	typ, body, err := fr.next()
	if err != nil {
		_ = st.Reset()
		handshake(err)
		return err
	}
	if typ == frameReject {
		handshake(errors.New("rejected"))
	} else {
		handshake(nil)
	}
	var acc *pb.Accept
	switch typ {
	case frameAccept:
		acc, err = decodeControl(body, &pb.Accept{})
		if err != nil {
			_ = st.ResetWithError(network.StreamErrorCode(CodeProtocolViolation))
			return err
		}
		if !bytes.Equal(acc.Network, nw[:]) {
			_ = st.ResetWithError(network.StreamErrorCode(CodeDifferentNetwork))
			return &CodeError{Code: CodeDifferentNetwork, Reason: "producer accepted for another network"}
		}
		if !bytes.Equal(acc.Stream, c.id[:]) {
			_ = st.ResetWithError(network.StreamErrorCode(CodeStreamNotFound))
			return &CodeError{Code: CodeStreamNotFound, Reason: "producer accepted another stream"}
		}
	case frameReject:
		rej, err := decodeControl(body, &pb.Reject{})
		if err != nil {
			return err
		}
		return &CodeError{Code: Code(rej.Code), Reason: rej.Reason, Remote: true}
	default:
		_ = st.ResetWithError(network.StreamErrorCode(CodeProtocolViolation))
		return fmt.Errorf("%w: frame type %#x before Accept", errProtocol, typ)
	}
	_ = st.SetDeadline(time.Time{})
	c.hub.setState(r.ch, Connected, nil)
	// Where this producer's datums were last received decides what the
	// first sequence number of this subscription means: with the same
	// epoch, a jump is what was sent while we were away; with a new epoch,
	// the producer restarted; with no history, nothing was missed.
	epoch := acc.GetEpoch()
	c.mu.Lock()
	prev, known := c.seen[r.ch.peer]
	c.mu.Unlock()
	known = known && epoch != 0 && prev.epoch != 0
	cur := position{epoch: epoch}
	var next uint64 // the sequence number expected next; 0: none yet
	restart := known && prev.epoch != epoch
	if known && !restart {
		next, cur.last = prev.last+1, prev.last
	}
	if epoch != 0 {
		defer func() {
			if cur.last > 0 || cur.clean {
				c.remember(r.ch.peer, cur)
			}
		}()
	}
	first := true
	var bb *borrowBuf // the buffer of the frame just read (borrowing codecs)
	getBuf := func(n int) []byte { bb = c.getBuf(n); return bb.b }
	for {
		var typ byte
		var body []byte
		if c.borrow {
			typ, body, _, err = fr.nextInto(getBuf)
		} else {
			typ, body, err = fr.next()
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return &CodeError{Code: CodeUnexpectedClose, Reason: "stream ended without Close"}
			}
			if errors.Is(err, errProtocol) {
				_ = st.ResetWithError(network.StreamErrorCode(CodeProtocolViolation))
			}
			return err
		}
		switch typ {
		case frameData, frameDataTimed:
			var (
				seq     uint64
				payload []byte
				sent    time.Time
				err     error
			)
			if typ == frameData {
				seq, payload, err = parseData(body)
			} else if seq, sent, payload, err = parseTimed(body); err == nil {
				c.svc.latency.Record(ctx, time.Since(sent).Seconds(), c.attrs)
			}
			if err != nil || seq == 0 || seq < next {
				_ = st.ResetWithError(network.StreamErrorCode(CodeProtocolViolation))
				return fmt.Errorf("%w: sequence %d after %d", errProtocol, seq, cur.last)
			}
			var gap *Gap
			switch {
			case restart:
				restart = false
				if seq > 1 || !prev.clean {
					gap = &Gap{Cause: GapRestart, Missed: seq - 1, After: prev.last}
				}
			case next != 0 && seq > next:
				gap = &Gap{Cause: GapDropped, Missed: seq - next, After: cur.last}
				if first {
					gap.Cause = GapReconnect
				}
			}
			if gap != nil {
				r.ch.gaps.Add(gap.Missed)
				c.gaps.Add(gap.Missed)
				// Debug: the application sees it in RecvDatum and decides.
				c.log.Debug("datums missed", "peer", r.ch.peer, "cause", gap.Cause, "missed", gap.Missed, "after", gap.After)
			}
			first, next, cur.last = false, seq+1, seq
			v, err := c.codec.Decode(payload)
			if err != nil {
				_ = st.ResetWithError(network.StreamErrorCode(CodeProtocolViolation))
				return fmt.Errorf("%w: %v", errDecode, err)
			}
			d := delivery[T]{v: v, n: len(payload), seq: seq, ch: r.ch, gap: gap, bb: bb}
			select { // fast path: room in the buffer
			case c.out <- d:
			default:
				select {
				case c.out <- d:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			r.ch.datums.Add(1)
			r.ch.bytes.Add(uint64(len(payload)))
			*delivered = true
		case frameClose:
			cl, err := decodeControl(body, &pb.Close{})
			if err != nil {
				return err
			}
			cur.clean = Code(cl.Code) == CodeGracefulShutdown
			return &CodeError{Code: Code(cl.Code), Reason: cl.Reason, Remote: true}
		default:
			_ = st.ResetWithError(network.StreamErrorCode(CodeProtocolViolation))
			return fmt.Errorf("%w: unexpected frame type %#x", errProtocol, typ)
		}
	}
}
