package streams

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/streams/pb"
)

// outItem is one encoded datum queued for one subscription; the payload
// slice is shared by every queue (encoded once, never copied here).
type outItem struct {
	payload []byte
	seq     uint64
}

// writers pools the writers' buffers, so an idle subscription holds none.
var writers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 32<<10) }}

// outSub is one consumer's subscription at a producer.
type outSub struct {
	ch        *channel
	st        network.Stream
	q         chan outItem
	fullSince time.Time // when its queue was first found full; guarded by Producer.mu
	expiry    *time.Timer

	once sync.Once
	code Code // why the subscription ended; set once in end
	why  string
	gone chan struct{} // closed by end
}

// Producer fans datums of type T out to every eligible consumer of its
// stream, each over its own libp2p stream with its own bounded queue and
// writer goroutine. Each datum is encoded once. A consumer whose queue
// fills is disconnected with TooSlow (or, with WithDropLagging, misses
// datums), so a slow consumer never stalls Send.
//
// Safe for concurrent use; Close ends it.
type Producer[T any] struct {
	svc   *Service
	id    StreamID
	name  string
	codec Codec[T]
	cfg   *config
	log   *slog.Logger
	hub   *hub
	undel func(T)

	mu      sync.Mutex // orders fan-out; guards subs, pending, closed and seq
	subs    []*outSub
	pending int // accepts in progress holding a slot
	closed  bool
	seq     uint64 // sequence number of the last datum sent (fanned out)
	epoch   uint64 // this run of the producer, sent in Accept; random, non-zero

	// Totals over every subscription, past ones included (for metrics).
	sent, sentBytes, dropped atomic.Uint64
	ends                     codeCounts

	wg     sync.WaitGroup // the catalog watcher
	subWG  sync.WaitGroup // writers and consumer watchers
	ctx    context.Context
	cancel context.CancelFunc
	once   sync.Once
}

// NewProducer creates the producer of the stream named name (an ID by the
// string rule) on svc, advertises the stream in the local catalog entry and
// starts accepting consumers. A second producer of the same stream on one
// service fails with ErrProducerExists.
func NewProducer[T any](svc *Service, name string, opts ...Option) (*Producer[T], error) {
	cfg, codec, err := newConfig[T](producerSide, opts)
	if err != nil {
		return nil, err
	}
	id := catalog.IDFromString(name)
	p := &Producer[T]{svc: svc, id: id, name: name, codec: codec, cfg: cfg, hub: newHub(svc.protect),
		log: svc.log.With("stream", id.Short(), "role", "producer"), epoch: newEpoch()}
	if f, ok := cfg.undelivered.(func(T)); ok {
		p.undel = f
	}
	when := (When{p.hub}).Subscribed()
	if cfg.onlineWhen != nil {
		when = cfg.onlineWhen(when)
	}
	p.hub.update(func() { p.hub.online = when })
	p.ctx, p.cancel = context.WithCancel(svc.ctx)
	if err := svc.register(id, p); err != nil {
		p.cancel()
		return nil, err
	}
	if _, err := svc.d.UpdateLocal(func(e *catalog.Entry) {
		e.Streams = append(e.Streams, id)
		e.Names = append(e.Names, name)
	}); err != nil {
		svc.unregister(id, p)
		p.cancel()
		return nil, err
	}
	p.wg.Add(1)
	go p.watchCatalog()
	return p, nil
}

func (p *Producer[T]) handle() HandleInfo {
	return HandleInfo{Role: RoleProducer, Stream: p.id, Name: p.name, Online: p.IsOnline(), Channels: p.Consumers(),
		Totals: Stats{Datums: p.sent.Load(), Bytes: p.sentBytes.Load(), Dropped: p.dropped.Load()}, Ends: p.ends.snapshot()}
}

// StreamID is the producer's stream.
func (p *Producer[T]) StreamID() StreamID { return p.id }

// When observes the producer's subscriptions and online state.
func (p *Producer[T]) When() When { return When{p.hub} }

// IsOnline reports whether the online condition holds.
func (p *Producer[T]) IsOnline() bool { return p.hub.isOn.Load() }

// Consumers returns a snapshot of the subscriptions.
func (p *Producer[T]) Consumers() []ChannelInfo { return p.hub.infos() }

// Send waits until the producer is online, then hands v to every
// subscription's queue. It never waits on a consumer: a full queue
// disconnects that consumer (TooSlow) or drops the datum for it.
func (p *Producer[T]) Send(ctx context.Context, v T) error {
	if !p.hub.isOn.Load() {
		if err := p.When().Online(ctx); err != nil {
			return err
		}
	}
	return p.fanout(ctx, v, true)
}

