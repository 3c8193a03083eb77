package streams

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// registerMetrics exports the service's counters as OpenTelemetry
// instruments named after mosaik's (mosaik.streams.*), observed from the
// live handles. Labels: network (short ID), stream (the name the handle
// was created with) and stream_id (short ID, for names that collide or
// were not given); refusals and disconnects also code and reason.
func (s *Service) registerMetrics(mp metric.MeterProvider) (metric.Registration, error) {
	m := mp.Meter("github.com/mosaik-go/mosaik/streams")
	nw := attribute.String("network", s.d.Network().Short())
	var err error
	if s.subscribeDur, err = m.Float64Histogram("mosaik.streams.subscribe.duration", metric.WithUnit("s"),
		metric.WithDescription("consumer side: from opening the stream to the producer's answer"),
		metric.WithExplicitBucketBoundaries(.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5)); err != nil {
		return nil, err
	}
	if s.latency, err = m.Float64Histogram("mosaik.streams.datum.latency", metric.WithUnit("s"),
		metric.WithDescription("sampled: from the producer writing a datum to the consumer reading it (includes clock offset between hosts)"),
		metric.WithExplicitBucketBoundaries(.00001, .000025, .00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1)); err != nil {
		return nil, err
	}
	type inst struct {
		name, desc string
	}
	counters := map[string]metric.Int64ObservableCounter{}
	gauges := map[string]metric.Int64ObservableGauge{}
	var all []metric.Observable
	for _, c := range []inst{
		{"mosaik.streams.connections.accepted", "subscriptions admitted"},
		{"mosaik.streams.connections.rejected", "subscriptions refused, by code and reason"},
		{"mosaik.streams.connections.handshake_timeouts", "inbound streams reset for sending no complete Subscribe within the handshake timeout (also counted as rejected)"},
		{"mosaik.streams.producer.items.sent", "datums written to consumers"},
		{"mosaik.streams.producer.bytes.sent", "payload bytes written to consumers"},
		{"mosaik.streams.producer.items.dropped", "datums a full consumer queue could not take"},
		{"mosaik.streams.consumer.items.received", "datums taken by the application"},
		{"mosaik.streams.consumer.bytes.received", "payload bytes taken by the application"},
		{"mosaik.streams.consumer.gaps", "datums of producers this consumer missed (dropped for it, sent while it was away, or lost in a producer restart)"},
		{"mosaik.streams.producer.disconnects", "subscriptions ended at the producer, by close code (TooSlow: consumers cut for lagging)"},
		{"mosaik.streams.consumer.disconnects", "links to producers ended at the consumer, by close code"},
		{"mosaik.streams.producer.replay.items", "datums resent from the replay window to resuming consumers"},
		{"mosaik.streams.producer.replay.expired", "datums resuming consumers asked for that had left the replay window"},
	} {
		x, err := m.Int64ObservableCounter(c.name, metric.WithDescription(c.desc))
		if err != nil {
			return nil, err
		}
		counters[c.name] = x
		all = append(all, x)
	}
	for _, g := range []inst{
		{"mosaik.streams.producer.consumers", "connected consumers per produced stream"},
		{"mosaik.streams.consumer.producers", "connected producers per consumed stream"},
		{"mosaik.streams.producer.replay.window.items", "datums held in the producer's replay window"},
		{"mosaik.streams.producer.replay.window.bytes", "bytes held in the producer's replay window (payloads plus bookkeeping)"},
	} {
		x, err := m.Int64ObservableGauge(g.name, metric.WithDescription(g.desc))
		if err != nil {
			return nil, err
		}
		gauges[g.name] = x
		all = append(all, x)
	}
	return m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		st := s.Stats()
		o.ObserveInt64(counters["mosaik.streams.connections.accepted"], int64(st.Accepted), metric.WithAttributes(nw))
		for code, n := range st.RejectedBy {
			o.ObserveInt64(counters["mosaik.streams.connections.rejected"], int64(n), metric.WithAttributes(nw,
				attribute.Int("code", int(code)), attribute.String("reason", code.String())))
		}
		o.ObserveInt64(counters["mosaik.streams.connections.handshake_timeouts"], int64(st.HandshakeTimeouts), metric.WithAttributes(nw))
		for _, h := range s.Handles() {
			stream := streamAttrs(h.Name, h.Stream)
			attrs := metric.WithAttributes(nw, stream[0], stream[1])
			connected := 0
			for _, sub := range h.Subscriptions {
				if sub.State == Connected {
					connected++
				}
			}
			name := "mosaik.streams.consumer.disconnects"
			if h.Role == RoleProducer {
				name = "mosaik.streams.producer.disconnects"
			}
			for code, n := range h.Ends {
				o.ObserveInt64(counters[name], int64(n), metric.WithAttributes(nw, stream[0], stream[1],
					attribute.Int("code", int(code)), attribute.String("reason", code.String())))
			}
			if h.Role == RoleProducer {
				o.ObserveInt64(counters["mosaik.streams.producer.items.sent"], int64(h.Totals.Datums), attrs)
				o.ObserveInt64(counters["mosaik.streams.producer.bytes.sent"], int64(h.Totals.Bytes), attrs)
				o.ObserveInt64(counters["mosaik.streams.producer.items.dropped"], int64(h.Totals.Dropped), attrs)
				o.ObserveInt64(gauges["mosaik.streams.producer.consumers"], int64(connected), attrs)
				if r := h.Replay; r != nil {
					o.ObserveInt64(counters["mosaik.streams.producer.replay.items"], int64(r.Replayed), attrs)
					o.ObserveInt64(counters["mosaik.streams.producer.replay.expired"], int64(r.Expired), attrs)
					o.ObserveInt64(gauges["mosaik.streams.producer.replay.window.items"], int64(r.Datums), attrs)
					o.ObserveInt64(gauges["mosaik.streams.producer.replay.window.bytes"], r.Bytes, attrs)
				}
			} else {
				o.ObserveInt64(counters["mosaik.streams.consumer.items.received"], int64(h.Totals.Datums), attrs)
				o.ObserveInt64(counters["mosaik.streams.consumer.bytes.received"], int64(h.Totals.Bytes), attrs)
				o.ObserveInt64(counters["mosaik.streams.consumer.gaps"], int64(h.Totals.Gaps), attrs)
				o.ObserveInt64(gauges["mosaik.streams.consumer.producers"], int64(connected), attrs)
			}
		}
		return nil
	}, all...)
}

// streamAttrs labels a stream by its name and its short ID.
func streamAttrs(name string, id StreamID) [2]attribute.KeyValue {
	return [2]attribute.KeyValue{attribute.String("stream", name), attribute.String("stream_id", id.Short())}
}
