package status

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/mosaik-go/mosaik"
	"github.com/mosaik-go/mosaik/node"
)

// Errors of Start and Serve.
var (
	ErrStarted = errors.New("status: server already started")
	ErrClosed  = fmt.Errorf("status: server %w", mosaik.ErrClosed)
)

// shutdownTimeout bounds a graceful shutdown: requests still running after
// it are cut off.
const shutdownTimeout = 5 * time.Second

// maxHeaderBytes caps a request's headers: the endpoints take no input
// beyond a path and a bearer token.
const maxHeaderBytes = 16 << 10

// Timeouts bound how long a client may hold a connection of the Server's
// own listener, so that slow or idle clients cannot pile up. Zero fields
// mean no limit, as in net/http.
type Timeouts struct {
	// ReadHeader bounds reading a request's headers (slowloris).
	ReadHeader time.Duration
	// Read bounds reading a whole request; requests have no body.
	Read time.Duration
	// Write bounds writing a response, from the end of the request's
	// headers; the largest is a /metrics scrape.
	Write time.Duration
	// Idle bounds a kept-alive connection's wait for its next request.
	Idle time.Duration
}

// DefaultTimeouts returns the timeouts Start uses unless WithTimeouts says
// otherwise: ample for a local scrape or a browser, short enough that a
// stalled client holds its connection for seconds, not forever.
func DefaultTimeouts() Timeouts {
	return Timeouts{ReadHeader: 5 * time.Second, Read: 10 * time.Second, Write: 30 * time.Second, Idle: 60 * time.Second}
}

// Option configures a Server.
type Option func(*Server)

// WithToken requires "Authorization: Bearer <token>" on every endpoint but
// /healthz, so that a load balancer can still probe the node. The token is
// compared in constant time. An empty token requires nothing.
func WithToken(token string) Option {
	return func(s *Server) {
		if token == "" {
			s.token = nil
			return
		}
		sum := sha256.Sum256([]byte(token))
		s.token = sum[:]
	}
}

// DefaultRefresh is how often the page fetches fresh content.
const DefaultRefresh = 2 * time.Second

// WithRefresh sets how often the page fetches fresh content (default
// DefaultRefresh); values below 100 ms are raised to it.
func WithRefresh(d time.Duration) Option {
	return func(s *Server) { s.refresh = max(d, 100*time.Millisecond) }
}

// WithTimeouts replaces DefaultTimeouts for the Server's own listener.
func WithTimeouts(t Timeouts) Option { return func(s *Server) { s.timeouts = t } }

// DefaultHost is where Start and Serve bind when the address names no
// host (":8080"): the status endpoints describe the node's peers and
// traffic, so they are private unless the caller names an interface.
const DefaultHost = "127.0.0.1"

// Server serves a node's status over HTTP (see the package doc for the
// endpoints). Handler may be mounted anywhere and used any number of
// times; Start or Serve runs the Server's own listener, once. A Server is
// safe for concurrent use. It never closes the node or the Metrics.
type Server struct {
	n        *node.Node
	m        *Metrics
	handler  http.Handler
	token    []byte // SHA-256 of the bearer token; nil: none required
	timeouts Timeouts
	refresh  time.Duration

	mu       sync.Mutex
	srv      *http.Server
	done     chan struct{} // closed when srv.Serve has returned
	stop     func() bool   // cancels the close-on-ctx hook
	closed   bool
	serveErr error // srv.Serve's error, other than http.ErrServerClosed; read after done

	closeOnce sync.Once
	closeErr  error
}

