package streams

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/internal/logonce"
	"github.com/mosaik-go/mosaik/streams/pb"
)

// Discovery is the view of the catalog that streams need. The node's
// discovery service (catalog/discovery) implements it.
type Discovery interface {
	Network() catalog.NetworkID
	Catalog() *catalog.Snapshot
	RTT() *catalog.RTTTable
	UpdateLocal(func(*catalog.Entry)) (*catalog.SignedEntry, error)
	SyncWith(ctx context.Context, pi peer.AddrInfo) error
	Probe(ctx context.Context, p peer.ID) (time.Duration, error)
}

// acceptor is a producer, seen by the service.
type acceptor interface {
	handler
	accept(st network.Stream, sub *pb.Subscribe, entry *catalog.SignedEntry)
}

// Role says whether a handle produces or consumes.
type Role string

const (
	RoleProducer Role = "producer"
	RoleConsumer Role = "consumer"
)

// HandleInfo is a snapshot of one producer or consumer on a service.
type HandleInfo struct {
	Role          Role
	Stream        StreamID
	Name          string // the name the handle was created with
	Online        bool
	Subscriptions []SubscriptionInfo // consumers of a producer, producers of a consumer
	// Totals: for a producer, datums and bytes written and datums dropped
	// over all subscriptions; for a consumer, datums taken by the app.
	Totals Stats
	// Ends counts subscriptions that ended, by close code: at a producer,
	// consumers it cut or lost (TooSlow, NotAllowed, UnknownPeer,
	// Cancelled, …); at a consumer, links to producers that ended with a
	// code, the producer's or ProtocolViolation found by the consumer
	// (each try of a receiver counts; a dial or handshake that fails
	// without a code does not). Codes not in the table are counted
	// together under CodeOther.
	Ends map[Code]uint64
	// Replay describes a producer's replay window; nil without one.
	Replay *ReplayStats
}

// handler is a producer or consumer, listed by Handles and closed by
// Service.Close.
type handler interface {
	handle() HandleInfo
	Close() error
}

// Service runs the streams protocol on a host for one network: it accepts
// subscriptions and dispatches them to the local producers, and it is what
// producers and consumers are created on. One Service per host: it owns the
// protocol handler. Safe for concurrent use.
type Service struct {
	h      host.Host
	d      Discovery
	params Params
	log    *slog.Logger
	// defaultPolicy applies to producers that set none (WithDefaultPolicy).
	defaultPolicy Policy

	mu        sync.Mutex
	producers map[StreamID]acceptor
	consumers map[handler]struct{}
	closing   bool
	wg        sync.WaitGroup
	ctx       context.Context
	cancel    context.CancelFunc
	once      sync.Once

	// Counters of the accept path, read through Stats.
	accepted, rejected, handshakeTimeouts atomic.Uint64
	rejectsMu                             sync.Mutex
	rejects                               map[Code]uint64 // rejected, by code

	meter        metric.MeterProvider
	metrics      metric.Registration
	subscribeDur metric.Float64Histogram
	latency      metric.Float64Histogram
	tracerP      trace.TracerProvider
	tracer       trace.Tracer
	protect      ConnProtector // nil: none (WithConnProtector)
	warned       *logonce.Set  // refusals logged at Warn (refusal_log.go)
}

// New starts the streams service on h for d's network.
func New(h host.Host, d Discovery, opts ...ServiceOption) (*Service, error) {
	s := &Service{h: h, d: d, params: DefaultParams(), log: slog.Default(), producers: map[StreamID]acceptor{}, consumers: map[handler]struct{}{},
		warned: logonce.New(refusalLogWindow, 4096)}
	for _, o := range opts {
		if err := o(s); err != nil {
			return nil, err
		}
	}
	s.log = s.log.With("component", "streams", "network", d.Network().Short())
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if s.meter == nil {
		s.meter = otel.GetMeterProvider()
	}
	if s.tracerP == nil {
		s.tracerP = otel.GetTracerProvider()
	}
	s.tracer = s.tracerP.Tracer("github.com/mosaik-go/mosaik/streams")
	reg, err := s.registerMetrics(s.meter)
	if err != nil {
		s.cancel()
		return nil, fmt.Errorf("streams: metrics: %w", err)
	}
	s.metrics = reg
	if err := attach(h, s); err != nil {
		_ = reg.Unregister()
		s.cancel()
		return nil, err
	}
	return s, nil
}

// hostMux dispatches the one streams protocol handler of a host to the
// services of the networks running on it (plugin mode may run several
// networks on one host).
type hostMux struct {
	mu       sync.Mutex
	services map[catalog.NetworkID]*Service
	timeout  time.Duration // the shortest handshake timeout of the services
}

// muxes holds the dispatcher of every host running a streams service. It
// is process state by necessity: a libp2p host has one handler per
// protocol, whoever registers it.
var muxes sync.Map // host.Host -> *hostMux