// TrySend is Send without waiting: it returns ErrOffline when the producer
// is not online, ErrClosed after Close, and ErrFull when subscriptions
// exist but every queue was full. A full queue is handled at once (no lag
// grace).
func (p *Producer[T]) TrySend(v T) error {
	if !p.hub.isOn.Load() {
		p.mu.Lock()
		closed := p.closed
		p.mu.Unlock()
		if closed {
			return ErrClosed
		}
		return ErrOffline
	}
	return p.fanout(context.Background(), v, false)
}

// fanout encodes v once and queues it for every subscription. When a queue
// is full and wait is set, it waits up to the lag grace (shared by all the
// queues of this call) for room: a consumer whose writer was merely not
// scheduled yet is not a lagging one. After that, the consumer is cut with
// TooSlow, or the datum is dropped for it in drop mode.
func (p *Producer[T]) fanout(ctx context.Context, v T, wait bool) error {
	payload, err := p.codec.Encode(v)
	if err != nil {
		return err
	}
	var cut []*outSub
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return ErrClosed
	}
	// One sequence number per datum for every subscription: a consumer
	// that misses datums (dropped for it, or sent while it was not
	// subscribed) sees exactly how many by the jump.
	p.seq++
	it := outItem{payload: payload, seq: p.seq}
	delivered := 0
	for _, s := range p.subs {
		select {
		case s.q <- it:
			delivered++
			s.fullSince = time.Time{} // it has room: not lagging
			continue
		default:
		}
		// The grace is per consumer and cumulative from the first time its
		// queue was found full until it next has room at once, so a
		// consumer that frees a slot now and then cannot hold Send back
		// forever: it is cut (or dropped for) once the grace is spent.
		now := time.Now()
		if s.fullSince.IsZero() {
			s.fullSince = now
		}
		if left := p.cfg.lagGrace - now.Sub(s.fullSince); wait && left > 0 && ctx.Err() == nil {
			t := time.NewTimer(left)
			select {
			case s.q <- it:
				t.Stop()
				delivered++
				continue
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
			}
		}
		s.ch.dropped.Add(1)
		p.dropped.Add(1)
		if !p.cfg.dropLagging {
			cut = append(cut, s)
		}
	}
	n := len(p.subs)
	p.mu.Unlock()
	for _, s := range cut {
		p.end(s, CodeTooSlow, "consumer queue full", true)
	}
	if delivered == 0 {
		if p.undel != nil {
			p.undel(v)
		}
		if n > 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
			return ErrFull
		}
	}
	return nil
}

// accept runs the producer part of the accept path: capacity, a fresh RTT
// sample, require predicates, tickets. Called by the service.
func (p *Producer[T]) accept(st network.Stream, sub *pb.Subscribe, entry *catalog.SignedEntry) {
	peerID := st.Conn().RemotePeer()
	// Reserve a slot under the lock, so concurrent accepts cannot exceed
	// max consumers; every exit below releases or converts it.
	p.mu.Lock()
	closed, full := p.closed, p.cfg.maxConsumers > 0 && len(p.subs)+p.pending >= p.cfg.maxConsumers
	if !closed && !full {
		p.pending++
	}
	p.mu.Unlock()
	if closed {
		p.svc.reject(st, CodeStreamNotFound, "producer closed")
		return
	}
	if full {
		p.svc.reject(st, CodeNoCapacity, "max consumers reached")
		return
	}
	admitted := false
	defer func() {
		if !admitted {
			p.mu.Lock()
			p.pending--
			p.mu.Unlock()
		}
	}()
	// A fresh RTT sample, so RTT predicates never judge a consumer blind.
	pctx, cancel := context.WithTimeout(p.ctx, p.svc.params.HandshakeTimeout)
	_, perr := p.svc.d.Probe(pctx, peerID)
	cancel()
	if perr != nil {
		p.log.Debug("no RTT sample at accept", "peer", peerID, "err", perr)
	}
	info := p.svc.d.RTT().Info(entry)
	expires, code, err := p.cfg.eligible(info, time.Now())
	if err != nil {
		p.svc.reject(st, code, err.Error())
		return
	}
	nw := p.svc.d.Network()
	accept, _ := appendControl(nil, frameAccept, &pb.Accept{Network: nw[:], Stream: p.id[:], Epoch: p.epoch})
	_ = st.SetWriteDeadline(time.Now().Add(p.svc.params.HandshakeTimeout))
	if _, err := st.Write(accept); err != nil {
		_ = st.Reset()
		return
	}
	_ = st.SetWriteDeadline(time.Time{})
	s := &outSub{
		ch: &channel{stream: p.id, peer: peerID, entry: entry},
		st: st, q: make(chan outItem, p.cfg.queue), gone: make(chan struct{}),
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		_ = st.ResetWithError(network.StreamErrorCode(CodeGracefulShutdown))
		return
	}
	p.subs = append(p.subs, s)
	p.pending--
	admitted = true
	p.subWG.Add(2)
	p.mu.Unlock()
	p.svc.Accepted.Add(1)
	p.hub.add(s.ch)
	p.hub.setState(s.ch, Connected, nil)
	p.armExpiry(s, expires)
	p.log.Debug("consumer accepted", "peer", peerID)
	go p.writer(s)
	go p.watchConsumer(s)
}

