package discovery

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	dht "github.com/libp2p/go-libp2p-kad-dht"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/mosaik-go/mosaik/catalog"
)

// Params tunes discovery. Start from [DefaultParams] or [TestParams]; the
// zero value is not valid.
type Params struct {
	// Catalog tunes the store: staleness (PurgeAfter), clock drift, sizes.
	Catalog catalog.Params

	// AnnounceInterval is the liveness heartbeat: the local entry is
	// re-signed with a new version and published this often, give or take
	// AnnounceJitter. gossipsub drops messages published before its mesh
	// forms, so this periodic republish is what heals lost announcements.
	// Default 30 s (ten heartbeats per default PurgeAfter).
	AnnounceInterval time.Duration
	// AnnounceJitter spreads heartbeats uniformly over
	// [interval·(1−j), interval·(1+j)]. Default 0.5.
	AnnounceJitter float64
	// JoinAnnounceDelay is how long after a new gossip peer appears the local
	// entry is published again, so the mesh has formed (about two gossipsub
	// heartbeats). Default 2 s.
	JoinAnnounceDelay time.Duration
	// SettleDelay is how long after start the service puts off the work
	// that a join does not need at once, so that the join itself (one
	// connection, a sync with the bootstrap peer, the responder's relay of
	// our entry) does not queue behind it: the first DHT put and provider
	// records, the dials that bring a new node to CascadeBelow
	// connections (before it, entries of the join sync and of syncs the
	// node serves are not dialed one by one) and one delta sync with a
	// connected peer, which repairs what the join sync and gossip missed
	// while the node was subscribing. A
	// put right at start also lands badly: the DHT's routing table holds
	// the bootstrap peer at most. It also bounds how long an entry the
	// join missed stays missing, so it is short: a join takes tens of
	// milliseconds on an idle machine. Default 1 s (2 s measured slower to
	// "all see all"; see BENCHMARKS.md, "Convergence: deferring a join's
	// side work").
	//
	// While peers new to the catalog keep coming (nodes joining
	// together), the work waits longer: until none came for
	// SettleDelay/2, and at most until 4 × SettleDelay after start. With
	// 100 nodes joining on one loaded core, the side work of the early
	// nodes otherwise kept the late ones from joining (99 % of pairs after
	// 5-10 s instead of about 2 s; BENCHMARKS.md, "Convergence, session
	// 23"). 0 settles at once.
	SettleDelay time.Duration
	// RelayDelay is how long an entry this node relays onto gossip (one
	// it learned by sync or DHT, or a newcomer's own publication; see
	// PROTOCOL.md section 9.6) waits for others to share its message: a
	// bootstrap peer relays every newcomer to all its topic peers, and
	// when nodes join together a message per newcomer and peer costs more
	// than checking the entries. 0 publishes each relay at once. Default
	// 15 ms: with 100 nodes joining together, three A/B runs had 99 % of
	// pairs knowing each other 5-18 % sooner and all seeing all 1.3-1.8×
	// sooner (5 ms gained less, 30 ms no more; BENCHMARKS.md,
	// "Convergence, session 22").
	RelayDelay time.Duration
	// DepartureGrace bounds how long Close waits after publishing the
	// departure notice: until a connected peer took it by hand-off
	// (PROTOCOL.md section 10.10), usually a round trip, or, when none
	// could, this long, so that gossip writes it before teardown.
	// Default 500 ms.
	DepartureGrace time.Duration

	// SyncTimeout bounds one catalog sync, either side. Default 10 s.
	SyncTimeout time.Duration
	// SyncMinInterval is the least time between two syncs with the same
	// peer, both for syncs we start and for syncs a peer may ask of us
	// (with a burst of SyncBurst). Default 2 s.
	SyncMinInterval time.Duration
	// SyncBurst is the per-peer burst of inbound syncs, and the most syncs
	// of one peer served at once. Default 3.
	SyncBurst int
	// MaxConcurrentSyncs caps syncs served at once. Peers without a fresh
	// catalog entry (newcomers, or identities made up for a flood) may
	// hold at most half of them (at least one). When no slot is free, the
	// oldest sync still waiting for its request gives its slot up to the
	// new one, so stalled requests cannot starve anyone, members included;
	// a new sync is refused only when every slot is past its request.
	// Default 32.
	MaxConcurrentSyncs int
	// MaxSyncMessage caps a sync 1.0.0 message in bytes (sync 2.0.0 has
	// fixed page caps, PROTOCOL.md section 14.2). Default 8 MiB.
	MaxSyncMessage int
	// CascadeBelow: after a sync reveals new peers, this node connects to
	// them (and so syncs with them) while it has fewer than this many
	// connections; and whenever a connection closes, and every
	// AnnounceInterval, it dials random catalog peers while fewer than this
	// many of them are connected. 0 turns both off. Default 8.
	CascadeBelow int
	// AntiEntropyInterval is the mean interval (jittered ±50 %) between
	// syncs with one random connected peer of the network, which repair
	// entries that gossip failed to deliver (see PROTOCOL.md §10.5). Each
	// costs one full catalog exchange, so keep it several heartbeats long.
	// 0 turns them off. Default 2 min (four heartbeats).
	AntiEntropyInterval time.Duration

	// RTTProbeInterval is the mean interval between RTT probe rounds over
	// the catalog peers (jittered ±50 %). Default 30 s.
	RTTProbeInterval time.Duration
	// PingTimeout bounds one RTT probe. Default 5 s.
	PingTimeout time.Duration

	// DHTRepublishInterval is how often the local entry is put into the DHT
	// and its provider records refreshed, besides on every change. It should
	// be well below Catalog.PurgeAfter so DHT entries stay fresh. Default 120 s.
	DHTRepublishInterval time.Duration
	// DHTTimeout bounds one DHT put, provide or lookup. Default 30 s.
	DHTTimeout time.Duration

	// BumpInterval is how often the heartbeats this node accepted, and
	// its own, are pushed to its push peers as one frame of bumps each,
	// on the bump push protocol (PROTOCOL.md section 10.9) instead of
	// gossip: it delays a heartbeat by half of it on average at each hop.
	// 0 turns bump push off: heartbeats then travel on gossip, and the
	// protocol is not served (as a node before it). Default 1 s.
	BumpInterval time.Duration
	// BumpPeers is how many connected peers serving the bump protocol
	// this node chooses to push to (gossipsub's D); it pushes to those
	// that push to it as well, up to twice as many in all. Default 6.
	BumpPeers int
	// DisableGossip turns the gossip topic off: the catalog is then filled
	// only by syncs and the DHT. For tests and special deployments.
	DisableGossip bool
	// DisableSync turns catalog syncs off: none is started (on connect,
	// by anti-entropy or by a bump of an unknown peer) and none is served
	// (SyncWith still works as the initiator).
	DisableSync bool
}

