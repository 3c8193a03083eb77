package collections

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/mosaik-go/mosaik/groups"
)

// The size gauge, mosaik.collections.size: the items of a collection's
// local state, labelled with the collection's name, its kind and its
// group's short id, through the groups service's meter provider; one per
// collection open on the node, however many handles share it. The
// snapshot transfer metrics are the groups' (mosaik.groups.snapshot.*,
// labelled with the same group id).

// holdGauge registers the machine's size gauge for the first handle of
// the collection on the node (c, whose name, kind and group label it) and
// counts the others.
func (m *machine[S]) holdGauge(s *groups.Service, c *core[S]) error {
	m.gaugeMu.Lock()
	defer m.gaugeMu.Unlock()
	if m.gaugeRefs == 0 {
		mt := s.MeterProvider().Meter("github.com/mosaik-go/mosaik/collections")
		g, err := mt.Int64ObservableGauge("mosaik.collections.size",
			metric.WithDescription("items in the collection's local state"))
		if err != nil {
			return err
		}
		attrs := metric.WithAttributes(
			attribute.String("collection", c.name),
			attribute.String("kind", c.kind),
			attribute.String("group", c.g.ID().Short()),
		)
		if m.gaugeReg, err = mt.RegisterCallback(func(_ context.Context, o metric.Observer) error {
			o.ObserveInt64(g, m.size.Load(), attrs)
			return nil
		}, g); err != nil {
			return err
		}
	}
	m.gaugeRefs++
	return nil
}

// releaseGauge drops a handle's hold on the size gauge; the last one
// unregisters it.
func (m *machine[S]) releaseGauge() {
	m.gaugeMu.Lock()
	defer m.gaugeMu.Unlock()
	if m.gaugeRefs--; m.gaugeRefs == 0 {
		_ = m.gaugeReg.Unregister()
		m.gaugeReg = nil
	}
}
