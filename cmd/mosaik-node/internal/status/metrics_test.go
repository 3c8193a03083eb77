package status_test

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/cmd/mosaik-node/internal/status"
	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/node"
	"github.com/mosaik-go/mosaik/policy"
	"github.com/mosaik-go/mosaik/streams"
)

// sample is one line of a Prometheus text exposition.
type sample struct {
	name   string
	labels map[string]string
}

var (
	sampleLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? \S+`)
	labelPair  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"`)
)

func parseExposition(t *testing.T, body string) []sample {
	t.Helper()
	var out []sample
	for _, line := range strings.Split(body, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		m := sampleLine.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("unparsable exposition line %q", line)
		}
		s := sample{name: m[1], labels: map[string]string{}}
		for _, kv := range labelPair.FindAllStringSubmatch(m[2], -1) {
			s.labels[kv[1]] = kv[2]
		}
		out = append(out, s)
	}
	return out
}

// TestMetrics_Scrape scrapes /metrics of a node that runs the DHT, a
// producer with a consumer, and a producer that refuses its consumer, and
// checks the labels an operator's dashboards rely on. The test sets no
// global OpenTelemetry provider: kad-dht's series must appear anyway.
func TestMetrics_Scrape(t *testing.T) {
	m := newMetrics(t)
	a := startNodeDHT(t, node.WithTags("alpha"),
		node.WithMeterProvider(m.MeterProvider()), node.WithPrometheusRegisterer(m.Registerer()))
	b := startNodeDHT(t, node.WithTags("beta"), node.WithBootstrapPeers(a.AddrInfo()))

	bytesCodec := streams.WithCodec[[]byte](streams.Bytes{})
	orders, err := streams.NewProducer[[]byte](a.Streams(), "orders", bytesCodec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = orders.Close() })
	vip, err := streams.NewProducer[[]byte](a.Streams(), "vip", bytesCodec, streams.WithRequire(policy.HasTags("vip")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = vip.Close() })
	cons, err := streams.NewConsumer[[]byte](b.Streams(), "orders", bytesCodec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cons.Close() })
	refused, err := streams.NewConsumer[[]byte](b.Streams(), "vip", bytesCodec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = refused.Close() })
	testutil.Eventually(t, 10*time.Second, func() bool { return len(orders.Consumers()) == 1 },
		"orders has %d consumers", testutil.Lazy(func() any { return len(orders.Consumers()) }))
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Scale(10*time.Second))
	defer cancel()
	if err := orders.Send(ctx, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := cons.Recv(ctx); err != nil {
		t.Fatal(err)
	}
	// A consumer that leaves ends its subscription at the producer.
	_ = cons.Close()

	srv := status.New(a, m)
	addr, err := srv.Start(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	c := client(t)
	url := "http://" + addr.String() + "/metrics"

	has := func(ss []sample, name string, want map[string]string) bool {
		for _, s := range ss {
			if s.name != name {
				continue
			}
			ok := true
			for k, v := range want {
				if got, present := s.labels[k]; !present || (v != "*" && got != v) {
					ok = false
				}
			}
			if ok {
				return true
			}
		}
		return false
	}
	ordersID := catalog.IDFromString("orders").Short()
	// Poll until every series is there, then report each missing one: a
	// failure names what is missing rather than timing out as a whole.
	var ss []sample
	scrape := func() bool {
		_, body := get(t, c, url)
		ss = parseExposition(t, body)
		return has(ss, "mosaik_streams_producer_items_sent_total", map[string]string{"stream": "orders", "stream_id": ordersID}) &&
			has(ss, "mosaik_streams_connections_rejected_total", map[string]string{"reason": "NotAllowed"}) &&
			has(ss, "mosaik_streams_producer_disconnects_total", map[string]string{"stream": "orders", "reason": "*"}) &&
			hasPrefix(ss, "libp2p_kad_dht_rpc_")
	}
	for deadline := time.Now().Add(testutil.Scale(20 * time.Second)); !scrape() && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond) // the poll interval
	}

	checks := []struct {
		what string
		ok   bool
	}{
		{"stream series are labelled with the stream's name and its ID",
			has(ss, "mosaik_streams_producer_items_sent_total", map[string]string{"stream": "orders", "stream_id": ordersID})},
		{"refused subscriptions carry a reason", has(ss, "mosaik_streams_connections_rejected_total", map[string]string{"reason": "NotAllowed", "code": "*"})},
		{"ended subscriptions carry a reason", has(ss, "mosaik_streams_producer_disconnects_total", map[string]string{"stream": "orders", "reason": "*"})},
		{"kad-dht's series are prefixed libp2p_kad_dht_", hasPrefix(ss, "libp2p_kad_dht_rpc_")},
	}
	for _, ch := range checks {
		if !ch.ok {
			t.Errorf("%s: not found", ch.what)
		}
	}
	// The module's checkout: this package's directory, four levels down.
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Dir(filepath.Dir(filepath.Dir(filepath.Dir(wd))))
	sourceFile := regexp.MustCompile(`\.go(-L[0-9]+)?$`)
	for _, s := range ss {
		if strings.HasPrefix(s.name, "rpc_") || strings.HasPrefix(s.name, "network_size") {
			t.Errorf("unprefixed series %s", s.name)
		}
		for k, v := range s.labels {
			if strings.HasPrefix(k, "otel_scope_") {
				t.Errorf("%s has scope label %s=%q", s.name, k, v)
			}
			if strings.Contains(v, root) || strings.Contains(v, "/pkg/mod/") || sourceFile.MatchString(v) && strings.Count(v, "/") > 1 {
				t.Errorf("%s has a build path in label %s=%q", s.name, k, v)
			}
			if strings.HasPrefix(s.name, "mosaik_streams_") && k == "stream" && len(v) == len(ordersID) && v != "orders" && v != "vip" {
				t.Errorf("%s labels its stream by ID (%q), not by name", s.name, v)
			}
		}
	}
}

func hasPrefix(ss []sample, prefix string) bool {
	for _, s := range ss {
		if strings.HasPrefix(s.name, prefix) {
			return true
		}
	}
	return false
}

// startNodeDHT is startNode with the DHT on.
func startNodeDHT(t testing.TB, opts ...node.Option) *node.Node {
	t.Helper()
	n, err := node.New("status-test", append([]node.Option{
		node.WithListenAddrs("/ip4/127.0.0.1/tcp/0"), node.WithFastProfile(), node.WithLogger(testutil.Logger()),
	}, opts...)...)
	if err != nil {
		t.Fatalf("node.New: %v", err)
	}
	t.Cleanup(func() { _ = n.Close() })
	return n
}