// muxesMu orders attach and detach, so a host's mux is never deleted
// between another service finding it and registering on it.
var muxesMu sync.Mutex

func attach(h host.Host, s *Service) error {
	muxesMu.Lock()
	defer muxesMu.Unlock()
	// A host's mux exists while it has services (detach deletes it with
	// its last): a refused first attach leaves none behind, and the
	// handler is set once the mux holds its first service and timeout.
	var m *hostMux
	v, ok := muxes.Load(h)
	if ok {
		m = v.(*hostMux)
	} else {
		if slices.Contains(h.Mux().Protocols(), ProtocolID) {
			return fmt.Errorf("streams: %s is already handled on host %s by someone else", ProtocolID, h.ID())
		}
		m = &hostMux{services: map[catalog.NetworkID]*Service{}}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	nw := s.d.Network()
	if _, ok := m.services[nw]; ok {
		return fmt.Errorf("streams: host %s already runs a streams service for network %s", h.ID(), nw.Short())
	}
	m.services[nw] = s
	if m.timeout == 0 || s.params.HandshakeTimeout < m.timeout {
		m.timeout = s.params.HandshakeTimeout
	}
	if !ok {
		muxes.Store(h, m)
		h.SetStreamHandler(ProtocolID, m.handle)
	}
	return nil
}

func detach(h host.Host, s *Service) {
	muxesMu.Lock()
	defer muxesMu.Unlock()
	v, ok := muxes.Load(h)
	if !ok {
		return
	}
	m := v.(*hostMux)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.services[s.d.Network()] == s {
		delete(m.services, s.d.Network())
	}
	if len(m.services) == 0 {
		h.RemoveStreamHandler(ProtocolID)
		muxes.Delete(h)
	}
}

// handle reads the Subscribe frame and hands the stream to the service of
// its network.
func (m *hostMux) handle(st network.Stream) {
	m.mu.Lock()
	timeout := m.timeout
	m.mu.Unlock()
	_ = st.SetReadDeadline(time.Now().Add(timeout))
	fr := newFrameReader(st, 1+maxControlFrame) // type byte and message
	typ, body, err := fr.next()
	var sub *pb.Subscribe
	if err == nil && typ == frameSubscribe {
		sub, err = decodeControl(body, &pb.Subscribe{})
	} else if err == nil {
		err = fmt.Errorf("%w: frame type %#x before Subscribe", errProtocol, typ)
	}
	// The service of the subscription's network; for a bad or foreign
	// subscription any service of the host counts and answers it.
	var s *Service
	m.mu.Lock()
	if err == nil {
		nw, _ := catalog.IDFromBytes(sub.Network)
		s = m.services[nw]
	}
	if s == nil {
		for _, other := range m.services {
			s = other
			break
		}
	}
	m.mu.Unlock()
	if s == nil { // the last service detached meanwhile
		_ = st.ResetWithError(network.StreamErrorCode(CodeGracefulShutdown))
		return
	}
	if err != nil {
		s.countReject(CodeProtocolViolation)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			s.handshakeTimeouts.Add(1)
		}
		s.log.Debug("bad subscribe", "peer", st.Conn().RemotePeer(), "err", err)
		_ = st.ResetWithError(network.StreamErrorCode(CodeProtocolViolation))
		return
	}
	s.handle(st, sub, fr.buffered())
}

// ServiceStats counts the service's accept path since it started. It is a
// snapshot: plain numbers.
type ServiceStats struct {
	Accepted uint64 // subscriptions admitted by a producer
	Rejected uint64 // subscriptions refused, with any code
	// HandshakeTimeouts counts inbound streams reset because no complete
	// Subscribe frame arrived within HandshakeTimeout (slow or stalled
	// openings); each is also counted in Rejected.
	HandshakeTimeouts uint64
	// RejectedBy breaks Rejected down by the code answered (a malformed
	// or late Subscribe counts as ProtocolViolation).
	RejectedBy map[Code]uint64
}

// Stats returns a snapshot of the service's counters.
func (s *Service) Stats() ServiceStats {
	st := ServiceStats{Accepted: s.accepted.Load(), Rejected: s.rejected.Load(), HandshakeTimeouts: s.handshakeTimeouts.Load()}
	s.rejectsMu.Lock()
	st.RejectedBy = make(map[Code]uint64, len(s.rejects))
	for c, n := range s.rejects {
		st.RejectedBy[c] = n
	}
	s.rejectsMu.Unlock()
	return st
}

// countReject counts one refused subscription under its code.
func (s *Service) countReject(c Code) {
	s.rejectsMu.Lock()
	if s.rejects == nil {
		s.rejects = map[Code]uint64{}
	}
	s.rejects[c]++
	s.rejectsMu.Unlock()
	s.rejected.Add(1)
}

// Params returns the service's parameters.
func (s *Service) Params() Params { return s.params }

