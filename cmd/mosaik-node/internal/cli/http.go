package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"

	"github.com/mosaik-go/mosaik/cmd/mosaik-node/internal/status"
	"github.com/mosaik-go/mosaik/node"
)

// httpServer is the optional --http status server and its metrics.
type httpServer struct {
	addr    string
	token   string
	log     *slog.Logger
	metrics *status.Metrics
	ln      net.Listener // bound by startHTTP, served by attach
	srv     *status.Server
}

// startHTTP binds the --http address and prepares metrics before the node
// is built: a busy port fails the command before the node announces
// itself to the network (and departs again), and the node's meter
// provider and libp2p's Prometheus registerer point at the metrics.
// attach then serves once the node exists.
func startHTTP(ctx context.Context, addr, token string, opts *[]node.Option, log *slog.Logger) (*httpServer, error) {
	h := &httpServer{addr: addr, token: token, log: log}
	if addr == "" {
		if token != "" {
			return nil, usagef("--status-token needs --http")
		}
		return h, nil
	}
	ln, err := status.Listen(ctx, addr)
	if err != nil {
		return nil, usagef("--http %s: %v", addr, err)
	}
	m, err := status.NewMetrics()
	if err != nil {
		_ = ln.Close()
		return nil, err
	}
	h.ln, h.metrics = ln, m
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
	bound, err := h.srv.StartOn(ctx, h.ln)
	if err != nil {
		return fmt.Errorf("--http %s: %w", h.addr, err)
	}
	h.ln = nil // the server closes it
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
		if strings.ContainsFunc(f.statusToken, isControl) || strings.TrimSpace(f.statusToken) != f.statusToken {
			// HTTP trims the header value's surrounding spaces: every
			// request would answer 401.
			return "", usagef("--status-token: holds a control character or surrounding spaces: no HTTP client could send it as it is")
		}
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
	if strings.ContainsFunc(tok, isControl) {
		// Every request would answer 401: no HTTP client can send it.
		return "", usagef("--status-token-file %s: the token holds a line break or another control character (the file must hold the token alone)", f.statusTokenFile)
	}
	return tok, nil
}

// isControl reports an ASCII control character, which an HTTP header
// value cannot carry.
func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

func (h *httpServer) close() {
	if h.ln != nil {
		_ = h.ln.Close() // bound, never served
	}
	if h.srv != nil {
		h.srv.Close() // waits for the shutdown
	}
	if h.metrics != nil {
		_ = h.metrics.Shutdown(context.Background())
	}
}

func catalogDoc(n *node.Node) status.CatalogDoc { return status.CatalogJSON(n) }
