package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
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
	"github.com/libp2p/go-libp2p/p2p/protocol/ping"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/time/rate"
	"google.golang.org/protobuf/proto"

	"github.com/mosaik-go/mosaik"
	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/catalog/pb"
)

// ErrClosed is returned by calls on a closed service.
var ErrClosed = fmt.Errorf("discovery: %w", mosaik.ErrClosed)

// Stream reset codes used by the sync protocol (see PROTOCOL.md).
const (
	CodeDifferentNetwork  network.StreamErrorCode = 101
	CodeProtocolViolation network.StreamErrorCode = 400
)

type source string

const (
	fromGossip source = "gossip"
	fromSync   source = "sync"
	fromDHT    source = "dht"
)

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
	network catalog.NetworkID
	proto   protocol.ID
	store   *catalog.Store
	rtt     *catalog.RTTTable

	localMu sync.Mutex
	local   *catalog.Local

	topic   *pubsub.Topic
	sub     *pubsub.Subscription
	evh     *pubsub.TopicEventHandler
	hostSub event.Subscription

	announceNow chan struct{}
	peerJoined  chan struct{}
	connectNow  chan struct{}             // a connection closed: check connectivity
	relayQ      chan *catalog.SignedEntry // entries to relay onto gossip
	dhtNow      chan struct{}

	syncMu   sync.Mutex
	lastSync map[peer.ID]time.Time
	limiters *lru.Cache[peer.ID, *rate.Limiter]
	syncing  map[peer.ID]int // syncs being served per peer (entries > 0 only)
	serving  chan struct{}   // semaphore of syncs being served
	// strangers is the share of serving that peers without a catalog entry
	// may hold (half): made-up identities cannot take every slot.
	strangers chan struct{}
	starting  chan struct{} // semaphore of syncs being started
	dialing   chan struct{} // semaphore of cascade dials
	probing   map[peer.ID]*flight

	ctx      context.Context
	cancel   context.CancelFunc
	lifeMu   sync.Mutex
	closing  bool
	wg       sync.WaitGroup
	closeErr error
	once     sync.Once
	stopOnce sync.Once
	serves   bool // this service registered the sync handler
}

