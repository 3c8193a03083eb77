package groups

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/mosaik-go/mosaik/catalog"
)

// metrics are one group's instruments; every value carries the group's
// short id as attribute "group".
type metrics struct {
	attrs         metric.MeasurementOption // also an AddOption and RecordOption
	active        metric.Int64UpDownCounter
	elections     metric.Int64Counter
	leaderChanges metric.Int64Counter
	committed     metric.Int64Gauge
	applyLag      metric.Int64Gauge
	commitLatency metric.Float64Histogram
	discarded     metric.Int64Counter
	dropped       metric.Int64Counter
	panics        metric.Int64Counter

	// Snapshot transfer (PROTOCOL.md §20).
	syncsServed   metric.Int64Counter
	syncsReceived metric.Int64Counter
	syncsFailed   metric.Int64Counter
	bytesServed   metric.Int64Counter
	bytesReceived metric.Int64Counter
	specStarted   metric.Int64Counter
	specUsed      metric.Int64Counter
	specDropped   metric.Int64Counter
}

func newMetrics(mp metric.MeterProvider, network, group catalog.ID) *metrics {
	if mp == nil {
		mp = noop.NewMeterProvider()
	}
	m := mp.Meter("github.com/mosaik-go/mosaik/groups")
	r := &metrics{attrs: metric.WithAttributes(
		attribute.String("network", network.Short()),
		attribute.String("group", group.Short()),
	)}
	// Instrument creation only fails on invalid names, which are constant.
	r.active, _ = m.Int64UpDownCounter("mosaik.groups.active", metric.WithDescription("groups joined on this node"))
	r.elections, _ = m.Int64Counter("mosaik.groups.raft.elections", metric.WithDescription("elections this node started"))
	r.leaderChanges, _ = m.Int64Counter("mosaik.groups.raft.leader.changes", metric.WithDescription("changes of the known leader to another peer"))
	r.committed, _ = m.Int64Gauge("mosaik.groups.raft.committed", metric.WithDescription("last applied committed index"))
	r.applyLag, _ = m.Int64Gauge("mosaik.groups.raft.apply_lag", metric.WithDescription("committed minus applied entries"))
	r.commitLatency, _ = m.Float64Histogram("mosaik.groups.raft.commit_latency", metric.WithUnit("s"),
		metric.WithDescription("time from proposing a command to applying it locally"))
	r.discarded, _ = m.Int64Counter("mosaik.groups.raft.discarded", metric.WithDescription("log entries discarded when a rival cluster won"))
	r.dropped, _ = m.Int64Counter("mosaik.groups.inbox.dropped", metric.WithDescription("inbound frames dropped on a full inbox"))
	r.panics, _ = m.Int64Counter("mosaik.groups.apply.panics", metric.WithDescription("state machine panics that ended a group"))
	r.syncsServed, _ = m.Int64Counter("mosaik.groups.snapshot.syncs.served",
		metric.WithDescription("snapshot transfers this node served chunks to (one per fetcher and snapshot)"))
	r.syncsReceived, _ = m.Int64Counter("mosaik.groups.snapshot.syncs.received",
		metric.WithDescription("snapshots this node fetched, checked and handed to raft"))
	r.syncsFailed, _ = m.Int64Counter("mosaik.groups.snapshot.syncs.failed",
		metric.WithDescription("snapshot transfers of this node that failed (raft sends a new snapshot)"))
	r.bytesServed, _ = m.Int64Counter("mosaik.groups.snapshot.bytes.served", metric.WithUnit("By"),
		metric.WithDescription("snapshot bytes this node served in chunks"))
	r.bytesReceived, _ = m.Int64Counter("mosaik.groups.snapshot.bytes.received", metric.WithUnit("By"),
		metric.WithDescription("snapshot bytes this node received in chunks, valid or not"))
	r.specStarted, _ = m.Int64Counter("mosaik.groups.snapshot.speculative.started",
		metric.WithDescription("snapshot transfers this node started on a peer's announcement, before a leader sent the snapshot"))
	r.specUsed, _ = m.Int64Counter("mosaik.groups.snapshot.speculative.used",
		metric.WithDescription("speculative transfers whose bytes were the snapshot a leader then sent"))
	r.specDropped, _ = m.Int64Counter("mosaik.groups.snapshot.speculative.dropped",
		metric.WithDescription("speculative transfers dropped: another snapshot was sent, this node caught up, or they failed or aged"))
	return r
}

func (m *metrics) add(c interface {
	Add(context.Context, int64, ...metric.AddOption)
}, n int64) {
	c.Add(context.Background(), n, m.attrs)
}
