package streams

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/mosaik-go/mosaik/catalog"
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
	svc         *Service
	id          StreamID
	name        string
	codec       Codec[T]
	cfg         *producerConfig
	log         *slog.Logger
	set         *subscriptionSet
	undelivered func(T)

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

	// window is the replay window (WithReplay), nil without one. Datums
	// are added under mu, so a subscription joining the fan-out under mu
	// knows every earlier datum is in it or gone from it.
	window            *window
	replayed, expired atomic.Uint64

	wg     sync.WaitGroup // the catalog watcher
	timers timerGroup     // ticket-expiry timers
	subWG  sync.WaitGroup // writers and consumer watchers
	ctx    context.Context
	cancel context.CancelFunc
	once   sync.Once
}

// NewProducer creates the producer of the stream named name (an ID by the
// string rule) on svc, advertises the stream in the local catalog entry and
// starts accepting consumers. A second producer of the same stream on one
// service fails with ErrProducerExists.
func NewProducer[T any](svc *Service, name string, opts ...ProducerOption) (*Producer[T], error) {
	cfg, codec, undelivered, err := newProducerConfig[T](svc, opts)
	if err != nil {
		return nil, err
	}
	id := catalog.IDFromString(name)
	p := &Producer[T]{svc: svc, id: id, name: name, codec: codec, cfg: cfg, set: newSubscriptionSet(svc.protect),
		log: svc.log.With("stream", id.Short(), "role", "producer"), epoch: newEpoch(), undelivered: undelivered}
	online := p.Subscribed()
	if cfg.onlineCondition != nil {
		online = cfg.onlineCondition(online)
	}
	p.set.update(func() { p.set.online = online })
	p.ctx, p.cancel = context.WithCancel(svc.ctx)
	p.startWindow()
	p.wg.Add(1)
	go p.watchCatalog()
	fail := func(err error) (*Producer[T], error) {
		p.cancel()
		p.wg.Wait()
		return nil, err
	}
	if err := svc.register(id, p); err != nil {
		return fail(err)
	}
	if _, err := svc.d.UpdateLocal(func(e *catalog.Entry) {
		e.Streams = append(e.Streams, id)
		e.Names = append(e.Names, name)
	}); err != nil {
		// Registered, so a subscription may have been accepted meanwhile:
		// Close ends it (and unregisters).
		_ = p.Close()
		return nil, err
	}
	// Service.Close may have closed the producer since it was registered,
	// before the stream was advertised: withdraw it again.
	p.mu.Lock()
	closed := p.closed
	p.mu.Unlock()
	if closed {
		p.withdraw()
		return nil, ErrClosed
	}
	return p, nil
}

func (p *Producer[T]) handle() HandleInfo {
	h := HandleInfo{Role: RoleProducer, Stream: p.id, Name: p.name, Online: p.IsOnline(), Subscriptions: p.Consumers(),
		Totals: Stats{Datums: p.sent.Load(), Bytes: p.sentBytes.Load(), Dropped: p.dropped.Load()}, Ends: p.ends.snapshot()}
	if p.window != nil {
		n, b := p.window.stats()
		h.Replay = &ReplayStats{Datums: n, Bytes: b, Replayed: p.replayed.Load(), Expired: p.expired.Load()}
	}
	return h
}

// StreamID is the producer's stream.
func (p *Producer[T]) StreamID() StreamID { return p.id }

// Subscribed is the condition "at least one connected consumer"; refine it
// with MinimumOf, WithTags, WithPredicate or Unmet, and wait with Wait.
func (p *Producer[T]) Subscribed() *Condition { return newCondition(p.set, 1) }

// Unsubscribed is Subscribed().Unmet().
func (p *Producer[T]) Unsubscribed() *Condition { return p.Subscribed().Unmet() }

// WaitOnline blocks until the producer is online (at once if it is), ctx
// ends, or the producer closes (ErrClosed).
func (p *Producer[T]) WaitOnline(ctx context.Context) error { return p.set.waitOnline(ctx, true) }

// WaitOffline blocks until the producer is offline (at once if it is), ctx
// ends, or the producer closes (ErrClosed).
func (p *Producer[T]) WaitOffline(ctx context.Context) error { return p.set.waitOnline(ctx, false) }

// IsOnline reports whether the online condition holds.
func (p *Producer[T]) IsOnline() bool { return p.set.isOn.Load() }

// Consumers returns a snapshot of the subscriptions.
func (p *Producer[T]) Consumers() []SubscriptionInfo { return p.set.infos() }

