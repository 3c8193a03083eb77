package streams_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/node"
	"github.com/mosaik-go/mosaik/policy"
	"github.com/mosaik-go/mosaik/streams"
)

// logBuffer collects JSON log records; safe for concurrent writers.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// records returns the records at level whose message is msg.
func (b *logBuffer) records(level, msg string) []map[string]any {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(b.buf.String(), "\n") {
		var r map[string]any
		if json.Unmarshal([]byte(line), &r) == nil && r["level"] == level && r["msg"] == msg {
			out = append(out, r)
		}
	}
	return out
}

func (b *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(b, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// A consumer refused by a producer's tag policy shows one Warn line with
// the reason on each side, however often it retries.
func TestRefusal_LoggedOncePerSide(t *testing.T) {
	var plog, clog logBuffer
	p := startNode(t, node.WithoutDHT(), node.WithLogger(plog.logger()), node.WithStreamsParams(fastRefusals()))
	c := startNode(t, node.WithoutDHT(), node.WithLogger(clog.logger()), node.WithBootstrapPeers(p.AddrInfo()),
		node.WithStreamsParams(fastRefusals()))
	testutil.Eventually(t, 10*time.Second, func() bool {
		_, a := p.Catalog().Get(c.ID())
		_, b := c.Catalog().Get(p.ID())
		return a && b
	}, "the nodes did not converge")
	mustProducer[string](t, p, "guarded", streams.WithNamedRequire("tags reader", policy.HasTags("reader")))
	mustConsumer[string](t, c, "guarded")
	testutil.Eventually(t, 10*time.Second, func() bool { return p.Streams().Stats().Rejected > 0 }, "no refusal")
	// Retries: every change of the consumer's entry makes it try again.
	for i, tag := range []string{"a", "b", "c"} {
		if err := c.AddTags(tag); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, 10*time.Second, func() bool { return p.Streams().Stats().Rejected > uint64(i+1) },
			"no retry after the consumer's entry changed")
	}
	prod, cons := plog.records("WARN", "consumer refused"), clog.records("WARN", "refused by producer")
	if len(prod) != 1 || len(cons) != 1 {
		t.Fatalf("want one Warn line per side after %d refusals, got %d on the producer, %d on the consumer",
			p.Streams().Stats().Rejected, len(prod), len(cons))
	}
	for side, r := range map[string]map[string]any{"producer": prod[0], "consumer": cons[0]} {
		if !strings.Contains(r["reason"].(string), "require tags reader: not met") || r["code"] != "NotAllowed" || r["hint"] == "" {
			t.Errorf("%s line: %v", side, r)
		}
	}
	if prod[0]["consumer"] != c.ID().String() || cons[0]["producer"] != p.ID().String() {
		t.Errorf("lines name the wrong peers: %v / %v", prod[0], cons[0])
	}
}

// A consumer whose own policy excludes a producer says so once.
func TestRefusal_ConsumerPolicyLoggedOnce(t *testing.T) {
	var clog logBuffer
	nodes := semNodes(t, nil, nil)
	p := nodes[0]
	c := startNode(t, node.WithoutDHT(), node.WithLogger(clog.logger()), node.WithBootstrapPeers(p.AddrInfo()))
	mustProducer[string](t, p, "picky")
	mustConsumer[string](t, c, "picky", streams.WithNamedRequire("tags eu", policy.HasTags("eu")))
	testutil.Eventually(t, 10*time.Second, func() bool {
		return len(clog.records("INFO", "producer refused by this consumer's policy")) > 0
	}, "the consumer never said why it ignores the producer")
	for _, tag := range []string{"a", "b"} { // catalog changes re-judge the producer
		if err := p.AddTags(tag); err != nil {
			t.Fatal(err)
		}
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		e, ok := c.Catalog().Get(p.ID())
		return ok && len(e.Entry.Tags) == 2
	}, "the consumer never saw the producer's new tags")
	if got := clog.records("INFO", "producer refused by this consumer's policy"); len(got) != 1 ||
		!strings.Contains(got[0]["reason"].(string), "require tags eu: not met") {
		t.Fatalf("want one line naming the rule, got %v", got)
	}
}

// fastRefusals retries a refusing producer after 50 ms (at the earliest).
func fastRefusals() streams.Params {
	p := streams.DefaultParams()
	p.HandshakeTimeout, p.CloseTimeout = 2*time.Second, 2*time.Second
	p.RefusalRetryMin, p.RefusalRetryMax = 50*time.Millisecond, 100*time.Millisecond
	return p
}

// A consumer turned away by a full producer (a retried refusal) says so
// once, as does the producer.
func TestRefusal_CapacityLoggedOnce(t *testing.T) {
	var plog, clog logBuffer
	nodes := semNodes(t, nil, nil)
	p := startNode(t, node.WithoutDHT(), node.WithLogger(plog.logger()), node.WithBootstrapPeers(nodes[0].AddrInfo()))
	late := startNode(t, node.WithoutDHT(), node.WithLogger(clog.logger()), node.WithBootstrapPeers(nodes[0].AddrInfo()),
		node.WithStreamsParams(fastRefusals()))
	mustProducer[string](t, p, "small", streams.WithMaxConsumers(1))
	first := mustConsumer[string](t, nodes[1], "small")
	testutil.Eventually(t, 15*time.Second, func() bool { return semConnected(first.Producers(), p.ID()) }, "the first consumer never subscribed")
	mustConsumer[string](t, late, "small", streams.WithBackoff(semFastBackoff))
	testutil.Eventually(t, 15*time.Second, func() bool { return p.Streams().Stats().Rejected >= 3 }, "the late consumer was not refused and retried")
	prod, cons := plog.records("WARN", "consumer refused"), clog.records("WARN", "refused by producer")
	if len(prod) != 1 || len(cons) != 1 || prod[0]["code"] != "NoCapacity" || cons[0]["code"] != "NoCapacity" {
		t.Fatalf("want one NoCapacity line per side, got %v / %v", prod, cons)
	}
}
