package status_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mosaik-go/mosaik/cmd/mosaik-node/internal/status"
	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/node"
	"github.com/mosaik-go/mosaik/streams"
)

// startNode starts a fast-profile node on 127.0.0.1 (TCP, no DHT) and
// closes it at the end of the test.
func startNode(t testing.TB, opts ...node.Option) *node.Node {
	t.Helper()
	n, err := node.New("status-test", append([]node.Option{
		node.WithListenAddrs("/ip4/127.0.0.1/tcp/0"), node.WithFastProfile(), node.WithoutDHT(),
		node.WithLogger(testutil.Logger()),
	}, opts...)...)
	if err != nil {
		t.Fatalf("node.New: %v", err)
	}
	t.Cleanup(func() { _ = n.Close() })
	return n
}

// newMetrics returns a Metrics shut down at the end of the test.
func newMetrics(t testing.TB) *status.Metrics {
	t.Helper()
	m, err := status.NewMetrics()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Shutdown(context.Background()) })
	return m
}

// client is an HTTP client whose idle connections close at the end of the
// test (so goleak sees no transport goroutines).
func client(t testing.TB) *http.Client {
	c := &http.Client{Transport: &http.Transport{}, Timeout: testutil.Scale(10 * time.Second)}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

func get(t testing.TB, c *http.Client, url string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: body: %v", url, err)
	}
	return resp, string(body)
}

// pair is two nodes of one network, a ("alpha") producing "orders" and b
// ("beta") consuming it, after n datums have gone through.
type pair struct {
	a, b *node.Node
	m    *status.Metrics // a's
	prod *streams.Producer[[]byte]
}

