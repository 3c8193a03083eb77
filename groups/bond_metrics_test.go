package groups

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/internal/testutil"
)

// metricSum returns the int64 sum or gauge named name, over its points
// (those with every given attribute).
func metricSum(rm *metricdata.ResourceMetrics, name string, only ...attribute.KeyValue) (int64, bool) {
	has := func(set attribute.Set) bool {
		for _, kv := range only {
			if v, ok := set.Value(kv.Key); !ok || v != kv.Value {
				return false
			}
		}
		return true
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			var total int64
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					if has(p.Attributes) {
						total += p.Value
					}
				}
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					if has(p.Attributes) {
						total += p.Value
					}
				}
			}
			return total, true
		}
	}
	return 0, false
}

func TestBonds_Metrics(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer func() { _ = mp.Shutdown(context.Background()) }()
	a := newBondNode(t, withSvcOpts(WithMeterProvider(mp)))
	b, evil := newBondNode(t), newBondNode(t, withoutService())
	meshed(t, a, b, evil)
	s := testSpec("metrics", RoleWriter)
	ga, inA := a.attach(t, s)
	_, inB := b.attach(t, s)
	testutil.Eventually(t, 5*time.Second, func() bool { return len(inA.peers()) == 1 && len(inB.peers()) == 1 }, "no bond")
	for range 3 {
		ga.Send(b.h.ID(), firstCoreFrame, []byte("12345"))
	}
	testutil.Eventually(t, 3*time.Second, func() bool { return len(inB.received()) == 3 }, "frames not delivered")
	c := dialRaw(t, evil, a)
	c.write(helloFrame(catalog.IDFromString("nope"), s.ID))
	c.expectClose(CodeDifferentNetwork)
	collect := func() *metricdata.ResourceMetrics {
		var rm metricdata.ResourceMetrics
		if err := reader.Collect(context.Background(), &rm); err != nil {
			t.Fatal(err)
		}
		return &rm
	}
	testutil.Eventually(t, 2*time.Second, func() bool {
		// Only the DifferentNetwork one: simultaneous dials of a and b may
		// add AlreadyBonded refusals.
		v, _ := metricSum(collect(), "mosaik.groups.bonds.refusals", codeAttr(CodeDifferentNetwork), reasonAttr(CodeDifferentNetwork))
		return v == 1
	}, "refusal not counted")
	rm := collect()
	for name, least := range map[string]int64{
		"mosaik.groups.bonds.active":            1,
		"mosaik.groups.bonds.messages.sent":     4, // the Proof or pings, and the three frames
		"mosaik.groups.bonds.bytes.sent":        3 * 7,
		"mosaik.groups.bonds.messages.received": 1,
	} {
		if v, ok := metricSum(rm, name); !ok || v < least {
			t.Errorf("%s = %d (present %v), want >= %d", name, v, ok, least)
		}
	}
}
