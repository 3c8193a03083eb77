package collections_test

import (
	"context"
	"errors"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/mosaik-go/mosaik/collections"
	"github.com/mosaik-go/mosaik/node"
)

// TestMap_SecondHandleSharesTheReplica: opening a map already open on the
// node returns another handle to the same replica. Each handle sees the
// other's writes and its own, its compare-and-swap outcomes and versions
// are real, the size gauge reports the map once, and a handle closed while
// the other stays open ends its own waits with ErrTerminated (the other
// keeps working). Before the fix the second handle had a replica of its own
// that nothing ever applied to: it read nothing, waited forever and called
// every compare-and-swap ErrOutcomeUnknown.
func TestMap_SecondHandleSharesTheReplica(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())
	n := startNode(t, node.WithMeterProvider(mp))
	name := freshName(t)
	a, err := collections.NewMap[string, int](n, name)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := collections.NewMap[string, int](n, name)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.When().Online(tctx(t, 20*time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Insert(tctx(t, 10*time.Second), "x", 1); err != nil {
		t.Fatal(err)
	}
	vb, err := b.Insert(tctx(t, 10*time.Second), "y", 2)
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range []*collections.Map[string, int]{a, b} {
		if err := m.When().Reaches(tctx(t, 5*time.Second), vb); err != nil {
			t.Fatalf("handle %d: Reaches(%d): %v", i, vb, err)
		}
		x, okx := m.Get("x")
		y, oky := m.Get("y")
		if !okx || !oky || x != 1 || y != 2 || m.Len() != 2 || m.Version() < vb {
			t.Fatalf("handle %d holds x=%d,%v y=%d,%v len %d version %d, want x=1 y=2 len 2 version ≥ %d",
				i, x, okx, y, oky, m.Len(), m.Version(), vb)
		}
	}
	one, two := 2, 20
	ok, _, err := b.CompareAndSwap(tctx(t, 10*time.Second), "y", &one, &two)
	if err != nil || !ok {
		t.Fatalf("CAS y 2->20 on the second handle: %v %v", ok, err)
	}
	if v, _ := a.Get("y"); v != 20 {
		t.Fatalf("the first handle reads y=%d after the second's CAS, want 20", v)
	}
	if got := sizePoints(t, reader, name); got != 1 {
		t.Errorf("the size gauge reports the map %d times, want once", got)
	}

	// The second handle closes; the first keeps the replica.
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Insert(tctx(t, 5*time.Second), "z", 3); !errors.Is(err, collections.ErrTerminated) || collections.MayApply(err) {
		t.Errorf("Insert on the closed handle: %v (may apply %v), want ErrTerminated, not applied", err, collections.MayApply(err))
	}
	for what, wait := range map[string]func(context.Context) error{
		"Reaches": func(ctx context.Context) error { return b.When().Reaches(ctx, 1<<40) },
		"Online":  func(ctx context.Context) error { return b.When().Online(ctx) },
		"Updated": func(ctx context.Context) error { _, err := b.When().Updated(ctx); return err },
	} {
		if err := wait(tctx(t, 5*time.Second)); !errors.Is(err, collections.ErrTerminated) {
			t.Errorf("%s on the closed handle: %v, want ErrTerminated", what, err)
		}
	}
	if _, err := a.Insert(tctx(t, 10*time.Second), "z", 3); err != nil {
		t.Fatalf("the first handle after the second closed: %v", err)
	}
	if a.Len() != 3 {
		t.Fatalf("the first handle holds %d items, want 3", a.Len())
	}
	if got := sizePoints(t, reader, name); got != 1 {
		t.Errorf("after one handle closed the size gauge reports the map %d times, want once", got)
	}
	_ = a.Close()
	if got := sizePoints(t, reader, name); got != 0 {
		t.Errorf("after both handles closed the size gauge reports the map %d times, want none", got)
	}
}

// sizePoints counts the size gauge's data points for the collection name.
func sizePoints(t testing.TB, r *sdkmetric.ManualReader, name string) int {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if g, ok := m.Data.(metricdata.Gauge[int64]); ok && m.Name == "mosaik.collections.size" {
				for _, p := range g.DataPoints {
					if c, _ := p.Attributes.Value("collection"); c.AsString() == name {
						n++
					}
				}
			}
		}
	}
	return n
}
