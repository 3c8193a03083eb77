package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/host/eventbus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/time/rate"

	"github.com/mosaik-go/mosaik"
	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/catalog/pb"
)

// ErrClosed is returned by calls on a closed service.
var ErrClosed = fmt.Errorf("discovery: %w", mosaik.ErrClosed)

// ErrOtherNetwork is returned by [Service.SyncWith] with a peer of another
// mosaik network: one that serves the sync protocol of another network but
// not ours (protocol negotiation fails), or that refuses our request with
// [CodeDifferentNetwork]. It wraps [catalog.ErrOtherNetwork], so either
// sentinel matches with errors.Is.
var ErrOtherNetwork = fmt.Errorf("discovery: peer of another network: %w", catalog.ErrOtherNetwork)

// CatalogPeerValue is the weight with which the service tags each catalog
// peer in the host's connection manager (tag "mosaik-catalog/<network
// short ID>"), so that trimming closes connections to peers outside the
// network first. It does not protect them: package node protects the
// peers of live subscriptions.
const CatalogPeerValue = 10

// Stream reset codes used by the sync protocol (see PROTOCOL.md).
const (
	CodeDifferentNetwork  network.StreamErrorCode = 101
	CodeProtocolViolation network.StreamErrorCode = 400
)

type source string

const (
	fromGossip source = "gossip"
	// fromSync: a sync this node started with a catalog of its own (on
	// connect with a peer it lacks, or through SyncWith).
	fromSync source = "sync"
	// fromJoinSync: a sync this node started with an empty catalog (it
	// is joining). Its entries are not relayed, see Service.merged.
	fromJoinSync source = "join sync"
	fromDHT      source = "dht"
	fromCaller   source = "caller" // Service.Merge
	fromPush     source = "push"   // a bump frame (push.go)
	// The other syncs, told apart only in the debug log's "via" (they
	// act as fromSync everywhere else; see isSync): the repair sync at
	// SettleDelay, the repair of a join served before its subscription
	// (joinGaps), and what a responder merges (the initiator's hello and
	// the entries it asked the initiator for).
	fromSettleSync source = "settle sync"
	fromJoinRepair source = "join repair"
	fromServed     source = "served"
)

// isSync reports whether src is a catalog sync of any kind.
func (src source) isSync() bool {
	switch src {
	case fromSync, fromJoinSync, fromSettleSync, fromJoinRepair, fromServed:
		return true
	}
	return false
}

// Service runs discovery for one network on a libp2p host: it keeps the
// catalog of the network's peers fresh through a gossipsub topic, catalog
// syncs on connect, periodic heartbeats, departures, purges, the DHT and
// RTT probes.
//
// All methods are safe for concurrent use. The service owns the goroutines
// it starts and stops them in Close; it never closes the host, pubsub or
// DHT it was given.
type Service struct {
	h       host.Host
	ps      *pubsub.PubSub
	dht     *dht.IpfsDHT
	params  Params
	log     *slog.Logger
	stats   *counters
	tracer  trace.Tracer
	now     func() time.Time // the wall clock of versions and freshness
	network catalog.NetworkID
	protos  []protocol.ID // sync protocols, preferred first (2.1.0, 2.0.0, 1.0.0)
	cmTag   string        // connection manager tag of catalog peers
	store   *catalog.Store
	// ownUnadmitted: the local entry failed the admission check when
	// last announced (ownAdmitted).
	ownUnadmitted atomic.Bool
	rtt           *catalog.RTTTable

	localMu sync.Mutex
	local   *catalog.Local

	dupDone chan struct{} // closed once another process with our identity is seen
	dupErr  atomic.Pointer[catalog.DuplicateIdentityError]

	topic   *pubsub.Topic
	sub     *pubsub.Subscription
	evh     *pubsub.TopicEventHandler
	hostSub event.Subscription

	announceNow chan struct{}
	flushNow    chan struct{} // a local change is held: seal it when due
	peerJoined  chan struct{}
	gaps        *joinGaps     // topic peers, and syncs served before their subscription
	connectNow  chan struct{} // a connection closed: check connectivity
	dropped     droppedPeers  // when connections closed (whose turn to redial)
	relayQ      chan relay    // entries to relay onto gossip
	dhtNow      chan struct{}
	settled     chan struct{} // closed once the join settled (connect.go, settle)
	born        time.Time     // when New ran: settle's clock
	lastAdded   atomic.Int64  // when a peer new to the catalog last came, as time since born

	syncMu   sync.Mutex
	lastSync map[peer.ID]time.Time
	retrying map[peer.ID]*retryChain // the syncRetrying running for each peer
	limiters *lru.Cache[peer.ID, *rate.Limiter]
	serving  *slots        // syncs being served
	starting chan struct{} // semaphore of syncs being started
	dialing  chan struct{} // semaphore of cascade dials
	probing  map[peer.ID]*flight
	push     *pusher

	ctx       context.Context
	cancel    context.CancelFunc
	lifeMu    sync.Mutex
	closing   bool
	wg        sync.WaitGroup
	closeErr  error
	leaveOnce sync.Once
	once      sync.Once
	stopOnce  sync.Once
	serves    bool // this service registered the sync handler
	// servesBumps: this service registered the bump push handler.
	servesBumps bool
	// servesDepart: the hand-off handler is ours (depart.go); departs: those served.
	servesDepart bool
	departs      *slots
}

