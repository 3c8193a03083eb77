package harness

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"time"
)

// Better says which direction of a metric is good.
type Better string

const (
	Higher  Better = "higher"
	Lower   Better = "lower"
	Neither Better = ""
)

// Row is one (scenario, metric, system) line of the table.
type Row struct {
	Scenario string    `json:"scenario"`
	Metric   string    `json:"metric"`
	System   string    `json:"system"`
	Unit     string    `json:"unit"`
	Better   Better    `json:"better,omitempty"`
	Median   float64   `json:"median"`
	Min      float64   `json:"min"`
	Max      float64   `json:"max"`
	Reps     int       `json:"reps"`
	Samples  []float64 `json:"samples"`
	// Ratio is mosaik's median ÷ this system's median in the same
	// scenario and metric (absent where it means nothing).
	Ratio *float64 `json:"mosaik_ratio,omitempty"`
	Notes []string `json:"notes,omitempty"`
}

func (r *Row) addNote(s string) {
	if !slices.Contains(r.Notes, s) {
		r.Notes = append(r.Notes, s)
	}
}

func (r *Row) setNote(s string) { r.Notes = []string{s} }

// Target is one goal of the issue, judged from the rows.
type Target struct {
	Goal     string `json:"goal"`
	Measured string `json:"measured"`
	Met      *bool  `json:"met"` // nil: not measured in this run, or only reported
	// Reported: a goal that asks for numbers, not a verdict, was
	// measured (Met stays nil; results.md says "reported").
	Reported bool `json:"reported,omitempty"`
}

// Machine describes where the run happened.
type Machine struct {
	CPU        string            `json:"cpu"`
	CPUs       int               `json:"cpus"`
	MemoryGiB  float64           `json:"memory_gib"`
	OS         string            `json:"os"`
	Go         string            `json:"go"`
	LoadBefore string            `json:"loadavg_before"`
	LoadAfter  string            `json:"loadavg_after"`
	Modules    map[string]string `json:"modules"`
}

// Results is everything one run measured.
type Results struct {
	Command string    `json:"command"`
	Mode    string    `json:"mode"`
	Reps    int       `json:"reps"`
	Started time.Time `json:"started"`
	Seconds float64   `json:"seconds"`
	Machine Machine   `json:"machine"`
	Method  []string  `json:"method"`
	Rows    []Row     `json:"rows"`
	Targets []Target  `json:"targets"`
}

// finish orders the rows (by scenario, then metric, then system, each in
// order of first appearance), and computes the summaries, the ratios and
// the targets.
func (res *Results) finish() {
	first := func(key func(Row) string) map[string]int {
		m := map[string]int{}
		for _, r := range res.Rows {
			if _, ok := m[key(r)]; !ok {
				m[key(r)] = len(m)
			}
		}
		return m
	}
	sc := first(func(r Row) string { return r.Scenario })
	me := first(func(r Row) string { return r.Scenario + "\x00" + r.Metric })
	sy := first(func(r Row) string { return r.System })
	slices.SortStableFunc(res.Rows, func(a, b Row) int {
		if c := sc[a.Scenario] - sc[b.Scenario]; c != 0 {
			return c
		}
		if c := me[a.Scenario+"\x00"+a.Metric] - me[b.Scenario+"\x00"+b.Metric]; c != 0 {
			return c
		}
		return sy[a.System] - sy[b.System]
	})
	for i := range res.Rows {
		r := &res.Rows[i]
		r.Median, r.Min, r.Max = summary(r.Samples)
		r.Reps = len(r.Samples)
	}
	systems := map[string]map[string]bool{} // scenario → systems in it
	for _, r := range res.Rows {
		if systems[r.Scenario] == nil {
			systems[r.Scenario] = map[string]bool{}
		}
		systems[r.Scenario][r.System] = true
	}
	for i := range res.Rows {
		r := &res.Rows[i]
		if r.Scenario == "overload" || len(systems[r.Scenario]) < 2 {
			continue // delivery shares of different policies, or mosaik alone: no ratio
		}
		if m := res.find(r.Scenario, r.Metric, "mosaik"); m != nil && r.Median != 0 && !math.IsNaN(r.Median) {
			v := m.Median / r.Median
			r.Ratio = &v
		}
	}
	res.Targets = append(res.targets(), res.replayTargets()...)
}

func (res *Results) find(scenario, metric, system string) *Row {
	for i := range res.Rows {
		r := &res.Rows[i]
		if r.Scenario == scenario && r.Metric == metric && r.System == system {
			return r
		}
	}
	return nil
}

func boolp(b bool) *bool { return &b }