// DefaultParams returns the production defaults.
func DefaultParams() Params {
	return Params{
		Catalog:              catalog.DefaultParams(),
		AnnounceInterval:     30 * time.Second,
		AnnounceJitter:       0.5,
		JoinAnnounceDelay:    2 * time.Second,
		SettleDelay:          time.Second,
		RelayDelay:           15 * time.Millisecond,
		DepartureGrace:       500 * time.Millisecond,
		SyncTimeout:          10 * time.Second,
		SyncMinInterval:      2 * time.Second,
		SyncBurst:            3,
		MaxConcurrentSyncs:   32,
		MaxSyncMessage:       8 << 20,
		CascadeBelow:         8,
		AntiEntropyInterval:  2 * time.Minute,
		RTTProbeInterval:     30 * time.Second,
		PingTimeout:          5 * time.Second,
		DHTRepublishInterval: 120 * time.Second,
		DHTTimeout:           30 * time.Second,
		BumpInterval:         time.Second,
		BumpPeers:            6,
	}
}

// TestParams returns a fast profile for tests on one machine: entries go
// stale after 3 s, heartbeats every second ± 25 % (a live peer is purged
// only when two heartbeats in a row are lost or late), an anti-entropy
// sync every 3 s. node.WithFastProfile
// pairs it with a gossipsub router sized for many nodes in one process.
func TestParams() Params {
	p := DefaultParams()
	p.Catalog = catalog.TestParams()
	// On, as in production, but well inside the heartbeat.
	p.Catalog.MinUpdateInterval = 50 * time.Millisecond
	p.AnnounceInterval = time.Second
	p.AnnounceJitter = 0.25
	p.JoinAnnounceDelay = 250 * time.Millisecond
	p.SettleDelay = 250 * time.Millisecond
	p.DepartureGrace = 100 * time.Millisecond
	p.SyncTimeout = 3 * time.Second
	p.SyncMinInterval = 200 * time.Millisecond
	p.AntiEntropyInterval = 3 * time.Second
	p.RTTProbeInterval = 5 * time.Second
	p.PingTimeout = 2 * time.Second
	p.DHTRepublishInterval = 2 * time.Second
	p.DHTTimeout = 5 * time.Second
	p.BumpInterval = 100 * time.Millisecond
	return p
}

