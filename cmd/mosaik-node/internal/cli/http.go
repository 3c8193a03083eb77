package cli

import (
	"context"
	"log/slog"

	"go.opentelemetry.io/otel"

	"github.com/mosaik-go/mosaik/cmd/mosaik-node/internal/status"
	"github.com/mosaik-go/mosaik/node"
)

// httpServer is the optional --http status server and its metrics.
type httpServer struct {
	addr    string
	log     *slog.Logger
	metrics *status.Metrics
	srv     *status.Server
}

// startHTTP prepares metrics before the node is built (so the node's meter
// provider and libp2p's Prometheus registerer point at them); attach then
// serves once the node exists.
func startHTTP(_ context.Context, addr string, opts *[]node.Option, log *slog.Logger) (*httpServer, error) {
	h := &httpServer{addr: addr, log: log}
	if addr == "" {
		return h, nil
	}
	m, err := status.NewMetrics()
	if err != nil {
		return nil, err
	}
	h.metrics = m
	// kad-dht records through OpenTelemetry's global meter provider.
	otel.SetMeterProvider(m.MeterProvider())
	*opts = append(*opts, node.WithMeterProvider(m.MeterProvider()), node.WithPrometheusRegisterer(m.Registerer()))
	return h, nil
}

func (h *httpServer) attach(ctx context.Context, n *node.Node) error {
	if h.addr == "" {
		return nil
	}
	h.srv = status.New(n, h.metrics)
	bound, err := h.srv.Start(ctx, h.addr)
	if err != nil {
		return usagef("--http %s: %v", h.addr, err)
	}
	h.log.Info("status page", "url", "http://"+bound.String()+"/")
	return nil
}

func (h *httpServer) close() {
	if h.srv != nil {
		h.srv.Close() // waits for the shutdown
	}
	if h.metrics != nil {
		_ = h.metrics.Shutdown(context.Background())
	}
}

func catalogDoc(n *node.Node) status.CatalogDoc { return status.CatalogJSON(n) }