// New starts discovery of network on h. ps is the gossipsub router to
// announce on (it may be nil only with Params.DisableGossip). The host's
// peerstore must hold its private key (libp2p.New ensures that); the key
// signs the local entry.
func New(h host.Host, ps *pubsub.PubSub, network catalog.NetworkID, opts ...Option) (_ *Service, err error) {
	cfg := config{params: DefaultParams(), log: slog.Default()}
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
	local, err := catalog.NewLocal(key, network, time.Now(), func(e *catalog.Entry) {
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
	store, err := catalog.NewStore(local.Current(), p.Catalog)
	if err != nil {
		return nil, err
	}
	limiters, _ := lru.New[peer.ID, *rate.Limiter](4096)
	s := &Service{
		h: h, ps: ps, params: p, network: network, proto: SyncProtocol(network),
		log:   cfg.log.With("component", "discovery", "network", network.Short()),
		store: store, rtt: catalog.NewRTTTable(), local: local,
		relayQ: make(chan *catalog.SignedEntry, 256), announceNow: make(chan struct{}, 1), peerJoined: make(chan struct{}, 1), connectNow: make(chan struct{}, 1), dhtNow: make(chan struct{}, 1),
		lastSync: map[peer.ID]time.Time{}, limiters: limiters, syncing: map[peer.ID]int{}, dht: cfg.dht,
		serving: make(chan struct{}, p.MaxConcurrentSyncs), strangers: make(chan struct{}, max(1, p.MaxConcurrentSyncs/2)),
		starting: make(chan struct{}, 8),
		dialing:  make(chan struct{}, max(1, p.CascadeBelow)),
		probing:  map[peer.ID]*flight{},
		tracer:   cfg.tracer.Tracer("github.com/mosaik-go/mosaik/catalog/discovery"),
	}
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
		s.h.SetStreamHandler(s.proto, s.handleSync)
		s.serves = true
	}
	// The bus blocks emitters (the swarm among them) on a full subscriber
	// buffer; disconnects come in bursts when peers leave together.
	if s.hostSub, err = h.EventBus().Subscribe([]any{new(event.EvtPeerIdentificationCompleted), new(event.EvtLocalAddressesUpdated),
		new(event.EvtPeerConnectednessChanged)}, eventbus.BufSize(256)); err != nil {
		return nil, fmt.Errorf("discovery: event bus: %w", err)
	}

	s.spawn(s.announceLoop)
	s.spawn(s.hostEventLoop)
	s.spawn(s.purgeLoop)
	s.spawn(s.rttLoop)
	if !p.DisableSync && p.CascadeBelow > 0 {
		s.spawn(s.connectLoop)
	}
	if s.topic != nil {
		s.spawn(s.readLoop)
		s.spawn(s.peerEventLoop)
		s.spawn(s.relayLoop)
	}
	if s.dht != nil {
		s.spawn(s.dhtLoop)
	}
	// Plugin mode: the host may already be connected to peers of the network.
	if !p.DisableSync {
		for _, pid := range h.Network().Peers() {
			if ok, _ := h.Peerstore().SupportsProtocols(pid, s.proto); len(ok) > 0 {
				s.startSync(pid)
			}
		}
	}
	return s, nil
}

func (s *Service) joinTopic() error {
	name := TopicName(s.network)
	if err := s.ps.RegisterTopicValidator(name, s.validate); err != nil {
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
// Writes to it bypass gossip: prefer the service's methods.
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
func (s *Service) Stats() Stats { return s.stats.snapshot() }

// Local returns the local peer's current signed entry.
func (s *Service) Local() *catalog.SignedEntry { return s.store.Snapshot().Local() }

// UpdateLocal changes the local entry with f (which must be fast and must
// not block). If anything changed, the entry is re-signed with a new
// version, put into the catalog, announced on gossip and stored in the DHT.
func (s *Service) UpdateLocal(f func(*catalog.Entry)) (*catalog.SignedEntry, error) {
	if s.ctx.Err() != nil {
		return nil, ErrClosed
	}
	s.localMu.Lock()
	se, changed, err := s.local.Update(time.Now(), f)
	if err == nil && changed {
		err = s.store.SetLocal(se)
	}
	s.localMu.Unlock()
	if err != nil {
		return nil, err
	}
	if changed {
		signal(s.announceNow)
		signal(s.dhtNow)
	}
	return se, nil
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// refresh bumps the local entry's version (a heartbeat).
func (s *Service) refresh() (*catalog.SignedEntry, error) {
	s.localMu.Lock()
	defer s.localMu.Unlock()
	se, err := s.local.Refresh(time.Now())
	if err == nil {
		err = s.store.SetLocal(se)
	}
	return se, err
}

// Close publishes a signed departure (best effort), waits DepartureGrace
// for it to leave, then stops every goroutine and releases the topic, the
// stream handler and the event subscriptions. It does not close the host,
// pubsub or DHT. Close is idempotent and safe to call concurrently.
func (s *Service) Close() error {
	s.once.Do(func() {
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
			dep, err := s.local.Departure(time.Now())
			s.localMu.Unlock()
			if err == nil {
				err = s.publish(&pb.Announcement{Kind: &pb.Announcement_Departure{Departure: dep}})
			}
			if err != nil {
				s.log.Debug("departure not published", "err", err)
			} else if s.params.DepartureGrace > 0 {
				// Give pubsub time to write the departure before teardown; there
				// is no delivery acknowledgement to wait on.
				t := time.NewTimer(s.params.DepartureGrace)
				<-t.C
			}
		}
		s.teardown()
	})
	return s.closeErr
}

// hasNetworkPeers reports whether the host is connected to a peer that
// speaks this network's sync protocol.
func (s *Service) hasNetworkPeers() bool {
	for _, p := range s.h.Network().Peers() {
		if ok, _ := s.h.Peerstore().SupportsProtocols(p, s.proto); len(ok) > 0 {
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
	s.wg.Wait()
}

func (s *Service) teardown() {
	s.stop()
	if s.serves { // never remove a handler another service registered
		s.h.RemoveStreamHandler(s.proto)
	}
	var errs []error
	if s.topic != nil {
		errs = append(errs, s.topic.Close(), s.ps.UnregisterTopicValidator(TopicName(s.network)))
	}
	if s.stats != nil {
		s.stats.close()
	}
	errs = append(errs, s.store.Close())
	s.closeErr = errors.Join(errs...)
}

// ---- gossip ----

// maxAnnouncement caps a gossip message: one entry plus protobuf framing.
func (s *Service) maxAnnouncement() int { return s.params.Catalog.MaxEntrySize + 16 }

func (s *Service) validate(_ context.Context, from peer.ID, msg *pubsub.Message) pubsub.ValidationResult {
	if from == s.h.ID() {
		// Our own publication: the local entry or departure we just signed,
		// or a relay of an entry verified when it was merged. Verifying it
		// again would cost a signature check per heartbeat and relay for
		// nothing; readLoop skips our own messages anyway.
		return pubsub.ValidationAccept
	}
	now := time.Now()
	e, d, err := decodeAnnouncement(msg.Data, s.maxAnnouncement(), func(data []byte) (*catalog.SignedEntry, error) {
		// Cheap checks first: a copy of a known version is ignored without
		// verifying its signature.
		return s.store.Open(data, now)
	})
	if err == nil && d != nil {
		err = s.checkDeparture(d, now)
	}
	if err == nil {
		if e != nil {
			msg.ValidatorData = e
		} else {
			msg.ValidatorData = d
		}
		return pubsub.ValidationAccept
	}
	rejected := catalog.IsRejected(err)
	s.stats.refuse(rejected, catalog.Reason(err))
	s.log.Debug("gossip message refused", "from", from, "rejected", rejected, "err", err)
	if rejected {
		return pubsub.ValidationReject
	}
	return pubsub.ValidationIgnore
}

// decodeAnnouncement decodes a gossip message of at most max bytes into an
// entry (opened by openEntry) or a verified departure. It never panics on
// hostile input; errors carry catalog's verdict sentinels.
func decodeAnnouncement(data []byte, max int, openEntry func([]byte) (*catalog.SignedEntry, error)) (*catalog.SignedEntry, *catalog.Departure, error) {
	if len(data) > max {
		return nil, nil, fmt.Errorf("%w: announcement of %d bytes > %d", catalog.ErrOversize, len(data), max)
	}
	var ann pb.Announcement
	if err := proto.Unmarshal(data, &ann); err != nil {
		return nil, nil, fmt.Errorf("%w: announcement: %v", catalog.ErrMalformed, err)
	}
	switch k := ann.Kind.(type) {
	case *pb.Announcement_Entry:
		e, err := openEntry(k.Entry)
		return e, nil, err
	case *pb.Announcement_Departure:
		d, err := catalog.OpenDeparture(k.Departure)
		return nil, d, err
	}
	return nil, nil, fmt.Errorf("%w: empty announcement", catalog.ErrMalformed)
}

func (s *Service) checkDeparture(d *catalog.Departure, now time.Time) error {
	if d.Network != s.network {
		return catalog.ErrOtherNetwork
	}
	if d.Timestamp.Sub(now).Abs() > s.params.Catalog.MaxClockDrift {
		return catalog.ErrClockDrift
	}
	if d.LastVersion.UpdatedAt().After(now.Add(s.params.Catalog.MaxClockDrift)) {
		return catalog.ErrClockDrift // a tombstone that would never expire
	}
	e, ok := s.store.Snapshot().Get(d.PeerID)
	if !ok || d.PeerID == s.h.ID() {
		return catalog.ErrUnknown
	}
	if d.LastVersion.Compare(e.Entry.Version) < 0 {
		return catalog.ErrNotNewer
	}
	return nil
}

func (s *Service) readLoop() {
	for {
		msg, err := s.sub.Next(s.ctx)
		if err != nil {
			return
		}
		if msg.ReceivedFrom == s.h.ID() {
			continue
		}
		switch v := msg.ValidatorData.(type) {
		case *catalog.SignedEntry:
			s.merge(v, fromGossip)
		case *catalog.Departure:
			s.depart(v)
		}
	}
}

// relayLoop publishes entries learned by sync or DHT onto gossip, off the
// merge path: Publish can block while pubsub is busy, and a sync responder
// must not wait on it.
func (s *Service) relayLoop() {
	for {
		select {
		case <-s.ctx.Done():
			return
		case e := <-s.relayQ:
			if err := s.publish(&pb.Announcement{Kind: &pb.Announcement_Entry{Entry: e.Bytes()}}); err == nil {
				s.stats.relayed.Add(1)
			}
		}
	}
}

func (s *Service) peerEventLoop() {
	for {
		ev, err := s.evh.NextPeerEvent(s.ctx)
		if err != nil {
			return
		}
		if ev.Type == pubsub.PeerJoin {
			signal(s.peerJoined)
		}
	}
}

func (s *Service) publish(ann *pb.Announcement) error {
	if s.topic == nil {
		return nil
	}
	data, err := proto.Marshal(ann)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.params.SyncTimeout)
	defer cancel()
	return s.topic.Publish(ctx, data)
}

func (s *Service) announce(se *catalog.SignedEntry) {
	if err := s.publish(&pb.Announcement{Kind: &pb.Announcement_Entry{Entry: se.Bytes()}}); err != nil {
		s.log.Debug("announce failed", "err", err)
		return
	}
	s.stats.announcements.Add(1)
}

// announceLoop publishes the local entry at start, after every change, on a
// jittered heartbeat, and shortly after a new gossip peer appears. Every
// heartbeat and join announcement carries a new version, so it is a new
// gossip message rather than a duplicate pubsub would drop.
func (s *Service) announceLoop() {
	beat := time.NewTimer(0) // the first heartbeat fires at once
	defer beat.Stop()
	var join <-chan time.Time
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.announceNow:
			s.announce(s.Local())
		case <-s.peerJoined:
			if join == nil {
				join = time.After(s.params.JoinAnnounceDelay)
			}
		case <-join:
			// The join announcement stands in for the next heartbeat
			// rather than adding to it: the heartbeat timer restarts from
			// it. Joins still bring announcements forward (at most one per
			// JoinAnnounceDelay), but under churn heartbeats are not
			// published on top of them.
			join = nil
			if se, err := s.refresh(); err == nil {
				s.announce(se)
				// Reset discards a pending expiry (timers of Go ≥ 1.23).
				beat.Reset(jitter(s.params.AnnounceInterval, s.params.AnnounceJitter))
			}
		case <-beat.C:
			if se, err := s.refresh(); err == nil {
				s.announce(se)
			}
			beat.Reset(jitter(s.params.AnnounceInterval, s.params.AnnounceJitter))
		}
	}
}

// jitter returns a uniform duration in [d·(1−j), d·(1+j)].
func jitter(d time.Duration, j float64) time.Duration {
	return time.Duration(float64(d) * (1 - j + 2*j*rand.Float64()))
}

// ---- merging ----

// merge applies an entry learned from src and reacts to the outcome.
func (s *Service) merge(e *catalog.SignedEntry, src source) {
	out, err := s.store.Merge(e, time.Now())
	s.merged(e, out, err, src)
}

// merged reacts to the outcome of merging e learned from src.
func (s *Service) merged(e *catalog.SignedEntry, out catalog.Outcome, err error, src source) {
	if err != nil {
		if !errors.Is(err, catalog.ErrLocal) {
			s.stats.refuse(catalog.IsRejected(err), catalog.Reason(err))
		}
		return
	}
	s.h.Peerstore().AddAddrs(e.Entry.PeerID, e.Entry.Addrs, s.params.Catalog.PurgeAfter)
	if out == catalog.Updated {
		s.stats.updated.Add(1)
		return
	}
	s.stats.added.Add(1)
	s.log.Debug("peer discovered", "peer", e.Entry.PeerID, "via", src)
	if src != fromGossip {
		// Peers that learned of us only by sync or DHT have not seen this
		// entry on gossip: relay it (pubsub deduplicates identical bytes).
		if s.topic != nil {
			select {
			case s.relayQ <- e:
			default: // relays only speed convergence up; heartbeats heal a drop
			}
		}
		s.cascade(e.Entry.PeerID)
	}
}

func (s *Service) depart(d *catalog.Departure) {
	ok, err := s.store.Depart(d, time.Now())
	if !ok {
		if err != nil && !errors.Is(err, catalog.ErrUnknown) {
			s.stats.refuse(catalog.IsRejected(err), catalog.Reason(err))
		}
		return
	}
	s.rtt.Remove(d.PeerID)
	s.stats.departed.Add(1)
	s.log.Debug("peer departed", "peer", d.PeerID)
}

// cascade connects to a newly learned peer while this node has few
// connections; identify then triggers a sync with it, so a new node
// converges without waiting for gossip.
func (s *Service) cascade(p peer.ID) {
	if s.params.DisableSync || len(s.h.Network().Peers()) >= s.params.CascadeBelow ||
		s.h.Network().Connectedness(p) == network.Connected {
		return
	}
	s.dial(p)
}

// dial connects to p in the background, unless CascadeBelow dials are in
// flight already: a sync full of entries with unreachable addresses cannot
// make us start thousands of dials. It reports whether a dial started.
func (s *Service) dial(p peer.ID) bool {
	select {
	case s.dialing <- struct{}{}:
	default:
		return false
	}
	if !s.spawn(func() {
		defer func() { <-s.dialing }()
		ctx, cancel := context.WithTimeout(s.ctx, s.params.SyncTimeout)
		defer cancel()
		if err := s.h.Connect(ctx, s.h.Peerstore().PeerInfo(p)); err != nil {
			s.log.Debug("connect to catalog peer failed", "peer", p, "err", err)
		}
	}) {
		<-s.dialing
		return false
	}
	return true
}

// connectLoop keeps this node connected to at least CascadeBelow peers of
// its catalog. When peers leave, a node keeps only the connections it has
// left, and with one or two it hears the network through them alone: its
// own heartbeats and departures reach others late or not at all. So
// whenever a connection closes, and every AnnounceInterval, it dials
// random recently heard catalog peers it is not connected to until
// CascadeBelow are connected (dials in flight count).
func (s *Service) connectLoop() {
	t := time.NewTimer(jitter(s.params.AnnounceInterval, 0.5))
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.connectNow:
		case <-t.C:
			t.Reset(jitter(s.params.AnnounceInterval, 0.5))
		}
		s.topUp()
	}
}

