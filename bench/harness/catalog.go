package harness

import (
	"context"
	"fmt"
	"strings"
)

// catalogScenarios are the rows of issue 17 that `--only catalog` selects:
// discovery convergence against memberlist at N = 50 and 100 (the same
// measurement as the discovery/N=… rows, which keep their ids, with a
// limit long enough for both systems) and the catalog at scale.
func (r *runner) catalogScenarios(p plan) []scenario {
	var out []scenario
	for _, n := range p.catConvNs {
		id := fmt.Sprintf("catalog/convergence/N=%d", n)
		out = append(out, scenario{id, p.reps * len(pick(r.cfg.Systems, discoverers())), func(ctx context.Context) error {
			return r.discoveryScenario(ctx, id, n, p.catLimit)
		}})
	}
	if p.catScale.entries > 0 && (r.cfg.Systems == nil || r.cfg.Systems.MatchString("mosaik")) {
		out = append(out, r.scaleScenarios(p)...)
	}
	return out
}

// catalogTargets judges the catalog rows. Convergence: mosaik's median
// ≤ 1.0× memberlist's, for both metrics at each N.
func (res *Results) catalogTargets() []Target {
	var ts []Target
	for _, n := range []int{50, 100} {
		id := fmt.Sprintf("catalog/convergence/N=%d", n)
		for _, metric := range []string{"99 % of pairs known", "all nodes see all nodes"} {
			t := Target{Goal: fmt.Sprintf("catalog: discovery convergence at N = %d, %s ≤ 1.0× memberlist", n, metric), Measured: "not measured"}
			m, ml := res.find(id, metric, "mosaik"), res.find(id, metric, "memberlist")
			if m != nil && ml != nil && ml.Ratio != nil {
				var notes []string
				if len(m.Notes) > 0 {
					notes = append(notes, "mosaik: "+m.Notes[0])
				}
				if len(ml.Notes) > 0 {
					notes = append(notes, "memberlist: "+ml.Notes[0])
				}
				t.Measured = fmt.Sprintf("mosaik %s ms, memberlist %s ms (%.2f×)", fmtNum(m.Median), fmtNum(ml.Median), *ml.Ratio)
				if len(notes) > 0 {
					t.Measured += " (" + strings.Join(notes, "; ") + ")"
				}
				// A capped median is a lower bound: mosaik's cannot show
				// that it is within memberlist's (both capped is 1.00×,
				// and says nothing); memberlist's only makes the ratio an
				// upper bound.
				if medianCapped(m) {
					t.Measured += "; mosaik's median is the limit, its true time is longer"
					t.Met = boolp(false)
				} else {
					t.Met = boolp(*ml.Ratio <= 1)
				}
			}
			ts = append(ts, t)
		}
	}
	return append(ts, res.scaleTargets()...)
}

// medianCapped reports whether at least half of a discovery row's
// repetitions stopped at the limit (the note discoveryScenario sets), so
// that its median is the limit itself, or (half of an even count) the
// mean of the limit and a real time: a bound either way.
func medianCapped(r *Row) bool {
	for _, n := range r.Notes {
		var k, reps int
		if _, err := fmt.Sscanf(n, "%d/%d reps stopped", &k, &reps); err == nil && 2*k >= reps {
			return true
		}
	}
	return false
}