// armExpiry (re)sets the subscription's ticket-expiry timer: a renewed
// ticket in a newer entry pushes it back without interrupting the stream.
// The timer belongs to this subscription, so it never cuts a later one.
func (p *Producer[T]) armExpiry(s *outSub, expires time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case expires.IsZero():
		if s.expiry != nil {
			s.expiry.Stop()
		}
	case s.expiry == nil:
		s.expiry = time.AfterFunc(time.Until(expires), func() { p.end(s, CodeNotAllowed, "ticket expired", false) })
	default:
		s.expiry.Reset(time.Until(expires))
	}
}

// writer sends one subscription's queue in order, batching whatever is
// queued into one flush.
func (p *Producer[T]) writer(s *outSub) {
	defer p.subWG.Done()
	var hdr [32]byte
	var bw *bufio.Writer // held only while a batch is being written
	var lastStamp time.Time
	stamp := false       // stamp the next datum with its write time (latency samples)
	var n, nbytes uint64 // written in this batch, counted once it is flushed
	write := func(it outItem) error {
		h := hdr[:0]
		if stamp {
			now := time.Now()
			h, stamp, lastStamp = timedHeader(h, it.seq, uint64(now.UnixMicro()), len(it.payload)), false, now
		} else {
			h = dataHeader(h, it.seq, len(it.payload))
		}
		if _, err := bw.Write(h); err != nil {
			return err
		}
		_, err := bw.Write(it.payload)
		if err == nil {
			n++
			nbytes += uint64(len(it.payload))
		}
		return err
	}
	release := func() {
		bw.Reset(nil)
		writers.Put(bw)
		bw = nil
	}
	for {
		var (
			it  outItem
			ok  bool
			err error
		)
		select {
		case it, ok = <-s.q:
		case <-s.gone:
			p.finish(s)
			return
		}
		if !ok { // Close: the queue is drained
			p.finish(s)
			return
		}
		bw = writers.Get().(*bufio.Writer)
		bw.Reset(s.st)
		// At most one latency sample per subscription every 100 ms, taken
		// at the start of a batch (one clock read per batch otherwise).
		stamp = time.Since(lastStamp) >= 100*time.Millisecond
		if err = write(it); err == nil {
		drain:
			for {
				select {
				case it, ok = <-s.q:
					if !ok {
						break drain
					}
					if err = write(it); err != nil {
						break drain
					}
				default:
					break drain
				}
			}
		}
		if err == nil {
			err = bw.Flush()
		}
		if err == nil {
			s.ch.datums.Add(n)
			s.ch.bytes.Add(nbytes)
			p.sent.Add(n)
			p.sentBytes.Add(nbytes)
		}
		n, nbytes = 0, 0
		release()
		if err != nil {
			p.end(s, CodeUnexpectedClose, err.Error(), true)
			p.finish(s)
			return
		}
		if !ok {
			p.finish(s)
			return
		}
	}
}

// finish ends a subscription on the writer goroutine: a Close frame and a
// clean close when the ending allows it, a reset otherwise.
func (p *Producer[T]) finish(s *outSub) {
	p.end(s, CodeGracefulShutdown, "producer closed", false) // no-op if already ended
	select {
	case <-s.gone:
	default:
	}
	if s.code == CodeTooSlow || s.code == CodeUnexpectedClose || s.code == CodeCancelled {
		return // already reset
	}
	_ = s.st.SetWriteDeadline(time.Now().Add(p.svc.params.CloseTimeout))
	if _, err := s.st.Write(closeFrame(s.code, s.why)); err == nil {
		_ = s.st.CloseWrite()
		_ = s.st.Close()
		return
	}
	_ = s.st.ResetWithError(network.StreamErrorCode(s.code))
}