// topUp dials catalog peers while fewer than CascadeBelow are connected.
// It dials only peers heard from within two heartbeat gaps: a peer that
// crashed stays in the catalog until PurgeAfter, and dialing it on every
// tick would hold dial slots (until SyncTimeout for an address that
// drops packets) that live peers need.
func (s *Service) topUp() {
	recent := time.Now().Add(-2 * time.Duration(float64(s.params.AnnounceInterval)*(1+s.params.AnnounceJitter)))
	connected := 0
	var idle []peer.ID
	for e := range s.store.Snapshot().All() {
		switch p := e.Entry.PeerID; {
		case s.h.Network().Connectedness(p) == network.Connected:
			connected++
		case len(e.Entry.Addrs) > 0 && e.Entry.Version.UpdatedAt().After(recent):
			idle = append(idle, p)
		}
	}
	need := s.params.CascadeBelow - connected - len(s.dialing)
	rand.Shuffle(len(idle), func(i, j int) { idle[i], idle[j] = idle[j], idle[i] })
	for _, p := range idle {
		if need <= 0 || !s.dial(p) {
			return
		}
		need--
	}
}

// ---- host events, purge, RTT ----

func (s *Service) hostEventLoop() {
	for {
		select {
		case <-s.ctx.Done():
			return
		case ev, ok := <-s.hostSub.Out():
			if !ok {
				return
			}
			switch ev := ev.(type) {
			case event.EvtPeerIdentificationCompleted:
				if !s.params.DisableSync && slices.Contains(ev.Protocols, s.proto) && s.shouldSync(ev.Peer) {
					s.startSync(ev.Peer)
				}
			case event.EvtPeerConnectednessChanged:
				if ev.Connectedness != network.Connected {
					signal(s.connectNow)
				}
			case event.EvtLocalAddressesUpdated:
				if _, err := s.UpdateLocal(func(e *catalog.Entry) { e.Addrs = s.h.Addrs() }); err != nil {
					s.log.Warn("cannot update local addresses", "err", err)
				}
			}
		}
	}
}

