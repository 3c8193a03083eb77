package streams

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
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
	// larger declared length is refused before anything is allocated, and
	// a producer refuses to send a datum that does not fit (ErrTooLarge).
	// A consumer reads under its own cap: give consumers at least their
	// producers' MaxFrameSize. Default 4 MiB.
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
	// RefusalRetention is how long a producer that refused a consumer for
	// good (a final close code, or backoff exhausted) stays listed in the
	// consumer's Producers() as Terminated, with the reason. The refusal
	// itself outlasts it: the producer is not retried until the content of
	// its catalog entry or the consumer's changes (heartbeats do not
	// count), and then no sooner than the refusal backoff allows; or,
	// without a change, once RefusalRetryMax has passed since the refusal.
	// Default 1 min.
	RefusalRetention time.Duration
	// RefusalRetryMin and RefusalRetryMax bound the backoff between retries
	// of a producer that refused the consumer for good: the first retry
	// waits RefusalRetryMin after the refusal, each further one twice as
	// long (±50 % jitter) up to RefusalRetryMax. A refusal that no entry
	// change answers is retried after RefusalRetryMax (a verdict can
	// change with time: a ticket's not-before). Defaults 1 s and 5 min.
	RefusalRetryMin, RefusalRetryMax time.Duration
}

// DefaultParams returns the production defaults.
func DefaultParams() Params {
	return Params{MaxFrameSize: 4 << 20, HandshakeTimeout: 10 * time.Second, CloseTimeout: 5 * time.Second,
		WriteTimeout: 30 * time.Second, MaxQueueBytes: 64 << 20, RefusalRetention: time.Minute,
		RefusalRetryMin: time.Second, RefusalRetryMax: 5 * time.Minute}
}

