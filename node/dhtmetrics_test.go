package node_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/node"
)

// kadNames collects the names of the kad-dht metrics r holds.
func kadNames(t *testing.T, r *sdkmetric.ManualReader) []string {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if strings.HasPrefix(sm.Scope.Name, "github.com/libp2p/go-libp2p-kad-dht") {
				names = append(names, m.Name)
			}
		}
	}
	return names
}

// A node given a meter provider reports kad-dht's instruments there,
// prefixed, although nobody set OpenTelemetry's global provider.
func TestMeterProvider_ForwardsDHTMetrics(t *testing.T) {
	r := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(r))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	a := startNode(t, "dht-metrics", node.WithMeterProvider(mp))
	startNode(t, "dht-metrics", bootstrapOf(a))
	var names []string
	testutil.Eventually(t, 10*time.Second, func() bool { names = kadNames(t, r); return len(names) > 0 },
		"no kad-dht metric reached the node's meter provider")
	for _, n := range names {
		if !strings.HasPrefix(n, "libp2p.kad_dht.") {
			t.Errorf("kad-dht metric %q lacks the libp2p.kad_dht. prefix", n)
		}
	}
}

// Two nodes given one meter provider see each kad-dht measurement once,
// not once per node (found by the node review); the provider stays
// attached until the last of them closes.
func TestMeterProvider_SharedProviderCountsOnce(t *testing.T) {
	r := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(r))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	a := startNode(t, "dht-metrics-shared-a", node.WithMeterProvider(mp))
	startNode(t, "dht-metrics-shared-b", node.WithMeterProvider(mp))
	// The path kad-dht's own instruments take: its scope on the global
	// provider, which the first node replaced by its forwarder.
	c, err := otel.GetMeterProvider().Meter("github.com/libp2p/go-libp2p-kad-dht").Int64Counter("test.shared")
	if err != nil {
		t.Fatal(err)
	}
	total := func() int64 {
		var rm metricdata.ResourceMetrics
		if err := r.Collect(context.Background(), &rm); err != nil {
			t.Fatal(err)
		}
		var n int64
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				if m.Name == "libp2p.kad_dht.test.shared" {
					for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
						n += dp.Value
					}
				}
			}
		}
		return n
	}
	c.Add(context.Background(), 1)
	if got := total(); got != 1 {
		t.Fatalf("one Add(1) recorded %d on the shared provider, want 1", got)
	}
	_ = a.Close()
	c.Add(context.Background(), 1)
	if got := total(); got != 2 {
		t.Fatalf("after one of the two nodes closed, the provider holds %d, want 2", got)
	}
}
