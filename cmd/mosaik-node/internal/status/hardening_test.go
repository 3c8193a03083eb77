package status_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/mosaik-go/mosaik/cmd/mosaik-node/internal/status"
	"github.com/mosaik-go/mosaik/internal/testutil"
)

func TestServer_Token(t *testing.T) {
	n := startNode(t)
	h := status.New(n, newMetrics(t), status.WithToken("s3cret")).Handler()
	paths := []string{"/", "/api/node", "/api/catalog", "/api/streams", "/api/groups", "/metrics", "/nope"}
	for _, tc := range []struct {
		name, auth string
		ok         bool
	}{
		{"no header", "", false},
		{"right token", "Bearer s3cret", true},
		{"scheme in lower case", "bearer s3cret", true},
		{"wrong token", "Bearer s3cre", false},
		{"token with a suffix", "Bearer s3cret2", false},
		{"basic scheme", "Basic s3cret", false},
		{"no token", "Bearer ", false},
		{"just the token", "s3cret", false},
	} {
		for _, p := range paths {
			req := httptest.NewRequest(http.MethodGet, p, nil)
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if got := rec.Code == http.StatusUnauthorized; got == tc.ok {
				t.Errorf("%s, %s: status %d", tc.name, p, rec.Code)
			}
			if !tc.ok && rec.Header().Get("WWW-Authenticate") == "" {
				t.Errorf("%s, %s: a 401 without WWW-Authenticate", tc.name, p)
			}
		}
		// The health check stays open for probes.
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
		if rec.Code != http.StatusOK {
			t.Errorf("/healthz without a token: %d", rec.Code)
		}
	}
	// An empty token requires nothing.
	rec := httptest.NewRecorder()
	status.New(n, nil, status.WithToken("")).Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/node", nil))
	if rec.Code != http.StatusOK {
		t.Errorf("empty token: %d", rec.Code)
	}
}

// TestServer_DefaultsToLoopback: an address without a host binds to
// 127.0.0.1, not to every interface.
func TestServer_DefaultsToLoopback(t *testing.T) {
	n := startNode(t)
	srv := status.New(n, nil)
	t.Cleanup(func() { _ = srv.Close() })
	addr, err := srv.Start(context.Background(), ":0")
	if err != nil {
		t.Fatal(err)
	}
	ta, ok := addr.(*net.TCPAddr)
	if !ok || !ta.IP.Equal(net.IPv4(127, 0, 0, 1)) {
		t.Fatalf("bound to %v, want 127.0.0.1", addr)
	}
	if _, err := status.New(n, nil).Start(context.Background(), "no-port"); err == nil {
		t.Error("Start on an address without a port: no error")
	}
}

// TestServer_RefusesReboundNames: on a loopback listener, a request that
// names another host (a page whose DNS name was rebound to 127.0.0.1 and
// that the operator's browser runs) is refused; localhost and IP
// addresses pass. A handler mounted elsewhere is not wrapped.
func TestServer_RefusesReboundNames(t *testing.T) {
	n := startNode(t)
	srv := status.New(n, nil)
	t.Cleanup(func() { _ = srv.Close() })
	addr, err := srv.Start(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := addr.(*net.TCPAddr).Port
	get := func(host string) int {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, "http://"+addr.String()+"/api/node", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode
	}
	for _, host := range []string{
		fmt.Sprintf("attacker.example:%d", port), "attacker.example", "localhost.attacker.example",
		fmt.Sprintf("127.0.0.1.nip.io:%d", port),
	} {
		if code := get(host); code != http.StatusForbidden {
			t.Errorf("Host %q: %d, want 403", host, code)
		}
	}
	for _, host := range []string{
		fmt.Sprintf("127.0.0.1:%d", port), fmt.Sprintf("localhost:%d", port), "LOCALHOST", "localhost.",
		fmt.Sprintf("[::1]:%d", port), fmt.Sprintf("status.localhost:%d", port), "10.1.2.3",
	} {
		if code := get(host); code != http.StatusOK {
			t.Errorf("Host %q: %d, want 200", host, code)
		}
	}

	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/api/node", nil)
	req.Host = "status.example.com"
	srv.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Errorf("the mounted Handler with a public name: %d, want 200 (the listener decides)", rec.Code)
	}

	// With a token, a proxy that adds it and passes its own Host through
	// (Caddy, Traefik, httputil.ReverseProxy) is answered: a rebinding
	// page cannot send the token.
	tsrv := status.New(n, nil, status.WithToken("s3cret"))
	t.Cleanup(func() { _ = tsrv.Close() })
	taddr, err := tsrv.Start(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	preq, err := http.NewRequest(http.MethodGet, "http://"+taddr.String()+"/api/node", nil)
	if err != nil {
		t.Fatal(err)
	}
	preq.Host = "status.ops.example.com"
	preq.Header.Set("Authorization", "Bearer s3cret")
	resp, err := http.DefaultClient.Do(preq)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("a token-carrying proxy request with its own Host: %d, want 200", resp.StatusCode)
	}
}