// Validate reports every invalid field. It does not modify p.
func (p Params) Validate() error {
	var errs []error
	if err := p.Catalog.Validate(); err != nil {
		errs = append(errs, err)
	}
	pos := func(name string, d time.Duration) {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("%s must be > 0, got %v", name, d))
		}
	}
	pos("AnnounceInterval", p.AnnounceInterval)
	pos("JoinAnnounceDelay", p.JoinAnnounceDelay)
	pos("SyncTimeout", p.SyncTimeout)
	pos("SyncMinInterval", p.SyncMinInterval)
	pos("RTTProbeInterval", p.RTTProbeInterval)
	pos("PingTimeout", p.PingTimeout)
	pos("DHTRepublishInterval", p.DHTRepublishInterval)
	pos("DHTTimeout", p.DHTTimeout)
	if p.SettleDelay < 0 {
		errs = append(errs, fmt.Errorf("SettleDelay must be >= 0, got %v", p.SettleDelay))
	}
	if p.RelayDelay < 0 {
		errs = append(errs, fmt.Errorf("RelayDelay must be >= 0, got %v", p.RelayDelay))
	}
	if p.BumpInterval < 0 {
		errs = append(errs, fmt.Errorf("BumpInterval must be >= 0, got %v", p.BumpInterval))
	}
	if p.BumpInterval > 0 && p.BumpPeers < 1 {
		errs = append(errs, fmt.Errorf("BumpPeers must be >= 1 with bump push on, got %d", p.BumpPeers))
	}
	if p.DepartureGrace < 0 {
		errs = append(errs, fmt.Errorf("DepartureGrace must be >= 0, got %v", p.DepartureGrace))
	}
	if !(p.AnnounceJitter >= 0 && p.AnnounceJitter < 1) { // also refuses NaN
		errs = append(errs, fmt.Errorf("AnnounceJitter must be within [0, 1), got %v", p.AnnounceJitter))
	} else if longest := time.Duration(float64(p.AnnounceInterval) * (1 + p.AnnounceJitter)); longest >= p.Catalog.PurgeAfter {
		errs = append(errs, fmt.Errorf("the longest heartbeat gap, AnnounceInterval %v × (1+AnnounceJitter %v) = %v, must be well below Catalog.PurgeAfter %v",
			p.AnnounceInterval, p.AnnounceJitter, longest, p.Catalog.PurgeAfter))
	}
	if shortest := time.Duration(float64(p.AnnounceInterval) * (1 - p.AnnounceJitter)); p.Catalog.MinUpdateInterval*2 > shortest {
		errs = append(errs, fmt.Errorf("the shortest heartbeat gap, AnnounceInterval %v × (1-AnnounceJitter %v) = %v, must be at least twice Catalog.MinUpdateInterval %v, or receivers drop heartbeats",
			p.AnnounceInterval, p.AnnounceJitter, shortest, p.Catalog.MinUpdateInterval))
	}
	if p.SyncBurst < 1 || p.MaxConcurrentSyncs < 1 || p.CascadeBelow < 0 {
		errs = append(errs, fmt.Errorf("SyncBurst and MaxConcurrentSyncs must be >= 1 and CascadeBelow >= 0"))
	}
	if p.AntiEntropyInterval < 0 {
		errs = append(errs, fmt.Errorf("AntiEntropyInterval must be >= 0, got %v", p.AntiEntropyInterval))
	}
	if p.MaxSyncMessage < p.Catalog.MaxEntrySize {
		errs = append(errs, fmt.Errorf("MaxSyncMessage %d must be >= Catalog.MaxEntrySize %d", p.MaxSyncMessage, p.Catalog.MaxEntrySize))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("discovery: invalid params: %w", err)
	}
	return nil
}

type config struct {
	params Params
	tags   []catalog.Tag
	dht    *dht.IpfsDHT
	log    *slog.Logger
	meter  metric.MeterProvider
	tracer trace.TracerProvider
	init   func(*catalog.Entry)
	now    func() time.Time
	// admission closes the catalog (admission.go).
	admission catalog.Admission
}

// Option configures a [Service].
type Option func(*config) error

// WithParams replaces the parameters (default [DefaultParams]).
func WithParams(p Params) Option {
	return func(c *config) error {
		if err := p.Validate(); err != nil {
			return err
		}
		c.params = p
		return nil
	}
}

// WithTags sets the local peer's initial tags.
func WithTags(tags ...catalog.Tag) Option {
	return func(c *config) error { c.tags = append(c.tags, tags...); return nil }
}

// WithDHT enables the DHT: the local entry is stored in it, provider records
// are published for the network and every produced stream, and
// FindProducers queries it. The DHT must have the mosaik validator
// registered: build it with [DHTOptions].
func WithDHT(d *dht.IpfsDHT) Option {
	return func(c *config) error { c.dht = d; return nil }
}

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return errors.New("discovery: WithLogger(nil)")
		}
		c.log = l
		return nil
	}
}

// WithMeterProvider sets the OpenTelemetry meter provider (default the
// global one, a no-op unless an SDK is installed).
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(c *config) error { c.meter = mp; return nil }
}

// WithTracerProvider sets the OpenTelemetry tracer provider for sync spans
// (default the global one, a no-op unless an SDK is installed).
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(c *config) error { c.tracer = tp; return nil }
}

// WithEntry lets the caller fill in the initial local entry (streams,
// tickets) before it is first signed and announced.
func WithEntry(f func(*catalog.Entry)) Option {
	return func(c *config) error { c.init = f; return nil }
}

// WithClock sets the wall clock the service dates its entry versions with
// and judges others' entries by (freshness, clock drift, purges, departure
// dates); default time.Now. Timers, timeouts and stream deadlines keep the
// real clock. Tests use it to step the clock; now must be safe for
// concurrent use, fast and non-blocking.
func WithClock(now func() time.Time) Option {
	return func(c *config) error {
		if now == nil {
			return errors.New("discovery: WithClock(nil)")
		}
		c.now = now
		return nil
	}
}
