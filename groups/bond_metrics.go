package groups

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// bondMetrics are the bond layer's instruments (labels: network, group,
// and code and reason, the code's name, for refusals and ends).
type bondMetrics struct {
	reg                      metric.Registration
	refusals, ends, drops    metric.Int64Counter
	framesSent, framesRecv   metric.Int64Counter
	bytesSent, bytesReceived metric.Int64Counter
	network                  attribute.KeyValue
}

func newBondMetrics(mp metric.MeterProvider, n *bondNet) (*bondMetrics, error) {
	m := mp.Meter("github.com/mosaik-go/mosaik/groups")
	bm := &bondMetrics{network: attribute.String("network", n.network.Short())}
	var err error
	counter := func(name, desc string) metric.Int64Counter {
		if err != nil {
			return nil
		}
		var c metric.Int64Counter
		c, err = m.Int64Counter(name, metric.WithDescription(desc))
		return c
	}
	bm.refusals = counter("mosaik.groups.bonds.refusals", "bond handshakes that failed, on either side, by code")
	bm.ends = counter("mosaik.groups.bonds.ends", "bonds that ended after the handshake, by code")
	bm.drops = counter("mosaik.groups.bonds.drops", "frames dropped on a full bond send queue")
	bm.framesSent = counter("mosaik.groups.bonds.messages.sent", "frames written on bonds")
	bm.framesRecv = counter("mosaik.groups.bonds.messages.received", "frames read on bonds")
	bm.bytesSent = counter("mosaik.groups.bonds.bytes.sent", "bytes written on bonds, framing included")
	bm.bytesReceived = counter("mosaik.groups.bonds.bytes.received", "bytes read on bonds, framing included")
	if err != nil {
		return nil, err
	}
	active, err := m.Int64ObservableGauge("mosaik.groups.bonds.active", metric.WithDescription("bonds up, per group"))
	if err != nil {
		return nil, err
	}
	bm.reg, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		for id, k := range n.activeBonds() {
			o.ObserveInt64(active, int64(k), metric.WithAttributes(bm.network, attribute.String("group", id.Short())))
		}
		return nil
	}, active)
	if err != nil {
		return nil, err
	}
	return bm, nil
}

// attrs returns the measurement attributes of g's counters. Without extra
// attributes it returns g's cached set: building an attribute set per
// frame (sorting and hashing it) cost about a tenth of a bond's CPU.
func (m *bondMetrics) attrs(g *groupNet, extra ...attribute.KeyValue) metric.MeasurementOption {
	if len(extra) == 0 {
		g.attrsOnce.Do(func() {
			g.attrSet = metric.WithAttributeSet(attribute.NewSet(m.network, g.groupAttr))
		})
		return g.attrSet
	}
	return metric.WithAttributes(append([]attribute.KeyValue{m.network, g.groupAttr}, extra...)...)
}

func codeAttr(c Code) attribute.KeyValue { return attribute.Int("code", int(c)) }

// reasonAttr names the code, so that a dashboard need not know the table.
func reasonAttr(c Code) attribute.KeyValue { return attribute.String("reason", c.String()) }