// TestServer_Timeouts: a client that never finishes its headers, and a
// kept-alive client that goes quiet, are both disconnected.
func TestServer_Timeouts(t *testing.T) {
	n := startNode(t)
	srv := status.New(n, nil, status.WithTimeouts(status.Timeouts{
		ReadHeader: 200 * time.Millisecond, Read: 300 * time.Millisecond, Write: time.Second, Idle: 200 * time.Millisecond,
	}))
	t.Cleanup(func() { _ = srv.Close() })
	addr, err := srv.Start(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// closedWithin reads until the server closes c; the deadline is far
	// beyond the configured timeouts, so reaching it means no timeout.
	closedWithin := func(c net.Conn) error {
		_ = c.SetReadDeadline(time.Now().Add(testutil.Scale(10 * time.Second)))
		_, err := io.Copy(io.Discard, c)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return errors.New("the server kept the connection open")
		}
		return nil
	}

	slow, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	if _, err := io.WriteString(slow, "GET /healthz HTTP/1.1\r\nHost: x\r\n"); err != nil { // never ends its headers
		t.Fatal(err)
	}
	if err := closedWithin(slow); err != nil {
		t.Errorf("unfinished headers: %v", err)
	}

	idle, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	if _, err := io.WriteString(idle, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	if err := closedWithin(idle); err != nil {
		t.Errorf("idle keep-alive: %v", err)
	}
}

func TestDefaultTimeouts(t *testing.T) {
	d := status.DefaultTimeouts()
	if d.ReadHeader <= 0 || d.Read < d.ReadHeader || d.Write <= 0 || d.Idle <= 0 {
		t.Fatalf("DefaultTimeouts %+v: every limit must be set, Read at least ReadHeader", d)
	}
}

// TestServer_HealthzOfClosedNode: once the node's Close begins, /healthz
// answers 503 (it answered 200 "ok" for a node leaving or gone, found by
// the node review); the other endpoints go on answering, without a panic.
func TestServer_HealthzOfClosedNode(t *testing.T) {
	n := startNode(t)
	h := status.New(n, nil).Handler()
	get := func(p string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, p, nil))
		return rec
	}
	if rec := get("/healthz"); rec.Code != http.StatusOK || rec.Body.String() != "ok" {
		t.Fatalf("/healthz of a live node: %d %q", rec.Code, rec.Body.String())
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if rec := get("/healthz"); rec.Code != http.StatusServiceUnavailable {
		t.Errorf("/healthz of a closed node: %d %q, want 503", rec.Code, rec.Body.String())
	}
	for _, p := range []string{"/", "/api/node", "/api/catalog", "/api/streams", "/api/groups", "/api/collections"} {
		if rec := get(p); rec.Code != http.StatusOK {
			t.Errorf("%s of a closed node: %d", p, rec.Code)
		}
	}
}