// watchConsumer notices a consumer that goes away: consumers never send
// after Subscribe, so any read result ends the subscription.
func (p *Producer[T]) watchConsumer(s *outSub) {
	defer p.subWG.Done()
	var b [1]byte
	_, err := s.st.Read(b[:])
	select {
	case <-s.gone:
		return
	default:
	}
	if err == nil || errors.Is(err, io.EOF) {
		p.end(s, CodeCancelled, "consumer closed", true)
		return
	}
	p.end(s, CodeCancelled, "consumer gone: "+err.Error(), true)
}

// end removes a subscription once, recording why. With reset, the stream
// is reset at once with the code (the writer may be blocked on a consumer
// that stopped reading); otherwise the writer sends a Close frame.
func (p *Producer[T]) end(s *outSub, code Code, why string, reset bool) {
	s.once.Do(func() {
		s.code, s.why = code, why
		p.ends.add(code)
		p.mu.Lock()
		if i := slices.Index(p.subs, s); i >= 0 {
			p.subs = slices.Delete(p.subs, i, i+1)
		}
		if s.expiry != nil {
			s.expiry.Stop()
		}
		p.mu.Unlock()
		if reset {
			_ = s.st.ResetWithError(network.StreamErrorCode(code))
		} else {
			// The writer may be blocked on a consumer that stopped reading:
			// bound it, so its Close frame fails and the stream is reset.
			_ = s.st.SetWriteDeadline(time.Now().Add(p.svc.params.CloseTimeout))
		}
		close(s.gone)
		p.hub.setState(s.ch, Terminated, &CodeError{Code: code, Reason: why})
		p.hub.remove(s.ch)
		switch code {
		case CodeGracefulShutdown, CodeCancelled:
		case CodeTooSlow, CodeNotAllowed, CodeUnknownPeer:
			p.log.Info("consumer cut", "peer", s.ch.peer, "code", code, "why", why)
		default:
			p.log.Debug("subscription ended", "peer", s.ch.peer, "code", code, "why", why)
		}
	})
}

// watchCatalog re-checks every subscription when the catalog changes: the
// consumer's current entry and RTT against the predicates and tickets.
func (p *Producer[T]) watchCatalog() {
	defer p.wg.Done()
	snap := p.svc.d.Catalog()
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-snap.Changed():
		}
		snap = p.svc.d.Catalog() // evaluate exactly the snapshot waited on next
		p.mu.Lock()
		subs := slices.Clone(p.subs)
		p.mu.Unlock()
		now := time.Now()
		for _, s := range subs {
			e, ok := snap.Get(s.ch.peer)
			if !ok {
				// The consumer departed, or went silent for PurgeAfter: on a
				// link that died without a reset (a partition) this is how
				// the producer notices. A consumer that is still there gets
				// UnknownPeer, syncs catalogs and resubscribes.
				p.end(s, CodeUnknownPeer, "consumer left the catalog", false)
				continue
			}
			// Through the hub, so online conditions over tags see the change.
			p.hub.update(func() {
				s.ch.mu.Lock()
				s.ch.entry = e
				s.ch.mu.Unlock()
			})
			expires, _, err := p.cfg.eligible(p.svc.d.RTT().Info(e), now)
			if err != nil {
				p.end(s, CodeNotAllowed, err.Error(), false)
				continue
			}
			p.armExpiry(s, expires)
		}
	}
}

// Close stops the producer: Send fails from now on, each consumer receives
// what is already queued for it (bounded by CloseTimeout) and then a Close
// frame with GracefulShutdown, and the stream is withdrawn from the
// catalog entry. Idempotent.
func (p *Producer[T]) Close() error {
	p.once.Do(func() {
		p.mu.Lock()
		p.closed = true
		for _, s := range p.subs {
			close(s.q)
		}
		p.mu.Unlock()
		// Writers drain their queues; a consumer that does not take its
		// datums within CloseTimeout is cut.
		done := make(chan struct{})
		go func() {
			p.subWG.Wait()
			close(done)
		}()
		t := time.NewTimer(p.svc.params.CloseTimeout)
		select {
		case <-done:
		case <-t.C:
			p.mu.Lock()
			subs := slices.Clone(p.subs)
			p.mu.Unlock()
			for _, s := range subs {
				p.end(s, CodeTooSlow, "did not drain before close", true)
			}
		}
		t.Stop()
		p.cancel()
		p.subWG.Wait()
		p.wg.Wait()
		p.svc.unregister(p.id, p)
		_, _ = p.svc.d.UpdateLocal(func(e *catalog.Entry) {
			e.Streams = slices.DeleteFunc(e.Streams, func(x catalog.StreamID) bool { return x == p.id })
		})
		p.hub.close()
	})
	return nil
}

// newEpoch returns a random non-zero producer epoch.
func newEpoch() uint64 {
	for {
		if e := rand.Uint64(); e != 0 {
			return e
		}
	}
}