func (res *Results) targets() []Target {
	var ts []Target
	// 1. ≥ 80 % of raw libp2p at 1 KiB.
	// Judged on the borrowed-buffer consumer (streams.BorrowedBytes), the
	// API meant for throughput; the default Bytes consumer is shown too.
	t := Target{Goal: "1→1 throughput at 1 KiB ≥ 80 % of raw libp2p", Measured: "not measured"}
	if raw := res.find("throughput/1KiB", "rate", "raw"); raw != nil && raw.Median > 0 {
		var parts []string
		for _, sys := range []string{"mosaik-borrowed", "mosaik"} {
			if m := res.find("throughput/1KiB", "rate", sys); m != nil {
				ratio := m.Median / raw.Median
				parts = append(parts, fmt.Sprintf("%s %.0f %%", sys, 100*ratio))
				if t.Met == nil {
					t.Met = boolp(ratio >= 0.8)
				}
			}
		}
		if len(parts) > 0 {
			t.Measured = strings.Join(parts, ", ") + " of raw"
		}
	}
	ts = append(ts, t)
	// 2. ≥ 5× gossipsub 1→1 throughput (every size).
	t = Target{Goal: "1→1 throughput ≥ 5× gossipsub (64 B, 1 KiB, 64 KiB)", Measured: "not measured"}
	var parts []string
	met := true
	for _, sz := range []string{"64B", "1KiB", "64KiB"} {
		if r := res.find("throughput/"+sz, "rate", "gossipsub"); r != nil && r.Ratio != nil {
			parts = append(parts, fmt.Sprintf("%s: %.1f×", sz, *r.Ratio))
			met = met && *r.Ratio >= 5
		}
	}
	if len(parts) > 0 {
		t.Measured, t.Met = strings.Join(parts, ", "), boolp(met)
	}
	ts = append(ts, t)
	// 3. p99 latency at 1 000/s no worse than gossipsub.
	t = Target{Goal: "p99 latency at 1 000 datums/s ≤ gossipsub's", Measured: "not measured"}
	m, g := res.find("latency/1000/s", "p99", "mosaik"), res.find("latency/1000/s", "p99", "gossipsub")
	if m != nil && g != nil {
		t.Measured = fmt.Sprintf("mosaik %s µs, gossipsub %s µs", fmtNum(m.Median), fmtNum(g.Median))
		t.Met = boolp(m.Median <= g.Median)
	}
	ts = append(ts, t)
	// 4. Zero unreported loss (where gossipsub loses silently).
	t = Target{Goal: "zero unreported loss under overload (gossipsub loses silently)", Measured: "not measured"}
	var mos []string
	silent := 0.0
	found := false
	for _, sys := range []string{"mosaik", "mosaik-drop"} {
		if r := res.find("overload", "lost without notice", sys); r != nil {
			found = true
			silent = max(silent, r.Max)
			mos = append(mos, fmt.Sprintf("%s max %.2f %%", sys, r.Max))
		}
	}
	if found {
		for _, sys := range []string{"gossipsub", "gossipsub-default"} {
			if r := res.find("overload", "lost without notice", sys); r != nil {
				mos = append(mos, fmt.Sprintf("%s median %.1f %%", sys, r.Median))
			}
		}
		t.Measured = "silently lost: " + strings.Join(mos, ", ")
		t.Met = boolp(silent == 0)
	}
	ts = append(ts, t)
	// 5. Discovery within 2× memberlist at N = 50.
	t = Target{Goal: "discovery convergence at N = 50 within 2× memberlist", Measured: "not measured (N = 50 is not in this mode)"}
	if r := res.find("discovery/N=50", "all nodes see all nodes", "memberlist"); r != nil && r.Ratio != nil {
		t.Measured = fmt.Sprintf("all nodes see all nodes: %.2f× memberlist", *r.Ratio)
		if len(r.Notes) > 0 {
			t.Measured += " (memberlist: " + r.Notes[0] + ")"
		}
		if r99 := res.find("discovery/N=50", "99 % of pairs known", "memberlist"); r99 != nil && r99.Ratio != nil {
			t.Measured += fmt.Sprintf("; 99 %% of pairs known: %.2f×", *r99.Ratio)
		}
		met := *r.Ratio <= 2
		// A mosaik median at the limit is a bound, not a time: the ratio
		// then says nothing (as the catalog convergence targets judge).
		if m := res.find("discovery/N=50", "all nodes see all nodes", "mosaik"); m != nil && medianCapped(m) {
			t.Measured += "; mosaik's median stopped at the limit"
			met = false
		}
		t.Met = boolp(met)
	}
	ts = append(ts, t)
	ts = append(ts, res.costTargets()...)
	ts = append(ts, res.groupsTargets()...)
	ts = append(ts, res.catalogTargets()...)
	ts = append(ts, res.sybilTargets()...)
	return append(ts, res.collectionsTargets()...)
}

