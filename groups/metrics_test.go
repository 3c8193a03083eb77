package groups

import (
	"context"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/mosaik-go/mosaik/internal/testutil"
)

func metricValue(t *testing.T, r *sdkmetric.ManualReader, name string) (float64, bool) {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			var total float64
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					total += float64(p.Value)
				}
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					total += float64(p.Value)
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					total += float64(p.Count)
				}
			}
			return total, true
		}
	}
	return 0, false
}

// Metrics follow the group: active count, one election and one leader
// change for a lone node (not one per heartbeat), committed index, commit
// latency samples, discards after a lost merge.
func TestMetrics_FollowTheGroup(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())
	n := newMemNet()
	s0 := n.service(t, "0", false)
	s0.meter = mp
	g0 := joinCounter(t, s0)
	if err := g0.When().IsLeader(tctx(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	g1 := joinCounter(t, n.service(t, "1", false))
	if err := g1.When().Online(tctx(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	r, err := g0.ExecuteMany(tctx(t, 5*time.Second), []int64{1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{
		"mosaik.groups.active":              1,
		"mosaik.groups.raft.elections":      1,
		"mosaik.groups.raft.leader.changes": 1,
		"mosaik.groups.raft.committed":      float64(r.Last),
		"mosaik.groups.raft.commit_latency": 1,
	}
	testutil.Eventually(t, 5*time.Second, func() bool {
		for name, v := range want {
			if got, ok := metricValue(t, reader, name); !ok || got != v {
				return false
			}
		}
		return true
	}, "metrics do not follow the group")
	_ = g0.Close()
	testutil.Eventually(t, 5*time.Second, func() bool {
		v, _ := metricValue(t, reader, "mosaik.groups.active")
		return v == 0
	}, "groups.active not decremented on close")
}