// shouldSync decides whether a new connection to p warrants a full sync:
// when p is not in our catalog (a new peer, or one we purged during a
// partition), or while our catalog is empty (we are new). Connections to
// known peers add nothing a sync would: gossip keeps known entries fresh,
// and skipping them keeps a DHT-driven full mesh from costing O(N²) syncs.
func (s *Service) shouldSync(p peer.ID) bool {
	snap := s.store.Snapshot()
	if snap.Len() == 0 {
		return true
	}
	_, known := snap.Get(p)
	return !known
}

// purgeLoop removes each entry as soon as it goes stale.
func (s *Service) purgeLoop() {
	for {
		snap := s.store.Snapshot()
		var expire <-chan time.Time
		var t *time.Timer
		if at, ok := s.store.NextExpiry(); ok {
			t = time.NewTimer(time.Until(at) + time.Millisecond)
			expire = t.C
		}
		select {
		case <-s.ctx.Done():
		case <-snap.Changed():
		case <-expire:
			for _, e := range s.store.Purge(time.Now()) {
				s.rtt.Remove(e.Entry.PeerID)
				s.stats.purged.Add(1)
				s.log.Debug("peer purged", "peer", e.Entry.PeerID, "last_update", e.Entry.Version.UpdatedAt())
			}
		}
		if t != nil {
			t.Stop()
		}
		if s.ctx.Err() != nil {
			return
		}
	}
}

