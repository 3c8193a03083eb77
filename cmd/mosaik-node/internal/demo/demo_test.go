package demo_test

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/mosaik-go/mosaik/cmd/mosaik-node/internal/demo"
	"github.com/mosaik-go/mosaik/internal/testutil"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, testutil.LeakOptions()...)
}

func TestRunSummary_StreamsAndFailsOver(t *testing.T) {
	const duration = 4 * time.Second
	var out bytes.Buffer
	start := time.Now()
	sum, err := demo.RunSummary(context.Background(), &out, demo.Config{
		Nodes: 1, Network: "demo-test", Duration: duration, Timeout: testutil.Scale(15 * time.Second), Logger: testutil.Logger(),
		// Localhost RTT is far below 50 ms, but the race detector and a
		// loaded machine inflate the samples; the policy is what is tested.
		MaxRTT: testutil.Scale(500 * time.Millisecond),
	})
	took := time.Since(start)
	text := out.String()
	if err != nil {
		t.Fatalf("demo failed: %v\n%s", err, text)
	}
	if limit := duration + testutil.Scale(10*time.Second); took > limit {
		t.Errorf("demo took %v, want at most %v:\n%s", took, limit, text)
	}

	// The text: live lines, the stop and its narrative, the failover, the tables.
	for _, want := range [][]string{
		{"consumers subscribed after", "tag-eu ← eu;", "rtt ← eu, us;", "ticket ← us;", "any-1 ← eu, us"},
		{"stopping producer eu"},
		{"tag-eu ", "loses its only producer"},
		{"rtt ", "fails over: carries on with us"},
		{"ticket ", "unaffected: it is not subscribed to eu"},
		{"any-1 ", "fails over: carries on with us"},
		{"failover done", "tag-eu idle; rtt ← us; ticket ← us; any-1 ← us"},
		{"CONSUMER", "POLICY", "RECEIVED", "PRODUCERS SEEN", "GAPS"},
		{"PRODUCER", "PEER", "TICKET", "SENT"},
		{"Datums still in flight"},
		{"done."},
	} {
		if lines(text, want...) == 0 {
			t.Errorf("output lacks a line with %q:\n%s", want, text)
		}
	}
	for _, name := range []string{"tag-eu", "rtt", "ticket", "any-1"} {
		if n := lines(text, "] "+name+" ", "datums/s ←"); n < 3 {
			t.Errorf("%s: %d live lines, want one per second (>= 3):\n%s", name, n, text)
		}
	}

	// The data.
	if len(sum.Consumers) != 4 || len(sum.Producers) != 2 {
		t.Fatalf("summary has %d consumers and %d producers, want 4 and 2: %+v", len(sum.Consumers), len(sum.Producers), sum)
	}
	if sum.Stopped != "eu" || sum.StoppedAt < duration/2 || sum.Failover <= 0 {
		t.Errorf("stop: %q at %v, failover %v; want eu stopped at >= %v and a failover observed", sum.Stopped, sum.StoppedAt, sum.Failover, duration/2)
	}
	for _, p := range sum.Producers {
		if p.Sent == 0 {
			t.Errorf("producer %s sent nothing", p.Label)
		}
		if p.Ticketed != (p.Label == "us") {
			t.Errorf("producer %s: ticketed = %v", p.Label, p.Ticketed)
		}
	}
	for _, c := range sum.Consumers {
		if c.Received == 0 {
			t.Errorf("consumer %s received nothing", c.Name)
		}
	}
	want := map[string][]string{"tag-eu": {"eu"}, "rtt": {"eu", "us"}, "ticket": {"us"}, "any-1": {"eu", "us"}}
	for name, seen := range want {
		c, ok := sum.Consumer(name)
		if !ok {
			t.Fatalf("no consumer %s in the summary", name)
		}
		if !slices.Equal(c.Seen, seen) {
			t.Errorf("%s saw producers %v, want %v", name, c.Seen, seen)
		}
		for _, l := range seen {
			if c.From[l] == 0 {
				t.Errorf("%s received nothing from %s: %v", name, l, c.From)
			}
		}
	}
	// Failover: the consumers that also had us keep receiving after the stop.
	for _, name := range []string{"rtt", "ticket", "any-1"} {
		if c, _ := sum.Consumer(name); c.AfterStop == 0 {
			t.Errorf("%s received nothing after eu stopped", name)
		}
	}
}

// lines counts the lines of text that contain every one of parts.
func lines(text string, parts ...string) int {
	n := 0
	for line := range strings.Lines(text) {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			n++
		}
	}
	return n
}

func TestRunSummary_RejectsBadConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  demo.Config
	}{
		{"negative extra nodes", demo.Config{Nodes: -1}},
		{"too many extra nodes", demo.Config{Nodes: 27}},
		{"too short", demo.Config{Duration: time.Second}},
		{"rate too high", demo.Config{Rate: 5000}},
		{"negative rate", demo.Config{Rate: -1}},
		{"negative max RTT", demo.Config{MaxRTT: -time.Millisecond}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := demo.RunSummary(context.Background(), &bytes.Buffer{}, tt.cfg); err == nil {
				t.Fatalf("config %+v accepted", tt.cfg)
			}
		})
	}
}