func newPair(t *testing.T, datums int) pair {
	t.Helper()
	m := newMetrics(t)
	a := startNode(t, node.WithTags("alpha"),
		node.WithMeterProvider(m.MeterProvider()), node.WithPrometheusRegisterer(m.Registerer()))
	b := startNode(t, node.WithTags("beta"), node.WithBootstrapPeers(a.AddrInfo()))
	prod, err := streams.NewProducer[[]byte](a.Streams(), "orders", streams.WithCodec[[]byte](streams.Bytes{}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = prod.Close() })
	cons, err := streams.NewConsumer[[]byte](b.Streams(), "orders", streams.WithCodec[[]byte](streams.Bytes{}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cons.Close() })
	testutil.Eventually(t, 10*time.Second, func() bool { return len(prod.Consumers()) == 1 && prod.IsOnline() },
		"producer has %d consumers", testutil.Lazy(func() any { return len(prod.Consumers()) }))

	ctx, cancel := context.WithTimeout(context.Background(), testutil.Scale(10*time.Second))
	defer cancel()
	for i := range datums {
		if err := prod.Send(ctx, []byte("datum-"+strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	for i := range datums {
		v, err := cons.Recv(ctx)
		if err != nil {
			t.Fatalf("recv %d: %v", i, err)
		}
		if want := "datum-" + strconv.Itoa(i); string(v) != want {
			t.Fatalf("recv %d: got %q, want %q", i, v, want)
		}
	}
	// Both catalogs hold the other's current entry: b sees a's stream.
	testutil.Eventually(t, 10*time.Second, func() bool {
		ea, ok := b.Catalog().Get(a.ID())
		_, ok2 := a.Catalog().Get(b.ID())
		return ok && ok2 && len(ea.Entry.Streams) == 1
	}, "catalogs did not converge")
	return pair{a: a, b: b, m: m, prod: prod}
}

func TestServer_Endpoints(t *testing.T) {
	p := newPair(t, 5)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := status.New(p.a, p.m)
	addr, err := srv.Start(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	base := "http://" + addr.String()
	c := client(t)

	t.Run("page", func(t *testing.T) {
		resp, body := get(t, c, base+"/")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d", resp.StatusCode)
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
			t.Errorf("Content-Type %q", ct)
		}
		for _, want := range []string{
			p.a.ID().String(), p.b.ID().String(), "orders", "alpha", "beta", "Connected",
			p.a.Network().Short(), "syncs started by this node", "connected", "1 consumer connected",
		} {
			if !strings.Contains(body, want) {
				t.Errorf("page lacks %q", want)
			}
		}
		for _, bad := range []string{"<script src", "src=\"http", "href=\"http", "src=\"//", "href=\"//"} {
			if strings.Contains(body, bad) {
				t.Errorf("page is not self-contained: has %q", bad)
			}
		}
	})

	t.Run("catalog", func(t *testing.T) {
		resp, body := get(t, c, base+"/api/catalog")
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("status %d, Content-Type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		// The raw shape, as a client in another language sees it.
		var raw struct {
			Network string           `json:"network"`
			Peers   []map[string]any `json:"peers"`
		}
		if err := json.Unmarshal([]byte(body), &raw); err != nil {
			t.Fatalf("invalid JSON: %v\n%s", err, body)
		}
		if raw.Network != "status-test" || len(raw.Peers) != 1 {
			t.Fatalf("network %q, %d peers, want status-test and 1:\n%s", raw.Network, len(raw.Peers), body)
		}
		peer := raw.Peers[0]
		for _, k := range []string{"peer_id", "tags", "streams", "addrs", "rtt_ms", "version", "updated", "age_ms", "connected"} {
			if _, ok := peer[k]; !ok {
				t.Errorf("peer lacks %q", k)
			}
		}
		if peer["peer_id"] != p.b.ID().String() {
			t.Errorf("peer_id %v, want %s", peer["peer_id"], p.b.ID())
		}
		if tags, _ := peer["tags"].([]any); len(tags) != 1 || tags[0] != "beta" {
			t.Errorf("tags %v, want [beta]", peer["tags"])
		}
		if rtt := peer["rtt_ms"]; rtt != nil {
			if _, ok := rtt.(float64); !ok {
				t.Errorf("rtt_ms %v is neither null nor a number", rtt)
			}
		}
		if v, _ := peer["version"].(string); strings.Count(v, ".") != 1 {
			t.Errorf("version %q, want start.update", v)
		}
		if u, _ := peer["updated"].(string); !strings.HasSuffix(u, "Z") {
			t.Errorf("updated %q, want an RFC 3339 time in UTC", u)
		} else if _, err := time.Parse(time.RFC3339, u); err != nil {
			t.Errorf("updated %q: %v", u, err)
		}
		if peer["connected"] != true {
			t.Errorf("connected %v, want true", peer["connected"])
		}
	})

	t.Run("streams", func(t *testing.T) {
		resp, body := get(t, c, base+"/api/streams")
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("status %d, Content-Type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		var doc status.StreamsDoc
		if err := json.Unmarshal([]byte(body), &doc); err != nil {
			t.Fatalf("invalid JSON: %v\n%s", err, body)
		}
		if len(doc.Producers) != 1 || len(doc.Consumers) != 0 {
			t.Fatalf("%d producers, %d consumers, want 1 and 0:\n%s", len(doc.Producers), len(doc.Consumers), body)
		}
		h := doc.Producers[0]
		if h.Stream != "orders" || !h.Online || h.Totals.Datums == 0 || h.Totals.Bytes == 0 {
			t.Errorf("producer %+v, want orders, online, datums and bytes > 0", h)
		}
		if len(h.Channels) != 1 || h.Channels[0].PeerID != p.b.ID().String() || h.Channels[0].State != "Connected" ||
			h.Channels[0].Datums != 5 {
			t.Errorf("channels %+v, want one Connected to %s with 5 datums", h.Channels, p.b.ID())
		}
		if h.Replay != nil || strings.Contains(body, `"replay"`) {
			t.Errorf("a producer without a replay window shows one: %+v", h.Replay)
		}
	})

	t.Run("node", func(t *testing.T) {
		_, body := get(t, c, base+"/api/node")
		var doc status.NodeDoc
		if err := json.Unmarshal([]byte(body), &doc); err != nil {
			t.Fatalf("invalid JSON: %v\n%s", err, body)
		}
		if doc.PeerID != p.a.ID().String() || doc.Network != "status-test" || doc.NetworkShort != p.a.Network().Short() ||
			!slices.Equal(doc.Tags, []string{"alpha"}) || !slices.Equal(doc.Streams, []string{"orders"}) ||
			doc.Peers != 1 || len(doc.Addrs) == 0 || doc.UptimeMS < 0 || doc.Discovery.Added == 0 {
			t.Errorf("node doc:\n%s", body)
		}
	})

	t.Run("metrics", func(t *testing.T) {
		resp, body := get(t, c, base+"/metrics")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d", resp.StatusCode)
		}
		sent, libp2p := metricValue(body, "mosaik_streams_producer_items_sent"), false
		sc := bufio.NewScanner(strings.NewReader(body))
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "libp2p_") {
				libp2p = true
				break
			}
		}
		if sent <= 0 {
			t.Errorf("mosaik_streams_producer_items_sent = %v, want > 0", sent)
		}
		if !libp2p {
			t.Errorf("no libp2p_ sample in /metrics")
		}
		if t.Failed() || testing.Verbose() {
			families, _ := p.m.Gatherer().Gather()
			for _, f := range families {
				t.Logf("%s (%s, %d series)", f.GetName(), f.GetType(), len(f.GetMetric()))
			}
		}
	})

	t.Run("healthz", func(t *testing.T) {
		resp, body := get(t, c, base+"/healthz")
		if resp.StatusCode != http.StatusOK || body != "ok" {
			t.Errorf("status %d, body %q", resp.StatusCode, body)
		}
	})

	t.Run("not found", func(t *testing.T) {
		resp, _ := get(t, c, base+"/nope")
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("status %d, want 404", resp.StatusCode)
		}
	})
}

// metricValue sums the samples of the series whose name starts with
// prefix (so a _total suffix is included), or returns -1 if there is none.
func metricValue(exposition, prefix string) float64 {
	sum, found := 0.0, false
	sc := bufio.NewScanner(strings.NewReader(exposition))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		fields := strings.Fields(line)
		v, err := strconv.ParseFloat(fields[len(fields)-1], 64)
		if err != nil {
			continue
		}
		sum, found = sum+v, true
	}
	if !found {
		return -1
	}
	return sum
}

