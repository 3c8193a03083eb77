package streams

import (
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

// Producer fans datums of type T out to every eligible consumer of its
// stream, each over its own libp2p stream with its own bounded queue and
// writer goroutine. Each datum is encoded once. A consumer whose queue
// fills (WithQueueSize datums or Params.MaxQueueBytes bytes) and stays
// full for the lag grace is disconnected with TooSlow (or, with
// WithDropLagging, misses datums), and one whose stream takes nothing for
// Params.WriteTimeout is disconnected with TooSlow in either mode, so
// slow consumers hold Send back by one lag grace at most and pin bounded
// memory.
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

	// sendMu orders fan-out: held for a whole fanout, lag grace included,
	// so datums enter every queue in sequence order. Guards seq and each
	// outSub's fullSince. Lock order: sendMu, then mu.
	sendMu sync.Mutex
	seq    uint64 // sequence number of the last datum sent (fanned out)

	mu      sync.Mutex // guards subs, pending and closed; never held while waiting on a consumer
	subs    []*outSub
	pending int // accepts in progress holding a slot
	closed  bool
	epoch   uint64 // this run of the producer, sent in Accept; random, non-zero

	// Totals over every subscription, past ones included (for metrics).
	sent, sentBytes, dropped atomic.Uint64
	ends                     codeCounts
	peakQueued               atomic.Int64 // most payload bytes one subscription pinned (tests)

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
	p := &Producer[T]{svc: svc, id: id, name: name, codec: codec, cfg: cfg, hub: newHub(),
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
// subscription's queue. A full queue gets the lag grace (WithLagGrace) to
// make room; the graces of all full queues run concurrently, so Send waits
// for consumers at most one lag grace however many lag. A queue still full
// then disconnects its consumer (TooSlow) or drops the datum for it.
// Concurrent Sends are serialized (each datum enters every queue in
// sequence order), so a Send may also wait for another one's grace.
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
// grace); TrySend may still wait for a concurrent Send to finish its
// fan-out.
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
	s := newOutSub(&channel{stream: p.id, peer: peerID, entry: entry}, st, p.cfg.queue)
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

// Close stops the producer: Send fails from now on (a Send already fanning
// out finishes first, within one lag grace), each consumer receives
// what is already queued for it (bounded by CloseTimeout) and then a Close
// frame with GracefulShutdown, and the stream is withdrawn from the
// catalog entry. Idempotent.
func (p *Producer[T]) Close() error {
	p.once.Do(func() {
		// sendMu: a fan-out in its lag grace may be sending on the queues.
		p.sendMu.Lock()
		p.mu.Lock()
		p.closed = true
		for _, s := range p.subs {
			close(s.q)
		}
		p.mu.Unlock()
		p.sendMu.Unlock()
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
