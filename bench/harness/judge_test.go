package harness

import (
	"bytes"
	"strings"
	"testing"
)

// These tests run the real verdicts (Results.finish) on made-up rows: a
// target must not be met by data that does not show it.

func judge(rows ...Row) *Results {
	res := &Results{Rows: rows}
	res.finish()
	return res
}

func row(sc, metric, sys string, notes []string, s ...float64) Row {
	return Row{Scenario: sc, Metric: metric, System: sys, Unit: "ms", Better: Lower, Samples: s, Notes: notes}
}

func target(t *testing.T, res *Results, prefix string) Target {
	t.Helper()
	for _, tg := range res.Targets {
		if strings.HasPrefix(tg.Goal, prefix) {
			return tg
		}
	}
	t.Fatalf("no target %q", prefix)
	return Target{}
}

func verdict(tg Target) string {
	switch {
	case tg.Met != nil && *tg.Met:
		return "met"
	case tg.Met != nil:
		return "not met"
	case tg.Reported:
		return "reported"
	}
	return "not measured"
}

func wantVerdict(t *testing.T, res *Results, prefix, want string) {
	t.Helper()
	if tg := target(t, res, prefix); verdict(tg) != want {
		t.Errorf("%s: %s (measured: %s), want %s", tg.Goal, verdict(tg), tg.Measured, want)
	}
}

// The sybils' share: MaxPeers bounds what they hold whatever happens, so
// a catalog of sybils alone (every honest peer pushed out) must fail.
func TestJudge_SybilShare(t *testing.T) {
	rows := func(held, missing float64) *Results {
		var rs []Row
		for _, mode := range []string{"admission-off", "admission-on"} {
			id := "catalog/sybil/" + mode
			h := held
			if mode == "admission-on" {
				h = 0
			}
			rs = append(rs,
				row(id, "sybils held in an honest catalog (max)", "mosaik", nil, h, h, h, h, h),
				row(id, "honest peers missing from an honest catalog (max)", "mosaik", nil, missing, missing, missing, missing, missing),
				row(id, "newcomer in every honest catalog", "mosaik", nil, 900, 1000, 1100, 1200, 1300))
		}
		return judge(rs...)
	}
	const goal = "catalog/sybil: with admission off"
	wantVerdict(t, rows(61, 3), goal, "not met") // honest peers pushed out
	wantVerdict(t, rows(61, 0), goal, "met")
}

// A mosaik median at the limit is a bound: no ratio with it is met.
func TestJudge_DiscoveryN50Capped(t *testing.T) {
	capped := []string{"5/5 reps stopped at the 10s limit (counted as 10s: the true time is longer)"}
	res := judge(
		row("discovery/N=50", "all nodes see all nodes", "mosaik", capped, 10000, 10000, 10000, 10000, 10000),
		row("discovery/N=50", "all nodes see all nodes", "memberlist", nil, 5200, 5400, 5500, 5600, 5800),
	)
	wantVerdict(t, res, "discovery convergence at N = 50 within 2×", "not met")
}

// Half of an even number of repetitions at the limit: the median is the
// mean of a real time and the limit, a bound too.
func TestJudge_ConvergenceEvenRepsHalfCapped(t *testing.T) {
	capped := []string{"3/6 reps stopped at the 10s limit (counted as 10s: the true time is longer)"}
	res := judge(
		row("catalog/convergence/N=100", "all nodes see all nodes", "mosaik", capped, 1000, 1000, 1000, 10000, 10000, 10000),
		row("catalog/convergence/N=100", "all nodes see all nodes", "memberlist", nil, 6000, 6000, 6000, 6000, 6000, 6000),
	)
	wantVerdict(t, res, "catalog: discovery convergence at N = 100, all nodes see all nodes", "not met")
}

// Newcomer syncs that failed (reset after the responder's SyncTimeout)
// and were retried: the retries' times do not stand for them.
func TestJudge_NewcomerRetries(t *testing.T) {
	rows := func(notes []string) *Results {
		return judge(
			row("catalog/scale/10k", "re-sync bytes", "mosaik", nil, 640, 640, 640, 640, 640),
			row("catalog/scale/10k", "newcomer full sync", "mosaik", notes, 1500, 1500, 1500, 1500, 1500),
			row("catalog/scale/10k", "newcomer full sync bytes", "mosaik", nil, 8222, 8222, 8222, 8222, 8222),
		)
	}
	failed := []string{"rep 1: 2 attempt(s) failed and were retried with a fresh node, the last: after 10.0s: stream reset"}
	wantVerdict(t, rows(failed), "catalog: a newcomer's full sync", "not met")
	wantVerdict(t, rows(nil), "catalog: a newcomer's full sync", "met")
}

// The node's CPU counts only under the load the heartbeats bring.
func TestJudge_NodeCPUUnderLoad(t *testing.T) {
	rows := func(rate float64) *Results {
		return judge(
			row("catalog/scale/10k", "re-sync bytes", "mosaik", nil, 640, 640, 640, 640, 640),
			row("catalog/scale/10k", "node CPU", "mosaik", nil, 0.4, 0.4, 0.5, 0.4, 0.4),
			row("catalog/scale/10k", "updates applied", "mosaik", []string{"expected 333/s"}, rate, rate, rate, rate, rate),
		)
	}
	wantVerdict(t, rows(0), "catalog: node CPU", "not met")
	wantVerdict(t, rows(330), "catalog: node CPU", "met")
}

// A goal that asks for numbers only is reported, never met.
func TestJudge_ReportedIsNoVerdict(t *testing.T) {
	res := judge(
		row("catalog/sybil/admission-off", "process CPU during the flood", "mosaik", nil, 1e6),
		row("catalog/sybil/admission-off", "honest catalog bytes per node", "mosaik", nil, 1e9),
		row("catalog/sybil/admission-off", "heap in use after the flood", "mosaik", nil, 1e9),
	)
	wantVerdict(t, res, "catalog/sybil: honest memory and CPU", "reported")
	var md bytes.Buffer
	if err := res.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(md.String(), "\n") {
		if strings.Contains(l, "honest memory and CPU") && !strings.HasSuffix(l, "| reported |") {
			t.Errorf("results.md: %s", l)
		}
	}
}