// New starts discovery of network on h. ps is the gossipsub router to
// announce on (it may be nil only with Params.DisableGossip). The host's
// peerstore must hold its private key (libp2p.New ensures that); the key
// signs the local entry.
func New(h host.Host, ps *pubsub.PubSub, network catalog.NetworkID, opts ...Option) (_ *Service, err error) {
	cfg := config{params: DefaultParams(), log: slog.Default(), now: time.Now}
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	if cfg.meter == nil {
		cfg.meter = otel.GetMeterProvider()
	}
	if cfg.tracer == nil {
		cfg.tracer = otel.GetTracerProvider()
	}
	p := cfg.params
	if ps == nil && !p.DisableGossip {
		return nil, errors.New("discovery: New needs a pubsub router unless gossip is disabled")
	}
	key := h.Peerstore().PrivKey(h.ID())
	if key == nil {
		return nil, fmt.Errorf("discovery: the peerstore has no private key for host %s", h.ID())
	}
	if key.Type() != crypto.Ed25519 {
		return nil, fmt.Errorf("discovery: host %s has a %v key; mosaik peers must use ed25519 identities (every peer refuses other key types)", h.ID(), key.Type())
	}
	local, err := catalog.NewLocal(key, network, cfg.now(), func(e *catalog.Entry) {
		e.Addrs = h.Addrs()
		e.Tags = slices.Clone(cfg.tags)
		if cfg.init != nil {
			cfg.init(e)
		}
	})
	if err != nil {
		return nil, err
	}
	if err := local.SetMaxSize(p.Catalog.MaxEntrySize); err != nil {
		return nil, fmt.Errorf("discovery: %w", err)
	}
	local.SetUpdateLimit(p.Catalog.MinUpdateInterval, p.Catalog.UpdateBurst)
	store, err := catalog.NewStore(local.Current(), p.Catalog)
	if err != nil {
		return nil, err
	}
	if err := checkLocalAdmission(store, cfg.admission, local.Current(), cfg.now()); err != nil {
		_ = store.Close()
		return nil, err
	}
	limiters, _ := lru.New[peer.ID, *rate.Limiter](4096)
	s := &Service{
		h: h, ps: ps, params: p, network: network, protos: SyncProtocols(network), cmTag: "mosaik-catalog/" + network.Short(),
		log:   cfg.log.With("component", "discovery", "network", network.Short()),
		store: store, rtt: catalog.NewRTTTable(), local: local,
		relayQ: make(chan relay, 256), announceNow: make(chan struct{}, 1), flushNow: make(chan struct{}, 1), peerJoined: make(chan struct{}, 1), connectNow: make(chan struct{}, 1), dhtNow: make(chan struct{}, 1),
		lastSync: map[peer.ID]time.Time{}, retrying: map[peer.ID]*retryChain{}, limiters: limiters, dht: cfg.dht,
		serving:  newSlots(p.MaxConcurrentSyncs, p.SyncBurst),
		starting: make(chan struct{}, 8),
		dialing:  make(chan struct{}, max(1, p.CascadeBelow)),
		gaps:     newJoinGaps(),
		probing:  map[peer.ID]*flight{},
		push:     newPusher(),
		tracer:   cfg.tracer.Tracer("github.com/mosaik-go/mosaik/catalog/discovery"),
		now:      cfg.now,
		dupDone:  make(chan struct{}),
		settled:  make(chan struct{}),
		born:     time.Now(),
	}
	// Eviction spares the peers we are connected to and those whose
	// connections are protected (live subscriptions, group bonds).
	store.SetKeeper(catalog.KeeperFunc(s.keep))
	s.ctx, s.cancel = context.WithCancel(context.Background())
	// Undo whatever was started if a later step fails.
	defer func() {
		if err != nil {
			s.teardown()
		}
	}()
	if s.stats, err = newCounters(cfg.meter, network.Short(), func() int { return s.store.Snapshot().Len() }); err != nil {
		return nil, fmt.Errorf("discovery: metrics: %w", err)
	}
	if !p.DisableGossip {
		if err = s.joinTopic(); err != nil {
			return nil, err
		}
	}
	if !p.DisableSync {
		s.h.SetStreamHandler(SyncProtocol(network), s.handleSyncBumps)
		s.h.SetStreamHandler(SyncProtocolV2(network), s.handleSyncDelta)
		s.h.SetStreamHandler(SyncProtocolV1(network), s.handleSyncV1)
		s.serves = true
	}
	if p.BumpInterval > 0 {
		s.h.SetStreamHandler(BumpProtocol(network), s.handleBumps)
		s.servesBumps = true
	}
	if s.topic != nil {
		// A handed-off departure goes on to gossip from here.
		s.departs = newSlots(maxDepartServing, maxDepartPerPeer)
		s.h.SetStreamHandler(DepartProtocol(network), s.handleDepart)
		s.servesDepart = true
	}
	// The bus blocks emitters (the swarm among them) on a full subscriber
	// buffer; disconnects come in bursts when peers leave together. The name
	// labels the bus's metrics (the default is this file's build path).
	if s.hostSub, err = h.EventBus().Subscribe([]any{new(event.EvtPeerIdentificationCompleted), new(event.EvtLocalAddressesUpdated),
		new(event.EvtPeerConnectednessChanged), new(event.EvtPeerIdentificationFailed)}, eventbus.BufSize(256), eventbus.Name("mosaik/discovery")); err != nil {
		return nil, fmt.Errorf("discovery: event bus: %w", err)
	}

	s.spawn(s.announceLoop)
	s.spawn(s.hostEventLoop)
	s.spawn(s.purgeLoop)
	evicted := s.store.Subscribe(0)
	if !s.spawn(func() { s.evictLoop(evicted) }) {
		evicted.Close()
	}
	s.spawn(s.rttLoop)
	if !p.DisableSync && p.CascadeBelow > 0 {
		s.spawn(s.connectLoop)
	}
	if !p.DisableSync && p.AntiEntropyInterval > 0 {
		s.spawn(s.antiEntropyLoop)
	}
	if s.topic != nil {
		s.spawn(s.linkLoop)
		s.spawn(s.readLoop)
		s.spawn(s.peerEventLoop)
		s.spawn(s.relayLoop)
	}
	s.spawn(s.settle)
	if p.BumpInterval > 0 {
		s.spawn(s.pushLoop)
	}
	if s.dht != nil {
		s.spawn(s.dhtLoop)
		s.spawn(s.dhtRefreshLoop)
	}
	// Plugin mode: the host may already be connected to peers of the network.
	if !p.DisableSync {
		for _, pid := range h.Network().Peers() {
			if s.speaksSync(pid) {
				s.startSync(pid)
			}
		}
	}
	return s, nil
}