// groupsTargets judges the groups rows: mosaik (in-memory log, Execute on
// the leader) against JetStream R3 with memory storage.
func (res *Results) groupsTargets() []Target {
	var ts []Target
	t := Target{Goal: "groups: sequential put latency p50 and p99 ≤ 1.0× JetStream R3 (memory)", Measured: "not measured"}
	var parts []string
	met := true
	for _, q := range []string{"p50", "p99"} {
		m, j := res.find("groups/put", q, "mosaik"), res.find("groups/put", q, "jetstream-r3-mem")
		if m == nil || j == nil || j.Median == 0 {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s: mosaik %s µs, JetStream %s µs (%.2f×)", q, fmtNum(m.Median), fmtNum(j.Median), m.Median/j.Median))
		met = met && m.Median <= j.Median
	}
	if r := res.find("groups/put", "p50", "raw-rtt"); r != nil && len(parts) > 0 {
		parts = append(parts, fmt.Sprintf("raw libp2p round trip p50 %s µs", fmtNum(r.Median)))
	}
	if len(parts) > 0 {
		t.Measured, t.Met = strings.Join(parts, "; "), boolp(met)
	}
	ts = append(ts, t)
	// Durable against durable: data dirs (a WAL, fsync per Ready) against
	// JetStream's file storage with an fsync per write (sync_interval:
	// always). JetStream's default file storage syncs every 2 minutes, so
	// an acknowledged put can be lost on a power cut; it is reported
	// beside, not judged against.
	t = Target{Goal: "groups: durable sequential put latency p50 and p99 ≤ 1.0× JetStream R3 (file, fsync per write)", Measured: "not measured"}
	parts, met = nil, true
	for _, q := range []string{"p50", "p99"} {
		m, j := res.find("groups/put", q, "mosaik-durable"), res.find("groups/put", q, "jetstream-r3-file-sync")
		if m == nil || j == nil || j.Median == 0 {
			continue
		}
		part := fmt.Sprintf("%s: mosaik-durable %s µs, JetStream file+fsync %s µs (%.2f×)", q, fmtNum(m.Median), fmtNum(j.Median), m.Median/j.Median)
		if d := res.find("groups/put", q, "jetstream-r3-file"); d != nil && d.Median > 0 {
			part += fmt.Sprintf(" [JetStream file, default 2 min sync: %s µs]", fmtNum(d.Median))
		}
		parts = append(parts, part)
		met = met && m.Median <= j.Median
	}
	if len(parts) > 0 {
		t.Measured, t.Met = strings.Join(parts, "; "), boolp(met)
	}
	ts = append(ts, t)
	t = Target{Goal: "groups: puts/s ≥ 1.0× JetStream R3 (memory) with 8, 32 and 64 clients", Measured: "not measured"}
	parts, met = nil, true
	for _, n := range []int{8, 32, 64} {
		id := fmt.Sprintf("groups/put/%d-clients", n)
		if j := res.find(id, "rate", "jetstream-r3-mem"); j != nil && j.Ratio != nil {
			parts = append(parts, fmt.Sprintf("%d: %.2f×", n, *j.Ratio))
			met = met && *j.Ratio >= 1
		}
	}
	if len(parts) > 0 {
		t.Measured, t.Met = strings.Join(parts, ", "), boolp(met)
	}
	ts = append(ts, t)
	t = Target{Goal: "groups: failover (leader closed → next commit through a survivor) ≤ 3 s", Measured: "not measured"}
	parts, met = nil, true
	for _, m := range []string{"leader node closed", "leader host closed, no departure"} {
		if r := res.find("groups/failover", m, "mosaik"); r != nil {
			parts = append(parts, fmt.Sprintf("%s: median %s ms, max %s ms", m, fmtNum(r.Median), fmtNum(r.Max)))
			met = met && r.Median <= 3000
		}
	}
	if len(parts) > 0 {
		t.Measured, t.Met = strings.Join(parts, "; "), boolp(met)
	}
	ts = append(ts, t)
	t = Target{Goal: "groups: catch-up of a new member (time and bytes reported)", Measured: "not measured"}
	if r := res.find("groups/catch-up", "time", "mosaik"); r != nil {
		t.Measured = fmt.Sprintf("%s ms", fmtNum(r.Median))
		for _, m := range []string{"bytes received (host)", "bytes received (bonds)"} {
			if b := res.find("groups/catch-up", m, "mosaik"); b != nil {
				t.Measured += fmt.Sprintf(", %s %s MB", m, fmtNum(b.Median))
			}
		}
		t.Reported = true
	}
	return append(ts, t)
}

func machine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), OS: runtime.GOOS + "/" + runtime.GOARCH, Go: runtime.Version(), LoadBefore: loadAvg(), Modules: map[string]string{}}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
		_ = f.Close()
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb float64
		if _, err := fmt.Sscanf(string(b), "MemTotal: %f kB", &kb); err == nil {
			m.MemoryGiB = math.Round(kb/(1<<20)*10) / 10
		}
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			switch d.Path {
			case "github.com/libp2p/go-libp2p", "github.com/libp2p/go-libp2p-pubsub", "github.com/libp2p/go-libp2p-kad-dht",
				"github.com/libp2p/go-yamux/v5", "github.com/nats-io/nats-server/v2", "github.com/nats-io/nats.go", "github.com/hashicorp/memberlist":
				m.Modules[d.Path] = d.Version
			}
		}
	}
	return m
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// WriteJSON writes the results as indented JSON.
func (res *Results) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(res)
}

