package collections

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/mosaik-go/mosaik/groups"
)

// registerSize reports the size of c's collection as the gauge
// mosaik.collections.size, labelled with the collection's name, its kind
// and its group's short id, through the groups service's meter provider.
// The snapshot transfer metrics are the groups' (mosaik.groups.snapshot.*,
// labelled with the same group id). The registration ends when the
// handle closes.
func registerSize[S any](s *groups.Service, c *core[S]) (metric.Registration, error) {
	m := s.MeterProvider().Meter("github.com/mosaik-go/mosaik/collections")
	g, err := m.Int64ObservableGauge("mosaik.collections.size",
		metric.WithDescription("items in the collection's local state"))
	if err != nil {
		return nil, err
	}
	attrs := metric.WithAttributes(
		attribute.String("collection", c.name),
		attribute.String("kind", c.kind),
		attribute.String("group", c.g.ID().Short()),
	)
	return m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		o.ObserveInt64(g, c.m.size.Load(), attrs)
		return nil
	}, g)
}