func (s *Service) joinTopic() error {
	name := TopicName(s.network)
	// Inline: the validator runs on pubsub's long-lived validation workers
	// (one per core) instead of a new goroutine per message. It is pure
	// CPU work that never blocks, and a fresh goroutine grew its stack for
	// every message (decoding and ed25519 need more than the first 8 KiB):
	// about a tenth of the validator's cost at 10 000 heartbeating peers.
	if err := s.ps.RegisterTopicValidator(name, s.validate, pubsub.WithValidatorInline(true)); err != nil {
		return fmt.Errorf("discovery: register validator on %s: %w", name, err)
	}
	t, err := s.ps.Join(name, pubsub.WithTopicMessageIdFn(MessageID))
	if err != nil {
		_ = s.ps.UnregisterTopicValidator(name)
		return fmt.Errorf("discovery: join %s: %w", name, err)
	}
	s.topic = t
	if s.sub, err = t.Subscribe(pubsub.WithBufferSize(1024)); err != nil {
		return fmt.Errorf("discovery: subscribe %s: %w", name, err)
	}
	if s.evh, err = t.EventHandler(); err != nil {
		return fmt.Errorf("discovery: topic events %s: %w", name, err)
	}
	return nil
}

// spawn runs f in a goroutine owned by the service, unless it is closing.
func (s *Service) spawn(f func()) bool {
	s.lifeMu.Lock()
	defer s.lifeMu.Unlock()
	if s.closing {
		return false
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
	return true
}

// enter marks the start of work on a goroutine not started by the service
// (a stream handler). It returns false once the service is closing.
func (s *Service) enter() bool {
	s.lifeMu.Lock()
	defer s.lifeMu.Unlock()
	if s.closing {
		return false
	}
	s.wg.Add(1)
	return true
}

// Network is the ID of the service's network.
func (s *Service) Network() catalog.NetworkID { return s.network }

// Catalog returns the current catalog snapshot. It never blocks.
func (s *Service) Catalog() *catalog.Snapshot { return s.store.Snapshot() }

// Store returns the catalog store, for subscriptions and change waits.
// Writes to it bypass gossip and the host's peerstore: add entries with
// [Service.Merge] and change the local one with [Service.UpdateLocal].
func (s *Service) Store() *catalog.Store { return s.store }

// RTT returns the RTT table. Streams record samples taken from their own
// traffic into it.
func (s *Service) RTT() *catalog.RTTTable { return s.rtt }

// PeerInfo returns the catalog entry of p with its RTT, if p is known.
func (s *Service) PeerInfo(p peer.ID) (catalog.PeerInfo, bool) {
	e, ok := s.store.Snapshot().Get(p)
	if !ok {
		return catalog.PeerInfo{}, false
	}
	return s.rtt.Info(e), true
}

// Subscribe returns a subscription to catalog events (see catalog.Subscription).
func (s *Service) Subscribe() *catalog.Subscription { return s.store.Subscribe(0) }

// Stats returns the service's counters.
func (s *Service) Stats() Stats {
	st := s.stats.snapshot()
	st.SignatureChecks = s.store.SignatureChecks()
	return st
}

// Local returns the local peer's current signed entry.
func (s *Service) Local() *catalog.SignedEntry { return s.store.Snapshot().Local() }

// Close publishes a signed departure (best effort), waits DepartureGrace
// for it to leave, then stops every goroutine and releases the topic, the
// stream handler and the event subscriptions. It does not close the host,
// pubsub or DHT. Close is idempotent and safe to call concurrently.
//
// Close returns within about three DepartureGrace periods (up to one
// waiting for the network's topic peers when there are none yet, one for
// publishing the departure, one letting it leave): background syncs,
// dials, probes, DHT calls and publications are cancelled, and syncs being
// served are reset, rather than waited for.
func (s *Service) Close() error {
	s.once.Do(func() {
		s.Leave()
		s.teardown()
	})
	return s.closeErr
}

// Leave stops announcing and publishes a signed departure (best effort),
// then waits DepartureGrace for it to leave: the first half of Close,
// which an owner calls first when it has more to close before the
// service (node.Close closes groups and streams after it, so that their
// protocol changes, pushed to every peer by identify, never race the
// departure). The catalog is no longer updated after Leave. Idempotent.
func (s *Service) Leave() {
	s.leaveOnce.Do(func() {
		// Stop every loop first, so no heartbeat can follow the departure.
		s.stop()
		if s.topic != nil && len(s.topic.ListPeers()) == 0 && s.hasNetworkPeers() {
			// Connected to peers of the network whose topic subscription has
			// not reached us yet (a node closing right after it joined):
			// give pubsub up to DepartureGrace to learn them, so the
			// departure is not lost.
			deadline := time.Now().Add(s.params.DepartureGrace)
			for len(s.topic.ListPeers()) == 0 && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond) // pubsub has no "topic peer joined" wait once its handler is cancelled
			}
		}
		if s.topic != nil && len(s.topic.ListPeers()) > 0 {
			s.localMu.Lock()
			dep, err := s.local.Departure(s.now())
			s.localMu.Unlock()
			if err == nil {
				// The service's context is cancelled by now: the departure
				// gets DepartureGrace of its own.
				ctx, cancel := context.WithTimeout(context.Background(), s.params.DepartureGrace)
				err = s.publish(ctx, &pb.Announcement{Kind: &pb.Announcement_Departure{Departure: dep}})
				cancel()
			}
			switch {
			case err != nil:
				s.log.Debug("departure not published", "err", err)
			case s.params.DepartureGrace > 0:
				// Gossip has no delivery acknowledgement: hand the departure
				// to a few peers directly (depart.go), and give pubsub
				// DepartureGrace to write it only if none took it.
				start := time.Now()
				ctx, cancel := context.WithTimeout(context.Background(), s.params.DepartureGrace)
				taken := s.handOff(ctx, dep)
				cancel()
				if !taken {
					t := time.NewTimer(s.params.DepartureGrace - time.Since(start))
					<-t.C
				}
			}
		}
	})
}