// Send waits until the producer is online, then hands v to every
// subscription's queue. A full queue gets the lag grace (WithLagGrace) to
// make room; the graces of all full queues run concurrently, so Send waits
// for consumers at most one lag grace however many lag. A queue still full
// then disconnects its consumer (TooSlow) or drops the datum for it. The
// grace counts from when a consumer's queue was first found full, across
// calls, until it has room again; a Send whose ctx ends before a
// consumer's grace is spent drops the datum for that consumer and does not
// cut it.
// Concurrent Sends are serialized (each datum enters every queue in
// sequence order), so a Send may also wait for another one's grace. A
// datum whose encoding does not fit in a frame (Params.MaxFrameSize less
// 21 bytes of header) is refused with ErrTooLarge.
func (p *Producer[T]) Send(ctx context.Context, v T) error {
	if !p.set.isOn.Load() {
		if err := p.WaitOnline(ctx); err != nil {
			return err
		}
	}
	return p.fanout(ctx, v, true)
}

// TrySend is Send without waiting: it returns ErrOffline when the producer
// is not online, ErrClosed after Close, and ErrFull when subscriptions
// exist but every queue was full. A full queue is not waited for: the
// datum is dropped for that consumer, which is cut (TooSlow, unless
// lagging consumers are dropped for) once its queue has been full for the
// lag grace, as with Send. TrySend may still wait for a concurrent Send
// to finish its fan-out.
func (p *Producer[T]) TrySend(v T) error {
	if !p.set.isOn.Load() {
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

// finish ends a subscription on the writer goroutine: a Close frame and a
// clean close when the ending allows it, a reset with the code otherwise.
// clean says that no frame is half written.
func (p *Producer[T]) finish(s *outSub, clean bool) {
	p.end(s, CodeGracefulShutdown, "producer closed", false) // no-op if already ended
	if !p.closeInBand(s) {
		return // already reset
	}
	if !clean {
		_ = s.st.ResetWithError(network.StreamErrorCode(s.code))
		return
	}
	_ = s.st.SetWriteDeadline(time.Now().Add(p.closeWait(s)))
	if _, err := s.st.Write(closeFrame(s.code, s.why)); err == nil {
		_ = s.st.CloseWrite()
		_ = s.st.Close()
		return
	}
	_ = s.st.ResetWithError(network.StreamErrorCode(s.code))
}

// watchConsumer notices a consumer that goes away: consumers never send
// after Subscribe, so a byte is a protocol violation and a reset ends the
// subscription. A half-close (EOF) is not a cancellation: the consumer
// still reads, and the producer goes on sending (PROTOCOL.md 16.3). After
// it, a reset by the consumer shows only on the next write (yamux keeps
// reporting EOF), which then ends the subscription.
//
// A consumer that speaks featureCloseFrames may send one Close frame,
// which ends the subscription with its code; nothing is sent back.
func (p *Producer[T]) watchConsumer(s *outSub) {
	defer p.subWG.Done()
	var (
		code Code
		why  string
		err  error
	)
	if s.inband {
		var typ byte
		var body []byte
		if typ, body, err = newFrameReader(s.st, 1+maxControlFrame).next(); err == nil {
			code, why, err = parseConsumerFrame(typ, body)
		}
	} else {
		var b [1]byte
		var n int
		if n, err = s.st.Read(b[:]); n > 0 {
			err = fmt.Errorf("%w: consumer sent bytes after Subscribe", errProtocol)
		}
	}
	select {
	case <-s.gone:
		return
	default:
	}
	switch {
	case err == nil:
		s.peerClosed.Store(true)
		p.end(s, code, "consumer closed: "+why, true)
	case errors.Is(err, io.EOF):
		p.log.Debug("consumer closed its write side; still sending", "peer", s.sub.peer)
	case errors.Is(err, errProtocol):
		p.end(s, CodeProtocolViolation, err.Error(), true)
	default:
		if code, ok := resetCode(err); ok {
			s.peerReset.Store(true)
			p.end(s, code, "consumer reset the stream: "+err.Error(), true)
			return
		}
		p.end(s, CodeCancelled, "consumer gone: "+err.Error(), true)
	}
}

// resetCode is the code of a stream reset by the remote side with a
// non-zero code: the reason the subscription ended (PROTOCOL.md 16.3).
func resetCode(err error) (Code, bool) {
	var se *network.StreamError
	if errors.As(err, &se) && se.Remote && se.ErrorCode != 0 {
		return Code(se.ErrorCode), true
	}
	return 0, false
}

// closeInBand reports whether an ended subscription is closed by the
// writer with a Close frame, rather than already reset by end.
func (p *Producer[T]) closeInBand(s *outSub) bool {
	if s.peerReset.Load() {
		return false
	}
	switch s.code {
	case CodeUnexpectedClose, CodeCancelled:
		return false // the stream is dead, or the consumer reset it
	case CodeTooSlow, CodeProtocolViolation:
		return s.inband && !s.peerClosed.Load()
	}
	return !s.peerClosed.Load()
}

// inBandCutGrace bounds the attempt to send a cut (TooSlow,
// ProtocolViolation) as a Close frame before resetting: such a consumer is
// not expected to make room.
const inBandCutGrace = 250 * time.Millisecond

// closeWait is how long the writer may take to send an ended subscription
// its Close frame.
func (p *Producer[T]) closeWait(s *outSub) time.Duration {
	if s.code == CodeTooSlow || s.code == CodeProtocolViolation {
		return min(p.svc.params.CloseTimeout, inBandCutGrace)
	}
	return p.svc.params.CloseTimeout
}

// end removes a subscription once, recording why. With reset, the stream
// is reset at once with the code (the writer may be blocked on a consumer
// that stopped reading), unless the consumer takes in-band Close frames:
// then the writer is woken by a short write deadline and sends one if no
// frame is half written (see finish). Otherwise the writer sends a Close
// frame.
func (p *Producer[T]) end(s *outSub, code Code, why string, reset bool) {
	s.once.Do(func() {
		s.code, s.why = code, why
		p.ends.add(code)
		p.mu.Lock()
		if i := slices.Index(p.subs, s); i >= 0 {
			p.subs = slices.Delete(p.subs, i, i+1)
		}
		s.removed = true
		if s.expiry != nil {
			s.expiry.Stop()
		}
		p.mu.Unlock()
		if reset && !p.closeInBand(s) {
			_ = s.st.ResetWithError(network.StreamErrorCode(code))
		} else {
			// The writer may be blocked on a consumer that stopped reading:
			// bound it, so its Close frame fails and the stream is reset.
			// endBy lets a writer that set its own deadline meanwhile put
			// this one back (deadlineWriter).
			by := time.Now().Add(p.closeWait(s))
			s.endBy.Store(by.UnixNano())
			_ = s.st.SetWriteDeadline(by)
		}
		close(s.gone)
		p.set.setState(s.sub, Terminated, &CodeError{Code: code, Reason: why, Remote: s.peerReset.Load()})
		p.set.remove(s.sub)
		switch {
		case code == CodeGracefulShutdown || code == CodeCancelled:
		case s.peerReset.Load():
			p.log.Debug("the consumer reset the subscription", "peer", s.sub.peer, "code", code)
		case code == CodeTooSlow || code == CodeNotAllowed || code == CodeUnknownPeer:
			p.log.Info("consumer cut", "peer", s.sub.peer, "code", code, "why", why)
		default:
			p.log.Debug("subscription ended", "peer", s.sub.peer, "code", code, "why", why)
		}
	})
}

// Close stops the producer: Send fails from now on, each consumer receives
// what is already queued for it and then a Close frame with
// GracefulShutdown, and the stream is withdrawn from the catalog entry.
// Consumers that have not taken their datums after Params.CloseTimeout are
// cut (reset), so Close returns within about CloseTimeout (plus at most
// one lag grace, while a Send already fanning out finishes, and the
// require predicates and ticket checks of consumers being accepted, which
// it waits for); no timer callback or predicate of the producer runs after
// it returns. Service.Close closes the
// producers created on it. Idempotent; safe to call concurrently.
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
		p.wg.Wait() // accepts under way too (accept): no predicate runs after Close
		p.timers.stop()
		// Withdraw before unregistering: a NewProducer of the same stream
		// can only register after that, so its advertisement comes after
		// this withdrawal. The other order let this withdrawal delete the
		// new producer's advertisement, leaving it unfindable.
		p.withdraw()
		p.svc.unregister(p.id, p)
		p.set.close()
	})
	return nil
}

// withdraw removes the stream from the local catalog entry.
func (p *Producer[T]) withdraw() {
	_, _ = p.svc.d.UpdateLocal(func(e *catalog.Entry) {
		e.Streams = slices.DeleteFunc(e.Streams, func(x catalog.StreamID) bool { return x == p.id })
	})
}

// newEpoch returns a random non-zero producer epoch.
func newEpoch() uint64 {
	for {
		if e := rand.Uint64(); e != 0 {
			return e
		}
	}
}
