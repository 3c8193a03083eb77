package status

import (
	"context"
	"fmt"
	"net/http"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// Metrics is one Prometheus registry for everything a node measures:
// mosaik's OpenTelemetry instruments, exported through an OpenTelemetry
// MeterProvider whose reader is the OTel Prometheus exporter, go-libp2p's
// own Prometheus collectors, and the Go runtime and process collectors.
//
// Wire it into a node with node.WithMeterProvider(m.MeterProvider()) and
// node.WithPrometheusRegisterer(m.Registerer()), and serve m.Handler().
// The node forwards kad-dht's instruments (libp2p_kad_dht_*) to its meter
// provider by itself; no global OTel provider is needed.
//
// Series carry no otel_scope_* labels, and label values that are source
// file paths (go-libp2p names event bus subscribers after the caller's
// file and line) are cut to their last two elements, so that no build
// directory shows in a scrape.
//
// OTel names are translated the Prometheus way: dots become underscores
// and counters get a _total suffix (mosaik.streams.producer.items.sent is
// scraped as mosaik_streams_producer_items_sent_total).
//
// A Metrics is safe for concurrent use. It starts no goroutines; Shutdown
// stops the MeterProvider.
type Metrics struct {
	reg     *prometheus.Registry
	mp      *sdkmetric.MeterProvider
	handler http.Handler

	once sync.Once
	err  error
}

// NewMetrics builds a fresh registry (not prometheus.DefaultRegisterer)
// and a MeterProvider exporting onto it.
func NewMetrics() (*Metrics, error) {
	reg := prometheus.NewRegistry()
	if err := reg.Register(collectors.NewGoCollector()); err != nil {
		return nil, fmt.Errorf("status: go collector: %w", err)
	}
	if err := reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return nil, fmt.Errorf("status: process collector: %w", err)
	}
	// Scope labels (otel_scope_name, ...) would repeat a Go import path on
	// every series; the metric names already say which package speaks.
	exp, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo())
	if err != nil {
		return nil, fmt.Errorf("status: OTel Prometheus exporter: %w", err)
	}
	return &Metrics{
		reg:     reg,
		mp:      sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp)),
		handler: promhttp.HandlerFor(trimPaths(reg), promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}),
	}, nil
}

// MeterProvider is the OpenTelemetry provider whose instruments appear on
// Handler.
func (m *Metrics) MeterProvider() metric.MeterProvider { return m.mp }

// Registerer is the registry, for go-libp2p's collectors
// (node.WithPrometheusRegisterer) or any other Prometheus collector.
func (m *Metrics) Registerer() prometheus.Registerer { return m.reg }

// Gatherer is the registry, for reading the metrics in-process.
func (m *Metrics) Gatherer() prometheus.Gatherer { return m.reg }

// Handler serves the registry in the Prometheus text (or OpenMetrics)
// exposition format. A failing collector does not fail the scrape.
func (m *Metrics) Handler() http.Handler { return m.handler }

// Shutdown stops the MeterProvider: OTel instruments stop reporting, the
// libp2p and runtime collectors keep going. It is idempotent; later calls
// return the first call's error.
func (m *Metrics) Shutdown(ctx context.Context) error {
	m.once.Do(func() { m.err = m.mp.Shutdown(ctx) })
	return m.err
}