// rttLoop probes the connected catalog peers on a jittered interval.
func (s *Service) rttLoop() {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		for e := range s.store.Snapshot().All() {
			p := e.Entry.PeerID
			if s.h.Network().Connectedness(p) != network.Connected {
				continue
			}
			if _, err := s.Probe(s.ctx, p); err != nil && s.ctx.Err() == nil {
				s.log.Debug("rtt probe failed", "peer", p, "err", err)
			}
		}
		t.Reset(jitter(s.params.RTTProbeInterval, 0.5))
	}
}

// flight is one RTT probe in progress; concurrent Probe calls for the
// same peer share it (libp2p allows few concurrent pings per peer).
type flight struct {
	done chan struct{}
	rtt  time.Duration
	err  error
}

// Probe measures the RTT to p once with libp2p ping (dialing if needed),
// records the sample in the RTT table and returns it. A probe of p already
// in progress is joined rather than repeated. It gives up after
// Params.PingTimeout or when ctx ends.
func (s *Service) Probe(ctx context.Context, p peer.ID) (time.Duration, error) {
	s.syncMu.Lock()
	if f := s.probing[p]; f != nil {
		s.syncMu.Unlock()
		select {
		case <-f.done:
			return f.rtt, f.err
		case <-ctx.Done():
			return 0, fmt.Errorf("discovery: ping %s: %w", p, ctx.Err())
		}
	}
	f := &flight{done: make(chan struct{})}
	s.probing[p] = f
	s.syncMu.Unlock()
	defer func() {
		s.syncMu.Lock()
		delete(s.probing, p)
		s.syncMu.Unlock()
		close(f.done)
	}()
	ctx, cancel := context.WithTimeout(ctx, s.params.PingTimeout)
	defer cancel() // ping.Ping keeps pinging until its ctx ends
	select {
	case res := <-ping.Ping(ctx, s.h, p):
		if res.Error != nil {
			f.err = fmt.Errorf("discovery: ping %s: %w", p, res.Error)
			return 0, f.err
		}
		s.rtt.Record(p, res.RTT, time.Now())
		s.stats.rtt.Record(ctx, res.RTT.Seconds(), s.stats.rttAttrs)
		f.rtt = res.RTT
		return res.RTT, nil
	case <-ctx.Done():
		f.err = fmt.Errorf("discovery: ping %s: %w", p, ctx.Err())
		return 0, f.err
	}
}