func TestCatalogJSON_Names(t *testing.T) {
	p := newPair(t, 1)
	doc := status.CatalogJSON(p.b)
	if doc.Network != "status-test" || len(doc.Peers) != 1 {
		t.Fatalf("doc %+v, want one peer", doc)
	}
	pd := doc.Peers[0]
	if pd.PeerID != p.a.ID().String() || !slices.Equal(pd.Tags, []string{"alpha"}) ||
		!slices.Equal(pd.Streams, []string{"orders"}) || len(pd.Addrs) == 0 {
		t.Errorf("peer %+v, want a with tag alpha and stream orders", pd)
	}
}

func TestServer_WithoutMetrics(t *testing.T) {
	n := startNode(t)
	h := status.New(n, nil).Handler()
	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{http.MethodGet, "/metrics", http.StatusNotFound},
		{http.MethodGet, "/healthz", http.StatusOK},
		{http.MethodGet, "/api/catalog", http.StatusOK},
		{http.MethodHead, "/", http.StatusOK},
		{http.MethodPost, "/api/node", http.StatusMethodNotAllowed},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
		if rec.Code != tc.want {
			t.Errorf("%s %s: %d, want %d", tc.method, tc.path, rec.Code, tc.want)
		}
	}
	// An empty catalog is an empty list, not null.
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/catalog", nil))
	if !strings.Contains(rec.Body.String(), `"peers": []`) {
		t.Errorf("empty catalog:\n%s", rec.Body)
	}
}

func TestServer_StopsWithContext(t *testing.T) {
	n := startNode(t)
	srv := status.New(n, nil)
	ctx, cancel := context.WithCancel(context.Background())
	addr, err := srv.Start(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Start(ctx, "127.0.0.1:0"); !errors.Is(err, status.ErrStarted) {
		t.Errorf("second Start: %v, want ErrStarted", err)
	}
	c := client(t)
	if resp, _ := get(t, c, "http://"+addr.String()+"/healthz"); resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	c.CloseIdleConnections()
	cancel()
	testutil.Eventually(t, 5*time.Second, func() bool {
		resp, err := c.Get("http://" + addr.String() + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err != nil
	}, "server still answers after its context ended")
	if err := srv.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if _, err := srv.Start(context.Background(), "127.0.0.1:0"); !errors.Is(err, status.ErrClosed) {
		t.Errorf("Start after Close: %v, want ErrClosed", err)
	}
}

func TestServer_Serve(t *testing.T) {
	n := startNode(t)
	// Serve does not report its address: take a free port and hand it back.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- status.New(n, nil).Serve(ctx, addr) }()
	c := client(t)
	testutil.Eventually(t, 5*time.Second, func() bool {
		resp, err := c.Get("http://" + addr + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, "Serve never answered on %s", addr)
	c.CloseIdleConnections()
	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("Serve: %v, want nil after the context ended", err)
		}
	case <-time.After(testutil.Scale(10 * time.Second)):
		t.Fatal("Serve did not return after its context ended")
	}

	if err := status.New(n, nil).Serve(ctx, "127.0.0.1:0"); err != nil {
		t.Errorf("Serve with an ended context: %v, want nil", err)
	}
	if err := status.New(n, nil).Serve(context.Background(), "127.0.0.1:-1"); err == nil {
		t.Error("Serve on a bad address: no error")
	}
}
