package collections_test

import (
	"context"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/mosaik-go/mosaik/collections"
	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/node"
)

// sizeOf returns the gauge mosaik.collections.size of the collection
// called name, and whether it is reported.
func sizeOf(t testing.TB, r *sdkmetric.ManualReader, name, kind string) (int64, bool) {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			g, ok := m.Data.(metricdata.Gauge[int64])
			if m.Name != "mosaik.collections.size" || !ok {
				continue
			}
			for _, p := range g.DataPoints {
				c, _ := p.Attributes.Value("collection")
				k, _ := p.Attributes.Value("kind")
				if c.AsString() == name && k.AsString() == kind {
					return p.Value, true
				}
			}
		}
	}
	return 0, false
}

// The size gauge follows each collection on each node, through the
// node's meter provider, and is gone once the handle closes.
func TestMetrics_CollectionSize(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())
	n := startNode(t, node.WithMeterProvider(mp))
	a, b := freshName(t), freshName(t)
	ma, err := collections.NewMap[string, int](n, a)
	if err != nil {
		t.Fatal(err)
	}
	defer ma.Close()
	mb, err := collections.NewMap[string, int](n, b)
	if err != nil {
		t.Fatal(err)
	}
	defer mb.Close()
	if err := ma.When().Online(tctx(t, 20*time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := ma.Extend(tctx(t, 10*time.Second), []collections.KV[string, int]{{"x", 1}, {"y", 2}, {"z", 3}}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, func() bool {
		sa, oka := sizeOf(t, reader, a, "map")
		sb, okb := sizeOf(t, reader, b, "map")
		return oka && okb && sa == 3 && sb == 0
	}, "size gauges do not follow the maps")
	_ = ma.Close()
	if _, ok := sizeOf(t, reader, a, "map"); ok {
		t.Fatal("a closed map still reports its size")
	}
}
