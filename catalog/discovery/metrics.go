package discovery

import (
	"context"
	"maps"
	"strings"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Stats are cumulative counters of one discovery service, for tests, the
// status page and operators. The same numbers are exported as OpenTelemetry
// metrics named mosaik.discovery.*.
type Stats struct {
	// Inbound catalog inputs (gossip, sync, DHT) by outcome.
	Added    uint64 // entries of peers new to the catalog
	Updated  uint64 // newer entries of known peers
	Ignored  uint64 // valid but stale, replayed or not newer
	Rejected uint64 // invalid: bad signature, other network, oversize, ...
	// RejectedBy breaks Rejected and Ignored down by reason label
	// (catalog.Reason), keyed "rejected/<reason>" and "ignored/<reason>".
	RejectedBy map[string]uint64

	Departed uint64 // peers removed by a departure notice
	Purged   uint64 // peers removed after going silent
	// Readmitted counts peers taken back on gossip, from their own
	// publication, while the tombstone of their purge was held (they are
	// not relayed on as newcomers are).
	Readmitted uint64
	// SignatureChecks counts the entry signatures verified: inputs that
	// passed every cheaper check (catalog.Store.SignatureChecks).
	SignatureChecks uint64

	// Syncs this node initiated: every attempt counts once in SyncsStarted
	// when it begins, then once in SyncsOK or SyncsFailed when it ends, so
	// SyncsStarted - SyncsOK - SyncsFailed are in flight.
	SyncsStarted  uint64
	SyncsOK       uint64
	SyncsFailed   uint64
	SyncsServed   uint64 // syncs served to peers
	SyncsRefused  uint64 // syncs refused (rate limit, capacity, bad request)
	Announcements uint64 // own entry publications on gossip
	Relayed       uint64 // others' entries relayed onto gossip after a sync
	// RelayMessages counts the gossip messages those relays took: a batch
	// carries several entries (PROTOCOL.md section 9.6).
	RelayMessages  uint64
	DHTPuts        uint64 // successful DHT puts of the local entry
	DHTPutFailures uint64
	LinksRepaired  uint64 // gossip links reset because pubsub lost a connected peer's topics
	// MuteLinksClosed counts connections closed because identify failed on
	// them (a timeout on a loaded host): identify runs once per connection,
	// and without it neither gossipsub nor the catalog sync ever uses one.
	MuteLinksClosed uint64
	// JoinRepairs counts the delta syncs started with a peer whose sync
	// we served before its gossip subscription reached us (joinrepair.go).
	JoinRepairs uint64

	// Sync traffic, both directions and both protocol versions: frame
	// bytes on sync streams and sealed entries in sync messages.
	SyncBytesSent, SyncBytesReceived     uint64
	SyncEntriesSent, SyncEntriesReceived uint64
	// Bumps (sync 2.1.0): entries whose only change is their version,
	// sent as version and signature instead of whole, and those received
	// that were not merged (they did not apply, failed to open, or were
	// not newer by the time they came); see PROTOCOL.md section 10.8.
	SyncBumpsSent, SyncBumpsReceived, SyncBumpsRefused uint64
	// SyncErrorsBy counts failed and refused syncs by cause, keyed
	// "in/<cause>" (syncs this node refused or failed to serve) and
	// "out/<cause>" (syncs it started that failed). Causes are listed in
	// PROTOCOL.md section 10.4.
	SyncErrorsBy map[string]uint64

	// Bump push (PROTOCOL.md section 10.9). BumpHeartbeats: our own
	// heartbeats sent as bumps (not on gossip). BumpsPushed: bump records
	// sent, BumpFramesSent/Received: frames. Of the bumps received:
	// BumpsMerged were merged, BumpsKnown were for versions we held
	// (dropped after a lookup), BumpsPulled named a peer or content we
	// lack (a sync with the sender follows), BumpsRefused failed to open
	// or merge (their causes count in RejectedBy). BumpsDropped: bumps
	// that a push peer fell too far behind to get.
	BumpHeartbeats, BumpsPushed, BumpFramesSent, BumpFramesReceived uint64
	BumpsReceived, BumpsMerged, BumpsKnown, BumpsPulled             uint64
	BumpsRefused, BumpsDropped                                      uint64
	// BumpErrorsBy counts refused or failed frames by cause, keyed
	// "in/<cause>" (penalized, rate_limited, busy, read, oversize,
	// malformed; stranger counts frames applied from a peer we do not
	// hold, which start a sync) and "out/<cause>" (protocol, timeout,
	// stream).
	BumpErrorsBy map[string]uint64
}

type counters struct {
	added, updated, ignored, rejected  atomic.Uint64
	departed, purged, readmitted       atomic.Uint64
	syncsStarted, syncsOK, syncsFailed atomic.Uint64
	syncsServed, syncsRefused          atomic.Uint64
	announcements, relayed             atomic.Uint64
	relayMessages                      atomic.Uint64
	dhtPuts, dhtPutFailures            atomic.Uint64
	linksRepaired, joinRepairs         atomic.Uint64
	muteClosed                         atomic.Uint64

	mu     sync.Mutex
	reason map[string]uint64

	// Sync traffic, and syncs failed or refused by cause.
	syncBytesOut, syncBytesIn     atomic.Uint64
	syncEntriesOut, syncEntriesIn atomic.Uint64
	syncBumpsOut, syncBumpsIn     atomic.Uint64
	syncBumpsRefused              atomic.Uint64
	syncErr                       map[string]uint64 // "in/<cause>", "out/<cause>"; under mu

	bumpHeartbeats, bumpsPushed, bumpFramesOut, bumpFramesIn atomic.Uint64
	bumpsIn, bumpsMerged, bumpsKnown, bumpsPulled            atomic.Uint64
	bumpsRefused, bumpsDropped                               atomic.Uint64
	pushErr                                                  map[string]uint64 // under mu

	rtt      metric.Float64Histogram
	syncDur  metric.Float64Histogram
	rttAttrs metric.MeasurementOption
	reg      metric.Registration
	size     func() int
}

func (c *counters) refuse(rejected bool, reason string) {
	key := "ignored/" + reason
	if rejected {
		c.rejected.Add(1)
		key = "rejected/" + reason
	} else {
		c.ignored.Add(1)
	}
	c.mu.Lock()
	c.reason[key]++
	c.mu.Unlock()
}

// syncFailed counts a failed or refused sync by direction ("in", "out")
// and cause.
func (c *counters) syncFailed(direction, cause string) {
	c.mu.Lock()
	c.syncErr[direction+"/"+cause]++
	c.mu.Unlock()
}

// pushFailed counts a refused or failed bump frame by "in/" or "out/"
// and cause.
func (c *counters) pushFailed(key string) {
	c.mu.Lock()
	c.pushErr[key]++
	c.mu.Unlock()
}

func (c *counters) snapshot() Stats {
	c.mu.Lock()
	by := maps.Clone(c.reason)
	syncBy := maps.Clone(c.syncErr)
	pushBy := maps.Clone(c.pushErr)
	c.mu.Unlock()
	return Stats{
		Added: c.added.Load(), Updated: c.updated.Load(), Ignored: c.ignored.Load(), Rejected: c.rejected.Load(),
		RejectedBy: by, Departed: c.departed.Load(), Purged: c.purged.Load(), Readmitted: c.readmitted.Load(),
		SyncsStarted: c.syncsStarted.Load(), SyncsOK: c.syncsOK.Load(), SyncsFailed: c.syncsFailed.Load(),
		SyncsServed: c.syncsServed.Load(), SyncsRefused: c.syncsRefused.Load(),
		Announcements: c.announcements.Load(), Relayed: c.relayed.Load(), RelayMessages: c.relayMessages.Load(),
		DHTPuts: c.dhtPuts.Load(), DHTPutFailures: c.dhtPutFailures.Load(),
		LinksRepaired: c.linksRepaired.Load(), JoinRepairs: c.joinRepairs.Load(), MuteLinksClosed: c.muteClosed.Load(),
		SyncBytesSent: c.syncBytesOut.Load(), SyncBytesReceived: c.syncBytesIn.Load(),
		SyncEntriesSent: c.syncEntriesOut.Load(), SyncEntriesReceived: c.syncEntriesIn.Load(),
		SyncBumpsSent: c.syncBumpsOut.Load(), SyncBumpsReceived: c.syncBumpsIn.Load(), SyncBumpsRefused: c.syncBumpsRefused.Load(),
		SyncErrorsBy:   syncBy,
		BumpHeartbeats: c.bumpHeartbeats.Load(), BumpsPushed: c.bumpsPushed.Load(),
		BumpFramesSent: c.bumpFramesOut.Load(), BumpFramesReceived: c.bumpFramesIn.Load(),
		BumpsReceived: c.bumpsIn.Load(), BumpsMerged: c.bumpsMerged.Load(), BumpsKnown: c.bumpsKnown.Load(),
		BumpsPulled: c.bumpsPulled.Load(), BumpsRefused: c.bumpsRefused.Load(), BumpsDropped: c.bumpsDropped.Load(),
		BumpErrorsBy: pushBy,
	}
}

// newCounters registers the OpenTelemetry instruments on mp. Counters are
// observed from the atomics, so there is one source of truth.
func newCounters(mp metric.MeterProvider, network string, size func() int) (*counters, error) {
	c := &counters{reason: map[string]uint64{}, syncErr: map[string]uint64{}, pushErr: map[string]uint64{}, size: size}
	m := mp.Meter("github.com/mosaik-go/mosaik/catalog/discovery")
	nw := attribute.String("network", network)
	c.rttAttrs = metric.WithAttributes(nw)
	var err error
	if c.syncDur, err = m.Float64Histogram("mosaik.discovery.sync.duration", metric.WithUnit("s"),
		metric.WithDescription("duration of catalog syncs this node started"),
		metric.WithExplicitBucketBoundaries(.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10)); err != nil {
		return nil, err
	}
	if c.rtt, err = m.Float64Histogram("mosaik.discovery.rtt", metric.WithUnit("s"),
		metric.WithDescription("RTT probe samples"),
		metric.WithExplicitBucketBoundaries(.0001, .0005, .001, .005, .01, .05, .1, .25, .5, 1, 2.5)); err != nil {
		return nil, err
	}
	type obs struct {
		name, desc string
		v          *atomic.Uint64
		attrs      []attribute.KeyValue
	}
	list := []obs{
		{"mosaik.discovery.entries", "catalog inputs by outcome", &c.added, []attribute.KeyValue{attribute.String("outcome", "added")}},
		{"mosaik.discovery.entries", "", &c.updated, []attribute.KeyValue{attribute.String("outcome", "updated")}},
		{"mosaik.discovery.peers.departed", "peers removed", &c.departed, []attribute.KeyValue{attribute.String("cause", "departure")}},
		{"mosaik.discovery.peers.departed", "", &c.purged, []attribute.KeyValue{attribute.String("cause", "purged")}},
		{"mosaik.discovery.syncs", "catalog syncs", &c.syncsOK, []attribute.KeyValue{attribute.String("direction", "out"), attribute.String("result", "ok")}},
		{"mosaik.discovery.syncs", "", &c.syncsFailed, []attribute.KeyValue{attribute.String("direction", "out"), attribute.String("result", "failed")}},
		{"mosaik.discovery.syncs", "", &c.syncsServed, []attribute.KeyValue{attribute.String("direction", "in"), attribute.String("result", "ok")}},
		{"mosaik.discovery.syncs", "", &c.syncsRefused, []attribute.KeyValue{attribute.String("direction", "in"), attribute.String("result", "refused")}},
		{"mosaik.discovery.announcements", "own entry publications", &c.announcements, nil},
		{"mosaik.discovery.relayed", "entries relayed to gossip", &c.relayed, nil},
		{"mosaik.discovery.relay_messages", "gossip messages of relayed entries (a batch carries several)", &c.relayMessages, nil},
		{"mosaik.discovery.join_repairs", "delta syncs repairing a join served before the peer's gossip subscription", &c.joinRepairs, nil},
		{"mosaik.discovery.dht.puts", "DHT puts of the local entry", &c.dhtPuts, []attribute.KeyValue{attribute.String("result", "ok")}},
		{"mosaik.discovery.dht.puts", "", &c.dhtPutFailures, []attribute.KeyValue{attribute.String("result", "failed")}},
		{"mosaik.discovery.links.repaired", "gossip links reset because pubsub lost a connected peer's topics", &c.linksRepaired, nil},
		{"mosaik.discovery.links.mute_closed", "connections closed because identify failed on them", &c.muteClosed, nil},
		{"mosaik.discovery.sync.bytes", "frame bytes on catalog sync streams", &c.syncBytesOut, []attribute.KeyValue{attribute.String("direction", "out")}},
		{"mosaik.discovery.sync.bytes", "", &c.syncBytesIn, []attribute.KeyValue{attribute.String("direction", "in")}},
		{"mosaik.discovery.sync.entries", "sealed entries in catalog sync messages", &c.syncEntriesOut, []attribute.KeyValue{attribute.String("direction", "out")}},
		{"mosaik.discovery.sync.entries", "", &c.syncEntriesIn, []attribute.KeyValue{attribute.String("direction", "in")}},
		{"mosaik.discovery.sync.bumps", "bumps (version-only changes) in catalog sync pages", &c.syncBumpsOut, []attribute.KeyValue{attribute.String("direction", "out")}},
		{"mosaik.discovery.sync.bumps", "", &c.syncBumpsIn, []attribute.KeyValue{attribute.String("direction", "in")}},
		{"mosaik.discovery.sync.bumps.refused", "bumps received in catalog syncs that were not merged", &c.syncBumpsRefused, nil},
		{"mosaik.discovery.push.bumps", "bumps on the bump push protocol, by outcome", &c.bumpsPushed, []attribute.KeyValue{attribute.String("outcome", "sent")}},
		{"mosaik.discovery.push.bumps", "", &c.bumpsMerged, []attribute.KeyValue{attribute.String("outcome", "merged")}},
		{"mosaik.discovery.push.bumps", "", &c.bumpsKnown, []attribute.KeyValue{attribute.String("outcome", "known")}},
		{"mosaik.discovery.push.bumps", "", &c.bumpsPulled, []attribute.KeyValue{attribute.String("outcome", "pulled")}},
		{"mosaik.discovery.push.bumps", "", &c.bumpsRefused, []attribute.KeyValue{attribute.String("outcome", "refused")}},
		{"mosaik.discovery.push.bumps", "", &c.bumpsDropped, []attribute.KeyValue{attribute.String("outcome", "dropped")}},
		{"mosaik.discovery.push.frames", "bump push frames", &c.bumpFramesOut, []attribute.KeyValue{attribute.String("direction", "out")}},
		{"mosaik.discovery.push.frames", "", &c.bumpFramesIn, []attribute.KeyValue{attribute.String("direction", "in")}},
	}
	instruments := map[string]metric.Int64ObservableCounter{}
	var all []metric.Observable
	for _, o := range list {
		if _, ok := instruments[o.name]; ok {
			continue
		}
		inst, err := m.Int64ObservableCounter(o.name, metric.WithDescription(o.desc))
		if err != nil {
			return nil, err
		}
		instruments[o.name] = inst
		all = append(all, inst)
	}
	refused, err := m.Int64ObservableCounter("mosaik.discovery.refused", metric.WithDescription("catalog inputs refused, by verdict and reason"))
	if err != nil {
		return nil, err
	}
	sizeG, err := m.Int64ObservableGauge("mosaik.discovery.catalog.size", metric.WithDescription("remote peers in the catalog"))
	if err != nil {
		return nil, err
	}
	syncErrs, err := m.Int64ObservableCounter("mosaik.discovery.sync.errors", metric.WithDescription("failed and refused catalog syncs, by direction and cause"))
	if err != nil {
		return nil, err
	}
	all = append(all, refused, sizeG, syncErrs)
	c.reg, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		for _, x := range list {
			o.ObserveInt64(instruments[x.name], int64(x.v.Load()), metric.WithAttributes(append([]attribute.KeyValue{nw}, x.attrs...)...))
		}
		c.mu.Lock()
		for k, v := range c.reason {
			verdict, reason, _ := strings.Cut(k, "/")
			o.ObserveInt64(refused, int64(v), metric.WithAttributes(nw, attribute.String("verdict", verdict), attribute.String("reason", reason)))
		}
		for k, v := range c.syncErr {
			direction, cause, _ := strings.Cut(k, "/")
			o.ObserveInt64(syncErrs, int64(v), metric.WithAttributes(nw, attribute.String("direction", direction), attribute.String("cause", cause)))
		}
		c.mu.Unlock()
		o.ObserveInt64(sizeG, int64(c.size()), metric.WithAttributes(nw))
		return nil
	}, all...)
	return c, err
}

func (c *counters) close() {
	if c.reg != nil {
		_ = c.reg.Unregister()
	}
}