// Validate reports every invalid field; it does not modify p.
func (p Params) Validate() error {
	var errs []error
	if p.MaxFrameSize < 1024 || p.MaxFrameSize > 1<<30 {
		errs = append(errs, fmt.Errorf("MaxFrameSize must be within [1 KiB, 1 GiB], got %d", p.MaxFrameSize))
	}
	if p.HandshakeTimeout <= 0 || p.CloseTimeout <= 0 || p.RefusalRetention <= 0 {
		errs = append(errs, fmt.Errorf("HandshakeTimeout, CloseTimeout and RefusalRetention must be > 0"))
	}
	if p.RefusalRetryMin <= 0 || p.RefusalRetryMax < p.RefusalRetryMin {
		errs = append(errs, fmt.Errorf("RefusalRetryMin must be > 0 and RefusalRetryMax >= it, got %v and %v",
			p.RefusalRetryMin, p.RefusalRetryMax))
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

// WithDefaultPolicy sets the policy of every producer created on the
// service that does not set its own with WithPolicy (see [Policy]).
// Without it, producers admit every consumer they know.
func WithDefaultPolicy(p Policy) ServiceOption {
	return func(s *Service) error {
		s.defaultPolicy = Policy{Require: slices.Clone(p.Require), Tickets: slices.Clone(p.Tickets)}
		return nil
	}
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

// Policy says which consumers a producer admits: those that pass every
// predicate and every ticket check. The zero Policy admits every consumer
// the producer knows (in its catalog): streams are open by default.
//
// A service may carry a default policy (WithDefaultPolicy; the node's
// WithDefaultStreamPolicy); WithPolicy on a producer replaces it for that
// producer. Either way, WithRequire, WithMaxRTT, WithTickets and
// WithTicketValidators on the producer add to the policy in force (ANDed).
type Policy struct {
	Require []Predicate
	Tickets []TicketCheck
}

// handleConfig is what producers and consumers share: which remote peers
// are eligible, and when the handle is online.
type handleConfig struct {
	require         []Predicate
	requireNames    []string // parallel to require: what each checks, for refusal reasons ("" unnamed)
	tickets         []TicketCheck
	onlineCondition func(*Condition) *Condition
	// codecs counts the WithCodec options given; the constructor checks
	// that one of them is for its datum type.
	codecs    int
	codecType string
}

type producerConfig struct {
	handleConfig
	policy       *Policy // WithPolicy: replaces the service's default policy
	maxConsumers int
	queue        int
	dropLagging  bool
	lagGrace     time.Duration
	sinks        int // WithUndelivered options given
	sinkType     string
	replay       *Replay // WithReplay; nil: no window
}

type consumerConfig struct {
	handleConfig
	backoff    func() backoff.BackOff
	buffer     int
	lowestK    int
	hysteresis float64
	criteria   []byte
	resume     []Position // WithResumeFrom
}

// ProducerOption configures a [Producer]. Options that apply to consumers
// only do not implement it, so passing one to NewProducer does not compile.
type ProducerOption interface {
	applyProducer(*producerConfig) error
}

// ConsumerOption configures a [Consumer]. Options that apply to producers
// only do not implement it, so passing one to NewConsumer does not compile.
type ConsumerOption interface {
	applyConsumer(*consumerConfig) error
}

// HandleOption configures either a [Producer] or a [Consumer]: it is both a
// ProducerOption and a ConsumerOption.
type HandleOption func(*handleConfig) error

func (o HandleOption) applyProducer(c *producerConfig) error { return o(&c.handleConfig) }
func (o HandleOption) applyConsumer(c *consumerConfig) error { return o(&c.handleConfig) }

type producerOption func(*producerConfig) error

func (o producerOption) applyProducer(c *producerConfig) error { return o(c) }

type consumerOption func(*consumerConfig) error

func (o consumerOption) applyConsumer(c *consumerConfig) error { return o(c) }

// CodecOption sets the datum codec of a producer or consumer of T; make it
// with [WithCodec].
type CodecOption[T any] struct{ codec Codec[T] }

func (o CodecOption[T]) applyProducer(c *producerConfig) error { return o.note(&c.handleConfig) }
func (o CodecOption[T]) applyConsumer(c *consumerConfig) error { return o.note(&c.handleConfig) }

func (o CodecOption[T]) note(c *handleConfig) error {
	if o.codec == nil {
		return errors.New("streams: WithCodec(nil)")
	}
	c.codecs++
	c.codecType = fmt.Sprintf("%T", *new(T))
	return nil
}

// WithCodec sets the datum codec (default CBOR[T]). Go cannot tie an
// option's type parameter to the constructor's without making every option
// generic, so a codec for another type than the handle's is refused by the
// constructor (not by the compiler).
func WithCodec[T any](c Codec[T]) CodecOption[T] { return CodecOption[T]{codec: c} }

// WithRequire adds an eligibility predicate over the remote peer: on a
// producer it judges consumers at accept time and on every catalog change;
// on a consumer it judges producers before subscribing and on every
// catalog change. Repeated predicates are ANDed. Package policy has
// combinators (policy.HasTags, policy.RTTBelow, policy.All, ...).
func WithRequire(p Predicate) HandleOption { return WithNamedRequire("", p) }

// WithNamedRequire is WithRequire with a short description of what p
// checks ("tags reader,eu"), which the refusal reason names when p is
// not met: the other side and both logs then say which rule failed.
func WithNamedRequire(name string, p Predicate) HandleOption {
	return func(c *handleConfig) error {
		if p == nil {
			return errors.New("streams: WithRequire(nil)")
		}
		c.require = append(c.require, p)
		c.requireNames = append(c.requireNames, name)
		return nil
	}
}

// WithMaxRTT requires the remote peer's smoothed RTT to be below d. Without
// a sample the consumer probes first; the producer always samples at accept.
func WithMaxRTT(d time.Duration) HandleOption {
	return WithNamedRequire("RTT below "+d.String(), func(pi catalog.PeerInfo) bool { return pi.RTTBelow(d) })
}

// WithTickets adds ticket checks; all must pass, and the earliest expiry
// applies.
func WithTickets(checks ...TicketCheck) HandleOption {
	return func(c *handleConfig) error {
		for _, ch := range checks {
			if ch == nil {
				return errors.New("streams: WithTickets(nil)")
			}
			if r, ok := ch.(policy.Requirement); ok && slices.Contains(r, nil) {
				return errors.New("streams: a nil ticket validator")
			}
		}
		c.tickets = append(c.tickets, checks...)
		return nil
	}
}

// WithTicketValidators requires the remote peer to hold a valid ticket for
// every validator (package policy: JWT, libp2p-signed tickets); none may
// be nil. The
// subscription ends when the earliest of those tickets expires, unless the
// peer's entry carries a renewed ticket by then.
func WithTicketValidators(vs ...policy.TicketValidator) HandleOption {
	return WithTickets(policy.Require(vs...))
}

// WithOnlineCondition sets the online condition from the handle's
// Subscribed() condition, e.g.
// func(c *Condition) *Condition { return c.MinimumOf(2).WithTags(v) }.
// Defaults: producers need one connected consumer; consumers are online
// at once.
func WithOnlineCondition(f func(*Condition) *Condition) HandleOption {
	return func(c *handleConfig) error { c.onlineCondition = f; return nil }
}

// WithPolicy sets the producer's admission policy, replacing the service's
// default policy (WithDefaultPolicy) for this producer. WithPolicy(Policy{})
// opens a producer on a service whose default requires tickets. Repeated,
// the policies are ANDed.
func WithPolicy(p Policy) ProducerOption {
	return producerOption(func(c *producerConfig) error {
		if c.policy == nil {
			c.policy = &Policy{}
		}
		c.policy.Require = append(c.policy.Require, p.Require...)
		c.policy.Tickets = append(c.policy.Tickets, p.Tickets...)
		return nil
	})
}

// WithMaxConsumers caps a producer's concurrent subscriptions (default
// unlimited); more are rejected with NoCapacity.
func WithMaxConsumers(n int) ProducerOption {
	return producerOption(func(c *producerConfig) error {
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
func WithQueueSize(n int) ProducerOption {
	return producerOption(func(c *producerConfig) error {
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
func WithDropLagging() ProducerOption {
	return producerOption(func(c *producerConfig) error { c.dropLagging = true; return nil })
}

// WithLagGrace sets how long, in total, Send may wait for room in one
// consumer's full queue before treating the consumer as lagging (default
// 100 ms; 0 cuts at once). The grace runs from the first time the queue is
// found full until it next has room at once, so it absorbs scheduling
// hiccups of a healthy consumer's writer, while a stuck or trickling
// consumer spends it once and is then cut (or dropped for). The graces of
// several consumers run concurrently: one Send waits at most one grace,
// however many consumers lag. TrySend never waits.
func WithLagGrace(d time.Duration) ProducerOption {
	return producerOption(func(c *producerConfig) error {
		if d < 0 {
			return fmt.Errorf("streams: WithLagGrace(%v): must be >= 0", d)
		}
		c.lagGrace = d
		return nil
	})
}

// WithReplay keeps the producer's last datums in a replay window bounded
// by r (see [Replay]), one window shared by all its consumers. A consumer
// that resubscribes within the same run of the producer (same epoch) gets
// the datums it missed resent from the window, in order and exactly once,
// then the live ones; the part that already left the window is reported
// as a gap of cause GapExpired. Every datum Send or TrySend numbers enters
// the window, also one that no queue could take (ErrFull), so a consumer
// cut meanwhile gets it on its return. A new run starts with an empty
// window. The window holds the encoded datums the queues share, so a
// datum sent with the Bytes codec must not be modified afterwards. Off by
// default.
func WithReplay(r Replay) ProducerOption {
	return producerOption(func(c *producerConfig) error {
		if err := r.validate(); err != nil {
			return err
		}
		c.replay = &r
		return nil
	})
}

// UndeliveredOption sets the sink of a producer of T for datums that
// reached no consumer; make it with [WithUndelivered].
type UndeliveredOption[T any] struct{ sink func(T) }

func (o UndeliveredOption[T]) applyProducer(c *producerConfig) error {
	if o.sink == nil {
		return errors.New("streams: WithUndelivered(nil)")
	}
	c.sinks++
	c.sinkType = fmt.Sprintf("%T", *new(T))
	return nil
}

// WithUndelivered sets a sink for datums that reached no consumer. It must
// be fast and must not block. As with WithCodec, a sink for another type
// than the producer's is refused by NewProducer.
func WithUndelivered[T any](f func(T)) UndeliveredOption[T] { return UndeliveredOption[T]{sink: f} }

// WithBackoff sets the consumer's reconnect policy; f makes a fresh policy
// per producer. Default: exponential from 500 ms, ×1.5, ±50 %, capped at
// 60 s, giving up after 5 min of failing. The policy is Reset after a
// session that delivered a datum or stayed up for 5 s, so a quiet but
// healthy subscription is not given up at its first link failure.
func WithBackoff(f func() backoff.BackOff) ConsumerOption {
	return consumerOption(func(c *consumerConfig) error {
		if f == nil {
			return errors.New("streams: WithBackoff(nil)")
		}
		c.backoff = f
		return nil
	})
}

// WithBuffer sets the consumer's delivery buffer (default 1024 datums).
// When it is full the consumer stops reading from producers, so flow
// control reaches them and their lagging policy decides. The bound is in
// datums: its memory is at most n × the largest datum (Params.MaxFrameSize),
// plus, per producer, the datums already decoded from frames that arrived
// together and not yet handed over (at most 64: they are handed over as one
// run, so the application is woken once per run rather than per datum).
func WithBuffer(n int) ConsumerOption {
	return consumerOption(func(c *consumerConfig) error {
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
// subscriptions. Producers without an RTT sample are probed first. A
// producer that refuses the consumer with a retryable code (NoCapacity) or
// cannot be reached does not hold one of the k places while it is retried:
// the next best take them, and once it accepts it competes again.
func WithLowestRTT(k int, hysteresis float64) ConsumerOption {
	return consumerOption(func(c *consumerConfig) error {
		if k < 1 || hysteresis < 0 || hysteresis >= 1 {
			return fmt.Errorf("streams: WithLowestRTT(%d, %v): need k >= 1 and 0 <= hysteresis < 1", k, hysteresis)
		}
		c.lowestK, c.hysteresis = k, hysteresis
		return nil
	})
}

// WithResumeFrom makes the consumer's first subscription to each of these
// producers ask to resume after Position.Seq: a producer still in the same
// run (epoch) with a replay window resends what followed, and the
// consumer reports what left the window as GapExpired; otherwise the
// datums missed are counted as usual (GapReconnect, GapRestart). Save
// Consumer.Positions to use it across restarts. Repeated, the positions
// add up; a producer given twice, or a zero producer or epoch, is refused.
func WithResumeFrom(ps ...Position) ConsumerOption {
	return consumerOption(func(c *consumerConfig) error {
		for _, p := range ps {
			if p.Producer == "" || p.Epoch == 0 {
				return fmt.Errorf("streams: WithResumeFrom: position %+v needs a producer and an epoch", p)
			}
			if slices.ContainsFunc(c.resume, func(q Position) bool { return q.Producer == p.Producer }) {
				return fmt.Errorf("streams: WithResumeFrom: producer %s given twice", p.Producer)
			}
			c.resume = append(c.resume, p)
		}
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

// newProducerConfig applies opts for a producer of T on svc. The service's
// default policy applies unless an option set the producer's own.
func newProducerConfig[T any](svc *Service, opts []ProducerOption) (*producerConfig, Codec[T], func(T), error) {
	c := &producerConfig{queue: 1024, lagGrace: 100 * time.Millisecond}
	var (
		codec Codec[T] = CBOR[T]{}
		sink  func(T)
		typed int
		sinks int
	)
	for _, o := range opts {
		if o == nil {
			return nil, nil, nil, errors.New("streams: nil ProducerOption")
		}
		if err := o.applyProducer(c); err != nil {
			return nil, nil, nil, err
		}
		switch o := o.(type) {
		case CodecOption[T]:
			codec, typed = o.codec, typed+1
		case UndeliveredOption[T]:
			sink, sinks = o.sink, sinks+1
		}
	}
	if c.codecs != typed {
		return nil, nil, nil, fmt.Errorf("streams: a codec for %s given to a producer of %T", c.codecType, *new(T))
	}
	if c.sinks != sinks {
		return nil, nil, nil, fmt.Errorf("streams: an undelivered sink for %s given to a producer of %T", c.sinkType, *new(T))
	}
	pol := svc.defaultPolicy
	if c.policy != nil {
		pol = *c.policy
	}
	c.require = slices.Concat(pol.Require, c.require)
	c.requireNames = slices.Concat(make([]string, len(pol.Require)), c.requireNames)
	c.tickets = slices.Concat(pol.Tickets, c.tickets)
	return c, codec, sink, nil
}

// newConsumerConfig applies opts for a consumer of T.
func newConsumerConfig[T any](opts []ConsumerOption) (*consumerConfig, Codec[T], error) {
	c := &consumerConfig{buffer: 1024, backoff: defaultBackoff}
	var (
		codec Codec[T] = CBOR[T]{}
		typed int
	)
	for _, o := range opts {
		if o == nil {
			return nil, nil, errors.New("streams: nil ConsumerOption")
		}
		if err := o.applyConsumer(c); err != nil {
			return nil, nil, err
		}
		if o, ok := o.(CodecOption[T]); ok {
			codec, typed = o.codec, typed+1
		}
	}
	if c.codecs != typed {
		return nil, nil, fmt.Errorf("streams: a codec for %s given to a consumer of %T", c.codecType, *new(T))
	}
	return c, codec, nil
}

// eligible applies the predicates and ticket checks to a peer at now. It
// returns the earliest ticket expiry (zero for never).
func (c *handleConfig) eligible(pi catalog.PeerInfo, now time.Time) (time.Time, Code, error) {
	for i, p := range c.require {
		if !p(pi) {
			if i < len(c.requireNames) && c.requireNames[i] != "" {
				return time.Time{}, CodeNotAllowed, fmt.Errorf("require %s: not met", c.requireNames[i])
			}
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