// Close shuts the service down, in this order: it refuses new producers,
// consumers and subscriptions; closes the producers created on it (all at
// once), so that every consumer, local ones included, receives what was
// queued for it and a GracefulShutdown; closes the consumers created on
// it; then removes the protocol handler and waits for the handshakes in
// flight. Producers and consumers already closed by their owners are
// skipped; closing them again later is harmless.
//
// Close returns within about Params.CloseTimeout (the producers' drain,
// run in parallel) plus Params.HandshakeTimeout (a rejection being
// written to a peer that does not read). Idempotent; safe to call
// concurrently.
func (s *Service) Close() error {
	s.once.Do(func() {
		s.mu.Lock()
		s.closing = true
		producers := make([]handler, 0, len(s.producers))
		for _, p := range s.producers {
			producers = append(producers, p)
		}
		consumers := make([]handler, 0, len(s.consumers))
		for c := range s.consumers {
			consumers = append(consumers, c)
		}
		s.mu.Unlock()
		closeAll(producers)
		closeAll(consumers)
		detach(s.h, s)
		if s.metrics != nil {
			_ = s.metrics.Unregister()
		}
		s.cancel()
		s.wg.Wait()
	})
	return nil
}

// closeAll closes hs in parallel and waits for them.
func closeAll(hs []handler) {
	var wg sync.WaitGroup
	for _, h := range hs {
		wg.Go(func() { _ = h.Close() })
	}
	wg.Wait()
}

func (s *Service) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.wg.Add(1)
	return true
}

func (s *Service) register(id StreamID, a acceptor) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return ErrClosed
	}
	if _, ok := s.producers[id]; ok {
		return fmt.Errorf("%w: %s", ErrProducerExists, id.Short())
	}
	s.producers[id] = a
	return nil
}

// Handles lists the service's open producers and consumers, producers
// first, each group in stream order.
func (s *Service) Handles() []HandleInfo {
	s.mu.Lock()
	hs := make([]handler, 0, len(s.producers)+len(s.consumers))
	for _, p := range s.producers {
		hs = append(hs, p)
	}
	for c := range s.consumers {
		hs = append(hs, c)
	}
	s.mu.Unlock()
	out := make([]HandleInfo, len(hs))
	for i, h := range hs {
		out[i] = h.handle()
	}
	slices.SortFunc(out, func(a, b HandleInfo) int {
		if a.Role != b.Role {
			if a.Role == RoleProducer {
				return -1
			}
			return 1
		}
		return a.Stream.Compare(b.Stream)
	})
	return out
}

func (s *Service) addConsumer(h handler) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return ErrClosed
	}
	s.consumers[h] = struct{}{}
	return nil
}

func (s *Service) removeConsumer(h handler) {
	s.mu.Lock()
	delete(s.consumers, h)
	s.mu.Unlock()
}

func (s *Service) unregister(id StreamID, a acceptor) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.producers[id] == a {
		delete(s.producers, id)
	}
}

// reject answers a subscription with Reject{code} and closes the stream.
func (s *Service) reject(st network.Stream, code Code, reason string) {
	s.countReject(code)
	s.log.Debug("subscription rejected", "peer", st.Conn().RemotePeer(), "code", code, "reason", reason)
	_ = st.SetWriteDeadline(time.Now().Add(s.params.HandshakeTimeout))
	if _, err := st.Write(rejectFrame(code, reason)); err != nil {
		_ = st.ResetWithError(network.StreamErrorCode(code))
		return
	}
	_ = st.CloseWrite()
	_ = st.Close()
}

// handle runs the service-level part of the accept path: unknown peer
// (401), network (101), stream (10404). The producer runs the rest.
func (s *Service) handle(st network.Stream, sub *pb.Subscribe, extra bool) {
	if !s.enter() {
		_ = st.ResetWithError(network.StreamErrorCode(CodeGracefulShutdown))
		return
	}
	defer s.wg.Done()
	if extra {
		s.reject(st, CodeProtocolViolation, "data after Subscribe")
		return
	}
	_ = st.SetReadDeadline(time.Time{})
	p := st.Conn().RemotePeer()
	entry, known := s.d.Catalog().Get(p)
	if !known {
		s.reject(st, CodeUnknownPeer, "consumer not in the producer's catalog; sync and retry")
		return
	}
	nw := s.d.Network()
	if !slices.Equal(sub.Network, nw[:]) {
		s.reject(st, CodeDifferentNetwork, "network "+nw.Short())
		if s.warnOnce("network|" + p.String()) {
			s.log.Warn("consumer of another network refused", "consumer", p, "hint", producerHint(CodeDifferentNetwork))
		}
		return
	}
	id, err := catalog.IDFromBytes(sub.Stream)
	if err != nil {
		s.reject(st, CodeProtocolViolation, "stream ID is not 32 bytes")
		return
	}
	s.mu.Lock()
	a := s.producers[id]
	s.mu.Unlock()
	if a == nil {
		s.reject(st, CodeStreamNotFound, "no producer of "+id.Short())
		return
	}
	a.accept(st, sub, entry)
}

var errNotConnected = errors.New("streams: not connected")
