package node_test

import (
	"context"
	"strings"
	"testing"
	"time"

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
