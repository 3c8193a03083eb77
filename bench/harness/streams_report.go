package harness

import (
	"fmt"
	"strings"
)

// costTargets judges the cost-per-datum goals of issue 20 on the
// throughput, fan-out and latency rows: mosaik (the Bytes consumer, which
// owns every datum) against raw libp2p and NATS core, measured in the same
// run.
func (res *Results) costTargets() []Target {
	var ts []Target
	t := Target{Goal: "streams: 1→1 throughput at 64 B ≥ 0.6× raw libp2p", Measured: "not measured"}
	if raw := res.find("throughput/64B", "rate", "raw"); raw != nil && raw.Median > 0 {
		var parts []string
		for _, sys := range []string{"mosaik", "mosaik-borrowed"} {
			if m := res.find("throughput/64B", "rate", sys); m != nil {
				ratio := m.Median / raw.Median
				parts = append(parts, fmt.Sprintf("%s %.2f×", sys, ratio))
				if t.Met == nil {
					t.Met = boolp(ratio >= 0.6)
				}
			}
		}
		if len(parts) > 0 {
			t.Measured = strings.Join(parts, ", ") + " raw"
		}
	}
	ts = append(ts, t)

	t = Target{Goal: "streams: fan-out at N = 1, 10, 50 ≥ 0.7× raw libp2p and ≥ 1.0× NATS core", Measured: "not measured"}
	var parts []string
	met, seen := true, 0
	for _, n := range []string{"1", "10", "50"} {
		sc := "fanout/N=" + n
		m := res.find(sc, "rate", "mosaik")
		if m == nil {
			continue
		}
		var vs []string
		for _, peer := range []struct {
			sys  string
			want float64
		}{{"raw", 0.7}, {"nats", 1.0}} {
			r := res.find(sc, "rate", peer.sys)
			if r == nil || r.Median <= 0 {
				continue
			}
			ratio := m.Median / r.Median
			vs = append(vs, fmt.Sprintf("%.2f× %s", ratio, peer.sys))
			met = met && ratio >= peer.want
			seen++
		}
		if len(vs) > 0 {
			parts = append(parts, "N="+n+": "+strings.Join(vs, ", "))
		}
	}
	if seen > 0 {
		t.Measured, t.Met = strings.Join(parts, "; "), boolp(met)
	}
	ts = append(ts, t)

	t = Target{Goal: "streams: p999 latency at 10 000 datums/s ≤ 2× raw libp2p's", Measured: "not measured"}
	m, r := res.find("latency/10000/s", "p999", "mosaik"), res.find("latency/10000/s", "p999", "raw")
	if m != nil && r != nil && r.Median > 0 {
		t.Measured = fmt.Sprintf("mosaik %s µs, raw %s µs (%.2f×)", fmtNum(m.Median), fmtNum(r.Median), m.Median/r.Median)
		t.Met = boolp(m.Median <= 2*r.Median)
	}
	return append(ts, t)
}