// hasNetworkPeers reports whether the host is connected to a peer that
// speaks this network's sync protocol.
func (s *Service) hasNetworkPeers() bool {
	for _, p := range s.h.Network().Peers() {
		if s.speaksSync(p) {
			return true
		}
	}
	return false
}

// stop cancels the service's context and waits for its goroutines and
// in-flight stream handlers.
func (s *Service) stop() { s.stopOnce.Do(s.doStop) }

func (s *Service) doStop() {
	s.lifeMu.Lock()
	s.closing = true
	s.lifeMu.Unlock()
	s.cancel()
	if s.hostSub != nil {
		_ = s.hostSub.Close()
	}
	if s.evh != nil {
		s.evh.Cancel()
	}
	if s.sub != nil {
		s.sub.Cancel()
	}
	// Syncs being served block on their streams, not on the context.
	s.serving.resetAll()
	s.resetPushStreams()
	if s.departs != nil {
		s.departs.resetAll()
	}
	s.wg.Wait()
}

func (s *Service) teardown() {
	s.stop()
	if s.serves { // never remove a handler another service registered
		for _, id := range s.protos {
			s.h.RemoveStreamHandler(id)
		}
	}
	if s.servesBumps {
		s.h.RemoveStreamHandler(BumpProtocol(s.network))
	}
	if s.servesDepart {
		s.h.RemoveStreamHandler(DepartProtocol(s.network))
	}
	var errs []error
	if s.topic != nil {
		errs = append(errs, s.topic.Close(), s.ps.UnregisterTopicValidator(TopicName(s.network)))
	}
	if s.stats != nil {
		s.stats.close()
	}
	for e := range s.store.Snapshot().All() {
		s.h.ConnManager().UntagPeer(e.Entry.PeerID, s.cmTag) // a borrowed host outlives us
	}
	errs = append(errs, s.store.Close())
	s.closeErr = errors.Join(errs...)
}
