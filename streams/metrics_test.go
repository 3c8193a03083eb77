package streams_test

import (
	"context"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/node"
	"github.com/mosaik-go/mosaik/streams"
)

// sumOf returns the value of the int64 sum or gauge named name, summed
// over its data points.
func sumOf(rm *metricdata.ResourceMetrics, name string) (int64, bool) {
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			var total int64
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					total += p.Value
				}
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					total += p.Value
				}
			}
			return total, true
		}
	}
	return 0, false
}

func TestMetrics_StreamCountersFollowTraffic(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())
	nodes := connected(t, 2, node.WithoutDHT(), node.WithMeterProvider(mp))
	p, err := streams.NewProducer[[]byte](nodes[0].Streams(), "metered", streams.WithCodec[[]byte](streams.Bytes{}))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := streams.NewConsumer[[]byte](nodes[1].Streams(), "metered", streams.WithCodec[[]byte](streams.Bytes{}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Scale(10*time.Second))
	defer cancel()
	for range 3 {
		if err := p.Send(ctx, []byte("12345")); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Recv(ctx); err != nil {
			t.Fatal(err)
		}
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]int64{
		"mosaik.streams.producer.items.sent":     3,
		"mosaik.streams.producer.bytes.sent":     15,
		"mosaik.streams.consumer.items.received": 3,
		"mosaik.streams.consumer.bytes.received": 15,
		"mosaik.streams.producer.consumers":      1,
		"mosaik.streams.consumer.producers":      1,
		"mosaik.streams.connections.accepted":    1,
	} {
		got, ok := sumOf(&rm, name)
		if !ok || got != want {
			t.Errorf("%s = %d (present %v), want %d", name, got, ok, want)
		}
	}
	if _, ok := sumOf(&rm, "mosaik.discovery.catalog.size"); !ok {
		t.Error("discovery metrics missing from the same provider")
	}
	for _, name := range []string{"mosaik.streams.subscribe.duration", "mosaik.streams.datum.latency"} {
		if n := histCount(&rm, name); n == 0 {
			t.Errorf("histogram %s has no samples", name)
		}
	}
}

// codeSum returns the int64 sum named name over its data points with the
// attribute code.
func codeSum(rm *metricdata.ResourceMetrics, name string, code streams.Code) int64 {
	var total int64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			d, ok := m.Data.(metricdata.Sum[int64])
			if !ok || m.Name != name {
				continue
			}
			for _, p := range d.DataPoints {
				if v, ok := p.Attributes.Value("code"); ok && v.AsInt64() == int64(code) {
					total += p.Value
				}
			}
		}
	}
	return total
}

func histCount(rm *metricdata.ResourceMetrics, name string) uint64 {
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if h, ok := m.Data.(metricdata.Histogram[float64]); ok && m.Name == name {
				var n uint64
				for _, p := range h.DataPoints {
					n += p.Count
				}
				return n
			}
		}
	}
	return 0
}

func TestTracing_SubscribeAndSyncSpans(t *testing.T) {
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	defer tp.Shutdown(context.Background())
	nodes := connected(t, 2, node.WithoutDHT(), node.WithTracerProvider(tp))
	p, err := streams.NewProducer[int](nodes[0].Streams(), "traced")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := streams.NewConsumer[int](nodes[1].Streams(), "traced")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Scale(10*time.Second))
	defer cancel()
	if err := p.Send(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Recv(ctx); err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, s := range sr.Ended() {
		names[s.Name()] = true
	}
	for _, want := range []string{"mosaik.streams.subscribe", "mosaik.discovery.sync", "mosaik.discovery.sync.serve"} {
		if !names[want] {
			t.Errorf("no %q span among %v", want, names)
		}
	}
}
