package streams

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cenkalti/backoff/v4"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/policy"
)

// Params tunes the streams service. Start from [DefaultParams].
type Params struct {
	// MaxFrameSize caps one frame (a datum plus a few header bytes). A
	// larger declared length is refused before anything is allocated.
	// Default 4 MiB.
	MaxFrameSize int
	// HandshakeTimeout bounds the Subscribe/Accept exchange on both sides.
	// Default 10 s.
	HandshakeTimeout time.Duration
	// CloseTimeout bounds how long a producer's Close waits for a consumer
	// to take the datums still queued for it, and how long a consumer
	// keeps reading a producer that withdrew the stream or departed (the
	// last datums and its Close frame may still be on the link). Default
	// 5 s.
	CloseTimeout time.Duration
	// WriteTimeout bounds how long a producer's write to one consumer's
	// stream may block. Writes carry at most 64 KiB, so it measures a
	// stall, not a slow link: a consumer that takes nothing for that long
	// (it stopped reading, or its link died without a reset) is cut with
	// TooSlow, in drop mode as well. Default 30 s: far above a live
	// consumer's pauses (its own buffer absorbs those first), and equal to
	// yamux's keep-alive interval, the pace at which a dead connection is
	// noticed anyway.
	WriteTimeout time.Duration
	// MaxQueueBytes bounds the payload bytes a producer pins for one
	// consumer: its queue plus the datum being written. A datum that does
	// not fit is treated like a full queue (lag grace, then TooSlow, or a
	// drop in drop mode). A consumer that pins nothing always takes one
	// datum, so the bound is the larger of MaxQueueBytes and one datum.
	// Payloads are shared by all queues, so the producer's memory is at
	// most the sum over consumers, usually far less. Default 64 MiB:
	// sixteen frames of the default MaxFrameSize, and 1024 datums (the
	// default queue) of 64 KiB, so with datums up to 64 KiB the queue is
	// bounded by datums before bytes.
	MaxQueueBytes int
}

// DefaultParams returns the production defaults.
func DefaultParams() Params {
	return Params{MaxFrameSize: 4 << 20, HandshakeTimeout: 10 * time.Second, CloseTimeout: 5 * time.Second,
		WriteTimeout: 30 * time.Second, MaxQueueBytes: 64 << 20}
}

// Validate reports every invalid field; it does not modify p.
func (p Params) Validate() error {
	var errs []error
	if p.MaxFrameSize < 1024 || p.MaxFrameSize > 1<<30 {
		errs = append(errs, fmt.Errorf("MaxFrameSize must be within [1 KiB, 1 GiB], got %d", p.MaxFrameSize))
	}
	if p.HandshakeTimeout <= 0 || p.CloseTimeout <= 0 {
		errs = append(errs, fmt.Errorf("HandshakeTimeout and CloseTimeout must be > 0"))
	}
	if p.WriteTimeout <= 0 {
		errs = append(errs, fmt.Errorf("WriteTimeout must be > 0, got %v", p.WriteTimeout))
	}
	if p.MaxQueueBytes < 1 {
		errs = append(errs, fmt.Errorf("MaxQueueBytes must be >= 1, got %d", p.MaxQueueBytes))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("streams: invalid params: %w", err)
	}
	return nil
}

// ServiceOption configures a [Service].
type ServiceOption func(*Service) error

// WithParams sets the service parameters.
func WithParams(p Params) ServiceOption {
	return func(s *Service) error {
		if err := p.Validate(); err != nil {
			return err
		}
		s.params = p
		return nil
	}
}

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) ServiceOption {
	return func(s *Service) error {
		if l == nil {
			return errors.New("streams: WithLogger(nil)")
		}
		s.log = l
		return nil
	}
}

// WithMeterProvider sets the OpenTelemetry meter provider (default the
// global one, a no-op unless an SDK is installed).
func WithMeterProvider(mp metric.MeterProvider) ServiceOption {
	return func(s *Service) error { s.meter = mp; return nil }
}

// WithTracerProvider sets the OpenTelemetry tracer provider for subscribe
// spans (default the global one, a no-op unless an SDK is installed).
func WithTracerProvider(tp trace.TracerProvider) ServiceOption {
	return func(s *Service) error { s.tracerP = tp; return nil }
}

// Predicate judges a remote peer: its signed entry and RTT (see package
// policy for combinators). Predicates must be fast and must not block.
type Predicate = policy.Predicate

// TicketCheck validates the tickets of a remote peer's entry at now. It
// returns when the authorization expires (the zero time for never), or an
// error if the peer is not authorized. Package policy provides
// implementations (JWT, libp2p-signed tickets).
type TicketCheck interface {
	Check(e *catalog.Entry, now time.Time) (expires time.Time, err error)
}