// fmtNum prints 3 significant digits, with k / M above 10 000.
func fmtNum(v float64) string {
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return "–"
	case math.Abs(v) >= 1e6:
		return sig(v/1e6) + " M"
	case math.Abs(v) >= 1e4:
		return sig(v/1e3) + " k"
	}
	return sig(v)
}

func sig(v float64) string {
	a := math.Abs(v)
	switch {
	case a == 0:
		return "0"
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	case a >= 1:
		return fmt.Sprintf("%.2f", v)
	}
	return fmt.Sprintf("%.3g", v)
}

func fmtRatio(r *float64) string {
	if r == nil || math.IsNaN(*r) || math.IsInf(*r, 0) {
		return ""
	}
	switch {
	case *r >= 10:
		return fmt.Sprintf("%.0f×", *r)
	case *r >= 0.1:
		return fmt.Sprintf("%.2f×", *r)
	}
	return fmt.Sprintf("%.3f×", *r)
}

func arrow(b Better) string {
	switch b {
	case Higher:
		return "↑"
	case Lower:
		return "↓"
	}
	return ""
}

// WriteMarkdown writes the table, the targets and the method.
func (res *Results) WriteMarkdown(w io.Writer) error {
	bw := bufio.NewWriter(w)
	p := func(format string, a ...any) { fmt.Fprintf(bw, format, a...) }
	p("# mosaik-bench results\n\n")
	p("- command: `%s`\n", res.Command)
	p("- mode: %s, %d repetition(s) per row; run took %.0f s, started %s\n", res.Mode, res.Reps, res.Seconds, res.Started.Format(time.RFC3339))
	mc := res.Machine
	p("- machine: %s, %d CPUs, %.1f GiB, %s, %s; load average %s before, %s after\n", mc.CPU, mc.CPUs, mc.MemoryGiB, mc.OS, mc.Go, mc.LoadBefore, mc.LoadAfter)
	var mods []string
	for k, v := range mc.Modules {
		mods = append(mods, k+" "+v)
	}
	slices.Sort(mods)
	p("- modules: %s\n\n", strings.Join(mods, ", "))
	p("Each row is the median of its repetitions, with min and max. **mosaik ÷ system** is mosaik's median divided by\n")
	p("that system's, in the same scenario and metric: for ↑ rows above 1 is better for mosaik, for ↓ rows below 1.\n\n")
	p("## Results\n\n")
	p("| scenario | metric | system | median | min | max | unit | | mosaik ÷ system | note |\n")
	p("|---|---|---|---:|---:|---:|---|---|---:|---|\n")
	prev, prevMetric := "", ""
	for _, r := range res.Rows {
		sc, metric := r.Scenario, r.Metric
		if sc == prev {
			sc = ""
			if metric == prevMetric {
				metric = ""
			}
		}
		prev, prevMetric = r.Scenario, r.Metric
		sys := r.System
		if strings.HasPrefix(sys, "mosaik") {
			sys = "**" + sys + "**"
		}
		p("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", sc, metric, sys, fmtNum(r.Median), fmtNum(r.Min), fmtNum(r.Max),
			r.Unit, arrow(r.Better), fmtRatio(r.Ratio), strings.ReplaceAll(strings.Join(r.Notes, "; "), "|", "/"))
	}
	p("\n## Targets\n\n| target | measured | met |\n|---|---|---|\n")
	for _, t := range res.Targets {
		met := "not measured"
		if t.Reported {
			met = "reported"
		}
		if t.Met != nil {
			met = "**not met**"
			if *t.Met {
				met = "**met**"
			}
		}
		p("| %s | %s | %s |\n", t.Goal, t.Measured, met)
	}
	p("\n## Method\n\n")
	for _, m := range res.Method {
		p("- %s\n", m)
	}
	return bw.Flush()
}