// New returns a Server for n. m may be nil: /metrics then answers 404.
func New(n *node.Node, m *Metrics, opts ...Option) *Server {
	s := &Server{n: n, m: m, timeouts: DefaultTimeouts(), refresh: DefaultRefresh}
	for _, o := range opts {
		o(s)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.servePage)
	mux.HandleFunc("GET /api/node", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, NodeJSON(n)) })
	mux.HandleFunc("GET /api/catalog", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, CatalogJSON(n)) })
	mux.HandleFunc("GET /api/streams", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, StreamsJSON(n)) })
	mux.HandleFunc("GET /api/groups", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, GroupsJSON(n)) })
	mux.HandleFunc("GET /api/collections", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, CollectionsJSON(n)) })
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		select {
		case <-n.Done():
			// Closing or closed: a load balancer or orchestrator stops
			// sending it work.
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("closing"))
		default:
			_, _ = w.Write([]byte("ok"))
		}
	})
	if m != nil {
		mux.Handle("GET /metrics", m.Handler())
	}
	s.handler = s.authorize(mux)
	return s
}

// Handler returns the Server's routes. Unknown paths, and /metrics without
// Metrics, answer 404; methods other than GET and HEAD answer 405; with
// WithToken, a request without the token answers 401 (except /healthz).
func (s *Server) Handler() http.Handler { return s.handler }