// side says which handle an option applies to.
type side int

const (
	producerSide side = 1 << iota
	consumerSide
)

type config struct {
	side         side
	codec        any
	require      []Predicate
	tickets      []TicketCheck
	onlineWhen   func(*Condition) *Condition
	maxConsumers int
	queue        int
	dropLagging  bool
	lagGrace     time.Duration
	undelivered  any
	backoff      func() backoff.BackOff
	buffer       int
	lowestK      int
	hysteresis   float64
	criteria     []byte
}

// Option configures a [Producer] or a [Consumer]. Options that apply to
// only one of them make the other's constructor fail.
type Option func(*config) error

func only(s side, name string, f func(*config) error) Option {
	return func(c *config) error {
		if c.side&s == 0 {
			who := "producers"
			if s == consumerSide {
				who = "consumers"
			}
			return fmt.Errorf("streams: %s applies only to %s", name, who)
		}
		return f(c)
	}
}

// WithCodec sets the datum codec (default CBOR[T]). Its type parameter
// must match the handle's.
func WithCodec[T any](c Codec[T]) Option {
	return func(cfg *config) error { cfg.codec = c; return nil }
}

// WithRequire adds an eligibility predicate over the remote peer: on a
// producer it judges consumers at accept time and on every catalog change;
// on a consumer it judges producers before subscribing and on every
// catalog change. Repeated predicates are ANDed.
func WithRequire(p Predicate) Option {
	return func(c *config) error { c.require = append(c.require, p); return nil }
}

// WithRequireTags requires the remote peer to carry every one of tags.
func WithRequireTags(tags ...string) Option {
	ids := make([]catalog.Tag, len(tags))
	for i, t := range tags {
		ids[i] = catalog.IDFromString(t)
	}
	return WithRequire(func(pi catalog.PeerInfo) bool { return pi.Entry.Entry.HasTags(ids...) })
}

// WithMaxRTT requires the remote peer's smoothed RTT to be below d. Without
// a sample the consumer probes first; the producer always samples at accept.
func WithMaxRTT(d time.Duration) Option {
	return WithRequire(func(pi catalog.PeerInfo) bool { return pi.RTTBelow(d) })
}

// WithTickets adds ticket checks; all must pass, and the earliest expiry
// applies.
func WithTickets(checks ...TicketCheck) Option {
	return func(c *config) error { c.tickets = append(c.tickets, checks...); return nil }
}

// WithTicketValidators requires the remote peer to hold a valid ticket for
// every validator (package policy: JWT, libp2p-signed tickets). The
// subscription ends when the earliest of those tickets expires, unless the
// peer's entry carries a renewed ticket by then.
func WithTicketValidators(vs ...policy.TicketValidator) Option {
	return WithTickets(policy.Require(vs...))
}

// WithOnlineWhen sets the online condition from the handle's Subscribed()
// condition, e.g. func(c *Condition) *Condition { return c.MinimumOf(2).WithTags(v) }.
// Defaults: producers need one connected consumer; consumers are online
// at once.
func WithOnlineWhen(f func(*Condition) *Condition) Option {
	return func(c *config) error { c.onlineWhen = f; return nil }
}

// WithMaxConsumers caps a producer's concurrent subscriptions (default
// unlimited); more are rejected with NoCapacity.
func WithMaxConsumers(n int) Option {
	return only(producerSide, "WithMaxConsumers", func(c *config) error {
		if n < 1 {
			return fmt.Errorf("streams: WithMaxConsumers(%d): must be >= 1", n)
		}
		c.maxConsumers = n
		return nil
	})
}

// WithQueueSize sets a producer's per-consumer queue (default 1024 datums).
// The queue is also bounded in bytes by Params.MaxQueueBytes; whichever
// bound is reached first makes the queue full.
func WithQueueSize(n int) Option {
	return only(producerSide, "WithQueueSize", func(c *config) error {
		if n < 1 {
			return fmt.Errorf("streams: WithQueueSize(%d): must be >= 1", n)
		}
		c.queue = n
		return nil
	})
}

// WithDropLagging makes a producer drop datums for a consumer whose queue is
// full (counted in its Stats.Dropped and seen by the consumer as a gap)
// instead of disconnecting it with TooSlow, the default. The newest datum
// is the one dropped: what is queued is delivered in order. Drop mode
// tolerates a slow consumer, not a stopped one: a consumer whose stream
// takes nothing for Params.WriteTimeout is still cut with TooSlow, and
// its queue's memory is bounded by Params.MaxQueueBytes meanwhile.
func WithDropLagging() Option {
	return only(producerSide, "WithDropLagging", func(c *config) error { c.dropLagging = true; return nil })
}

