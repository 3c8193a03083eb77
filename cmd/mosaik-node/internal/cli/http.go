package cli

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"os"

	"github.com/mosaik-go/mosaik/cmd/mosaik-node/internal/status"
	"github.com/mosaik-go/mosaik/node"
)

// httpServer is the optional --http status server and its metrics.
type httpServer struct {
	addr    string
	token   string
	log     *slog.Logger
	metrics *status.Metrics
	srv     *status.Server
}

// startHTTP prepares metrics before the node is built (so the node's meter
// provider and libp2p's Prometheus registerer point at them); attach then
// serves once the node exists.
func startHTTP(_ context.Context, addr, token string, opts *[]node.Option, log *slog.Logger) (*httpServer, error) {
	h := &httpServer{addr: addr, token: token, log: log}
	if addr == "" {
		if token != "" {
			return nil, usagef("--status-token needs --http")
		}
		return h, nil
	}
	m, err := status.NewMetrics()
	if err != nil {
		return nil, err
	}
	h.metrics = m
	// The node forwards kad-dht's instruments (recorded on OpenTelemetry's
	// global provider) to m by itself: setting the global provider here
	// would keep it from doing so.
	*opts = append(*opts, node.WithMeterProvider(m.MeterProvider()), node.WithPrometheusRegisterer(m.Registerer()))
	return h, nil
}

func (h *httpServer) attach(ctx context.Context, n *node.Node) error {
	if h.addr == "" {
		return nil
	}
	h.srv = status.New(n, h.metrics, status.WithToken(h.token))
	bound, err := h.srv.Start(ctx, h.addr)
	if err != nil {
		return usagef("--http %s: %v", h.addr, err)
	}
	h.log.Info("status page", "url", "http://"+bound.String()+"/", "token", h.token != "")
	if ta, ok := bound.(*net.TCPAddr); ok && !ta.IP.IsLoopback() && h.token == "" {
		h.log.Warn("the status server is reachable from other hosts without a token; set MOSAIK_STATUS_TOKEN or --status-token-file", "addr", bound.String())
	}
	return nil
}

// maxTokenFile caps --status-token-file; a token is a line.
const maxTokenFile = 4 << 10

// token returns the status server's bearer token from --status-token
// (also MOSAIK_STATUS_TOKEN) or --status-token-file; "" means none.
func (f *nodeFlags) token() (string, error) {
	switch {
	case f.statusToken != "" && f.statusTokenFile != "":
		return "", usagef("--status-token and --status-token-file: give one")
	case f.statusTokenFile == "":
		return f.statusToken, nil
	}
	fh, err := os.Open(f.statusTokenFile)
	if err != nil {
		return "", usagef("--status-token-file: %v", err)
	}
	defer fh.Close()
	b, err := io.ReadAll(io.LimitReader(fh, maxTokenFile+1))
	if err != nil {
		return "", usagef("--status-token-file: %v", err)
	}
	if len(b) > maxTokenFile {
		return "", usagef("--status-token-file %s: larger than %d bytes", f.statusTokenFile, maxTokenFile)
	}
	tok := string(bytes.TrimSpace(b))
	if tok == "" {
		return "", usagef("--status-token-file %s: empty", f.statusTokenFile)
	}
	return tok, nil
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