// authorize requires the bearer token, when one is set, on every path but
// /healthz.
func (s *Server) authorize(next http.Handler) http.Handler {
	if s.token == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" || s.authorized(r) {
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="mosaik-node"`)
		http.Error(w, "status: a bearer token is required", http.StatusUnauthorized)
	})
}

// authorized compares digests, so that the comparison takes the same time
// whatever the presented token's length and content.
func (s *Server) authorized(r *http.Request) bool {
	const prefix = "Bearer "
	h := r.Header.Get("Authorization")
	if len(h) < len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return false
	}
	sum := sha256.Sum256([]byte(h[len(prefix):]))
	return subtle.ConstantTimeCompare(sum[:], s.token) == 1
}

// listenAddr binds a host-less address (":8080") to DefaultHost.
func listenAddr(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("status: address %q: %w", addr, err)
	}
	if host == "" {
		host = DefaultHost
	}
	return net.JoinHostPort(host, port), nil
}

func (s *Server) servePage(w http.ResponseWriter, _ *http.Request) {
	now := time.Now()
	gs := s.n.Groups()
	gd := groupsDoc(gs.Status(), gs.BondStatus(), now)
	data := pageData{
		Node: nodeDoc(s.n, now), Catalog: catalogDoc(s.n, now), Streams: StreamsJSON(s.n),
		Groups: gd, Collections: collectionsDoc(gd),
		HasMetrics: s.m != nil, Now: now.UTC().Format(time.RFC3339),
		RefreshMS: s.refresh.Milliseconds(), RefreshS: int64(max(time.Second, s.refresh.Round(time.Second)) / time.Second),
	}
	var buf bytes.Buffer
	if err := page.Execute(&buf, data); err != nil {
		http.Error(w, "status: render: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(buf.Bytes())
}

func writeJSON(w http.ResponseWriter, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		http.Error(w, "status: encode: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(append(b, '\n'))
}

// Start listens on addr (host:port; port 0 picks one; no host means
// DefaultHost, loopback) and serves in the background until ctx ends or
// Close is called, whichever comes first. It returns the bound address. A Server starts at most once: later calls
// return ErrStarted, or ErrClosed after Close. If ctx has already ended,
// Start returns ctx.Err() and does not listen.
func (s *Server) Start(ctx context.Context, addr string) (net.Addr, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ln, err := Listen(ctx, addr)
	if err != nil {
		return nil, err
	}
	a, err := s.StartOn(ctx, ln)
	if err != nil {
		_ = ln.Close()
	}
	return a, err
}

// Listen binds addr as Start does, so that a caller can find a busy port
// before it starts anything else, and StartOn later.
func Listen(ctx context.Context, addr string) (net.Listener, error) {
	addr, err := listenAddr(addr)
	if err != nil {
		return nil, err
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("status: listen: %w", err)
	}
	return ln, nil
}

// StartOn is Start on a listener already bound (Listen): it serves ln in
// the background until ctx ends or Close is called, and closes ln then.
// On error ln is left to the caller.
func (s *Server) StartOn(ctx context.Context, ln net.Listener) (net.Addr, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return nil, ErrClosed
	case s.srv != nil:
		return nil, ErrStarted
	case ctx.Err() != nil:
		return nil, ctx.Err()
	}
	h := s.handler
	if isLoopback(ln.Addr()) && s.token == nil {
		// With a token a rebinding page gets nothing (it cannot send
		// the Authorization header), and the proxy that adds the token
		// may pass its own Host name through.
		h = LoopbackHostsOnly(h)
	}
	s.srv = &http.Server{
		Handler:           h,
		ReadHeaderTimeout: s.timeouts.ReadHeader,
		ReadTimeout:       s.timeouts.Read,
		WriteTimeout:      s.timeouts.Write,
		IdleTimeout:       s.timeouts.Idle,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(slog.Default().Handler(), slog.LevelWarn),
	}
	s.done = make(chan struct{})
	go func(srv *http.Server, done chan struct{}) {
		defer close(done)
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			s.serveErr = fmt.Errorf("status: serve: %w", err)
		}
	}(s.srv, s.done)
	s.stop = context.AfterFunc(ctx, func() { _ = s.Close() })
	return ln.Addr(), nil
}

// LoopbackHostsOnly answers 403 to requests whose Host header is a name
// other than localhost (or a subdomain of it): IP addresses and localhost
// pass. Start and StartOn use it on a loopback listener without a token,
// the default: a web page the operator's browser opens could otherwise
// rebind its own DNS name to 127.0.0.1 and read the status endpoints as
// same-origin content (DNS rebinding). A browser always sends the name it
// resolved, so such a request names the attacker's domain. A reverse
// proxy in front of such a listener must send Host localhost (or give the
// Server a token: then no Host is checked, since a rebinding page cannot
// send the token). A listener on all interfaces (0.0.0.0) is not checked,
// though a page on the operator's machine can reach it the same way:
// give it a token. Mount Handler behind LoopbackHostsOnly when serving a
// loopback listener of your own.
func LoopbackHostsOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !localHost(r.Host) {
			http.Error(w, fmt.Sprintf("status: host %q refused: on a loopback address this server answers only to localhost and IP addresses (DNS rebinding)", r.Host), http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// localHost reports whether a Host header names an IP address or
// localhost. An empty Host (HTTP/1.0) passes: browsers always send one.
func localHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
	if host == "" || net.ParseIP(host) != nil {
		return true
	}
	return host == "localhost" || strings.HasSuffix(host, ".localhost")
}

// isLoopback reports whether a listener's address is a loopback address.
func isLoopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

// Serve listens on addr and serves until ctx ends, then shuts down
// gracefully (requests in flight get up to 5 s) and returns nil, also when
// ctx had ended before. It returns early with an error if listening or
// serving fails.
func (s *Server) Serve(ctx context.Context, addr string) error {
	if _, err := s.Start(ctx, addr); err != nil {
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			return nil
		}
		return err
	}
	s.mu.Lock()
	done := s.done
	s.mu.Unlock()
	select {
	case <-ctx.Done():
	case <-done:
	}
	return s.Close()
}

// Close shuts the listener started by Start or Serve down gracefully and
// waits for it; it returns the serve error, if serving failed. The wait is
// bounded: requests still running after shutdownTimeout (5 s) are cut off,
// so Close returns within about that. Close is idempotent and safe to call
// concurrently; after it, Start fails.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		srv, done, stop := s.srv, s.done, s.stop
		s.mu.Unlock()
		if srv == nil {
			return
		}
		stop()
		ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		var errs []error
		if err := srv.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("status: shutdown: %w", err), srv.Close())
		}
		<-done
		s.closeErr = errors.Join(append(errs, s.serveErr)...)
	})
	return s.closeErr
}