// WithLagGrace sets how long, in total, Send may wait for room in one
// consumer's full queue before treating the consumer as lagging (default
// 100 ms; 0 cuts at once). The grace runs from the first time the queue is
// found full until it next has room at once, so it absorbs scheduling
// hiccups of a healthy consumer's writer, while a stuck or trickling
// consumer spends it once and is then cut (or dropped for). The graces of
// several consumers run concurrently: one Send waits at most one grace,
// however many consumers lag. TrySend never waits.
func WithLagGrace(d time.Duration) Option {
	return only(producerSide, "WithLagGrace", func(c *config) error {
		if d < 0 {
			return fmt.Errorf("streams: WithLagGrace(%v): must be >= 0", d)
		}
		c.lagGrace = d
		return nil
	})
}

// WithUndelivered sets a sink for datums that reached no consumer. It must
// be fast and must not block.
func WithUndelivered[T any](f func(T)) Option {
	return only(producerSide, "WithUndelivered", func(c *config) error { c.undelivered = f; return nil })
}

// WithBackoff sets the consumer's reconnect policy; f makes a fresh policy
// per producer. Default: exponential from 500 ms, ×1.5, ±50 %, capped at
// 60 s, giving up after 5 min without a datum.
func WithBackoff(f func() backoff.BackOff) Option {
	return only(consumerSide, "WithBackoff", func(c *config) error { c.backoff = f; return nil })
}

// WithBuffer sets the consumer's delivery buffer (default 1024 datums).
// When it is full the consumer stops reading from producers, so flow
// control reaches them and their lagging policy decides. The bound is in
// datums: its memory is at most n × the largest datum (Params.MaxFrameSize).
func WithBuffer(n int) Option {
	return only(consumerSide, "WithBuffer", func(c *config) error {
		if n < 1 {
			return fmt.Errorf("streams: WithBuffer(%d): must be >= 1", n)
		}
		c.buffer = n
		return nil
	})
}

// WithLowestRTT makes the consumer subscribe only to the k eligible
// producers with the lowest RTT. It switches to a better producer only when
// that one's RTT is below the worst chosen one's by more than the
// hysteresis fraction (e.g. 0.2 = 20 %), so small fluctuations do not churn
// subscriptions. Producers without an RTT sample are probed first.
func WithLowestRTT(k int, hysteresis float64) Option {
	return only(consumerSide, "WithLowestRTT", func(c *config) error {
		if k < 1 || hysteresis < 0 || hysteresis >= 1 {
			return fmt.Errorf("streams: WithLowestRTT(%d, %v): need k >= 1 and 0 <= hysteresis < 1", k, hysteresis)
		}
		c.lowestK, c.hysteresis = k, hysteresis
		return nil
	})
}

func defaultBackoff() backoff.BackOff {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 500 * time.Millisecond
	b.Multiplier = 1.5
	b.RandomizationFactor = 0.5
	b.MaxInterval = 60 * time.Second
	b.MaxElapsedTime = 5 * time.Minute
	b.Reset()
	return b
}

func newConfig[T any](s side, opts []Option) (*config, Codec[T], error) {
	c := &config{side: s, queue: 1024, buffer: 1024, backoff: defaultBackoff, lagGrace: 100 * time.Millisecond}
	for _, o := range opts {
		if err := o(c); err != nil {
			return nil, nil, err
		}
	}
	var codec Codec[T] = CBOR[T]{}
	if c.codec != nil {
		cc, ok := c.codec.(Codec[T])
		if !ok {
			return nil, nil, fmt.Errorf("streams: codec %T does not encode %T", c.codec, *new(T))
		}
		codec = cc
	}
	if c.undelivered != nil {
		if _, ok := c.undelivered.(func(T)); !ok {
			return nil, nil, fmt.Errorf("streams: undelivered sink %T does not take %T", c.undelivered, *new(T))
		}
	}
	return c, codec, nil
}

// eligible applies the predicates and ticket checks to a peer at now. It
// returns the earliest ticket expiry (zero for never).
func (c *config) eligible(pi catalog.PeerInfo, now time.Time) (time.Time, Code, error) {
	for _, p := range c.require {
		if !p(pi) {
			return time.Time{}, CodeNotAllowed, errors.New("a require predicate is not met")
		}
	}
	var earliest time.Time
	for _, t := range c.tickets {
		exp, err := t.Check(&pi.Entry.Entry, now)
		if err != nil {
			return time.Time{}, CodeNotAllowed, fmt.Errorf("ticket: %w", err)
		}
		if !exp.IsZero() && (earliest.IsZero() || exp.Before(earliest)) {
			earliest = exp
		}
	}
	return earliest, 0, nil
}
