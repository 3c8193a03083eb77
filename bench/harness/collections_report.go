package harness

import (
	"fmt"
	"strings"
)

// collectionsTargets judges the collections rows: Map inserts against
// JetStream R3 with memory storage, late-reader sync against a raw
// libp2p stream moving the state's bytes; Get and memory are reported.
func (res *Results) collectionsTargets() []Target {
	var ts []Target
	t := Target{Goal: "collections: Map insert latency p50 and p99 ≤ 1.0× JetStream R3 (memory)", Measured: "not measured"}
	var parts []string
	met := true
	for _, q := range []string{"p50", "p99"} {
		m, j := res.find("collections/insert", q, "mosaik"), res.find("collections/insert", q, "jetstream-r3-mem")
		if m == nil || j == nil || j.Median == 0 {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s: mosaik %s µs, JetStream %s µs (%.2f×)", q, fmtNum(m.Median), fmtNum(j.Median), m.Median/j.Median))
		met = met && m.Median <= j.Median
	}
	if len(parts) > 0 {
		t.Measured, t.Met = strings.Join(parts, "; "), boolp(met)
	}
	ts = append(ts, t)
	t = Target{Goal: "collections: Map inserts/s ≥ 1.0× JetStream R3 (memory) with 8 and 32 clients", Measured: "not measured"}
	parts, met = nil, true
	for _, n := range []int{8, 32} {
		id := fmt.Sprintf("collections/insert/%d-clients", n)
		if j := res.find(id, "rate", "jetstream-r3-mem"); j != nil && j.Ratio != nil {
			parts = append(parts, fmt.Sprintf("%d: %.2f×", n, *j.Ratio))
			met = met && *j.Ratio >= 1
		}
	}
	if len(parts) > 0 {
		t.Measured, t.Met = strings.Join(parts, ", "), boolp(met)
	}
	ts = append(ts, t)
	t = Target{Goal: "collections: late-reader sync ≥ 0.5× the throughput of a raw libp2p stream moving the same bytes (100 k and 1 M entries)", Measured: "not measured"}
	parts, met = nil, true
	for _, n := range []string{"100k", "1M"} {
		id := "collections/sync/" + n
		raw := res.find(id, "state throughput", "raw")
		if raw == nil || raw.Ratio == nil {
			continue
		}
		s := fmt.Sprintf("%s: %.3f× raw", n, *raw.Ratio)
		if m := res.find(id, "time", "mosaik"); m != nil {
			s += fmt.Sprintf(" (%s ms", fmtNum(m.Median))
			if b := res.find(id, "bytes received (host)", "mosaik"); b != nil {
				s += fmt.Sprintf(", %s MB received", fmtNum(b.Median))
			}
			s += ")"
		}
		parts = append(parts, s)
		met = met && *raw.Ratio >= 0.5
	}
	if len(parts) > 0 {
		if res.find("collections/sync/1M", "time", "mosaik") == nil {
			parts = append(parts, "1 M not in this mode")
		}
		t.Measured, t.Met = strings.Join(parts, "; "), boolp(met)
	}
	ts = append(ts, t)
	t = Target{Goal: "collections: local Get latency and allocations (reported)", Measured: "not measured"}
	t2 := Target{Goal: "collections: heap per entry of a replica at 1 M entries (reported)", Measured: "not measured"}
	for _, n := range []string{"1M", "100k"} {
		id := "collections/local/" + n
		g, a := res.find(id, "Get", "mosaik"), res.find(id, "Get allocations", "mosaik")
		if g != nil && a != nil && !t.Reported {
			t.Measured, t.Reported = fmt.Sprintf("%s ns/op, %s allocs/op at %s entries", fmtNum(g.Median), fmtNum(a.Median), n), true
		}
		if h := res.find(id, "heap per entry", "mosaik"); h != nil && !t2.Reported {
			t2.Measured, t2.Reported = fmt.Sprintf("%s B/entry at %s entries", fmtNum(h.Median), n), true
			if n != "1M" {
				t2.Measured += " (1 M only in the full run)"
			}
		}
	}
	return append(ts, t, t2)
}
