// Package harness runs mosaik streams and discovery side by side with a
// raw libp2p stream, gossipsub, NATS core and memberlist, all in one
// process on 127.0.0.1, and reports every row as the median, min and max
// of its repetitions with the ratio of mosaik to each peer.
//
// It lives in its own module (bench/go.mod) so that the benchmark-only
// dependencies (nats-server, nats.go, memberlist) never reach users of
// mosaik-go. Run it with `go run ./cmd/mosaik-bench` from bench/.
package harness

import (
	"context"
	"fmt"
	"io"
	"os"
	"regexp"
	"runtime"
	"strings"
	"time"
)

// Mode is a size of run.
type Mode string

const (
	Full  Mode = "full"  // every scenario, about 8 minutes on 2 cores
	Quick Mode = "quick" // smaller counts, discovery N ≤ 25: under 2 minutes
	Smoke Mode = "smoke" // one tiny repetition of a few scenarios (tests)
)

// MinReps is the least number of repetitions of a row (Smoke excepted).
const MinReps = 5

// Config selects what Run measures.
type Config struct {
	Mode     Mode
	Reps     int            // repetitions per row (at least MinReps unless Smoke)
	Only     *regexp.Regexp // scenarios to run (nil: all)
	Systems  *regexp.Regexp // systems to run (nil: all; for profiling one system)
	Progress io.Writer      // progress bar (nil: none)
	Command  string         // the command line, for the report
	// Measured, when set, is called as a measured section starts (by the
	// scenarios that mark theirs: collections sync) with the row id and
	// repetition, and the func it returns as the section ends: a CPU
	// profile of the section alone, without the set-up around it.
	Measured func(id string, rep int) (end func())
	// HeapMeasured, when set, is called right after a scenario measured
	// its live heap (catalog scale), while what it measured is still
	// alive: a heap profile of it.
	HeapMeasured func(id string, rep int)
}

// plan is the size of every scenario in a mode.
type plan struct {
	reps      int
	capDur    time.Duration // a flow repetition stops sending after this
	stall     time.Duration // a flow repetition gives up after this long without a datum
	tput      []flowCase
	fan       []flowCase
	lat       []latCase
	ovRate    int           // datums/s the overload publisher sends
	ovDur     time.Duration // for this long
	ovSize    int
	slowRate  int // datums/s the slow consumer processes while the publisher runs
	ovQuiet   time.Duration
	ovSystems []system
	firstOps  int
	discNs    []int
	discLimit time.Duration // full convergence is reported as at least this when slower
	repl      []replCase    // the groups rows
	replSeq   int           // sequential puts per latency repetition
	replDur   time.Duration // length of a throughput repetition
	colSizes  []int         // entries of the collections sync rows; the last also sizes the local row
	catConvNs []int         // N of the catalog/convergence rows (none in smoke mode)
	catLimit  time.Duration // their limit
	catScale  scaleCase     // the catalog/scale row (entries 0: none)
}

type flowCase struct {
	id    string
	subs  int
	size  int
	count int // datums per subscriber and repetition (the time cap may stop earlier)
}

type latCase struct {
	id   string
	rate int
	dur  time.Duration
}

func newPlan(m Mode, reps int) plan {
	p := plan{reps: reps, stall: 2 * time.Second, ovRate: 4000, ovSize: 1 << 10, slowRate: 500, ovQuiet: 300 * time.Millisecond,
		ovSystems: overloadSystems()}
	switch m {
	case Smoke:
		p.reps, p.capDur = 1, 300*time.Millisecond
		p.tput = []flowCase{{"throughput/1KiB", 1, 1 << 10, 5000}}
		p.lat = []latCase{{"latency/1000/s", 1000, 100 * time.Millisecond}}
		p.ovDur, p.ovSystems = 300*time.Millisecond, []system{mosaikSystem{}, gossipsubSystem{}, natsSystem{}}
		p.firstOps, p.discNs, p.discLimit = 2, []int{5}, 2*time.Second
		p.repl, p.replSeq, p.replDur = []replCase{{"groups/put", 1}}, 20, 200*time.Millisecond
	case Quick:
		p.capDur = 200 * time.Millisecond
		p.tput = []flowCase{{"throughput/64B", 1, 64, 250_000}, {"throughput/1KiB", 1, 1 << 10, 60_000}, {"throughput/64KiB", 1, 64 << 10, 1_500}}
		p.fan = fanCases(256, 80_000)
		p.lat = []latCase{{"latency/1000/s", 1000, 400 * time.Millisecond}, {"latency/10000/s", 10_000, 200 * time.Millisecond}}
		// 0.7 s at 4 000/s leaves a backlog of ≈ 2 450 datums at the slow
		// subscriber: more than every bound compared (2 048).
		p.ovDur, p.ovQuiet = 700*time.Millisecond, 200*time.Millisecond
		p.ovSystems = []system{mosaikSystem{}, gossipsubSystem{}, natsSystem{}, natsSystem{pending: 2048}}
		p.firstOps, p.discNs, p.discLimit = 4*reps, []int{10, 25}, 800*time.Millisecond
		p.repl, p.replSeq, p.replDur = replCases(), 1000, 700*time.Millisecond
		p.colSizes = []int{100_000}
		p.catConvNs, p.catLimit = []int{50, 100}, 10*time.Second
		p.catScale = scaleCase{entries: 10_000, small: 1_000, window: 10 * time.Second}
	default:
		p.capDur = 2 * time.Second
		p.tput = []flowCase{{"throughput/64B", 1, 64, 2_000_000}, {"throughput/1KiB", 1, 1 << 10, 500_000}, {"throughput/64KiB", 1, 64 << 10, 15_000}}
		p.fan = fanCases(256, 1_000_000)
		p.lat = []latCase{{"latency/1000/s", 1000, 3 * time.Second}, {"latency/10000/s", 10_000, time.Second}}
		p.ovDur = 2 * time.Second
		p.firstOps, p.discNs, p.discLimit = 4*reps, []int{10, 25, 50}, 10*time.Second
		p.repl, p.replSeq, p.replDur = replCases(), 5000, 2*time.Second
		p.colSizes = []int{100_000, 1_000_000}
		p.catConvNs, p.catLimit = []int{50, 100}, 10*time.Second
		p.catScale = scaleCase{entries: 10_000, small: 1_000, window: 30 * time.Second}
	}
	return p
}

// fanCases spreads total deliveries over N subscribers, N ∈ {1, 10, 50}.
func fanCases(size, total int) []flowCase {
	var cs []flowCase
	for _, n := range []int{1, 10, 50} {
		cs = append(cs, flowCase{fmt.Sprintf("fanout/N=%d", n), n, size, total / n})
	}
	return cs
}

// pick keeps the systems whose name matches re (all when re is nil).
func pick[S interface{ name() string }](re *regexp.Regexp, ss []S) []S {
	if re == nil {
		return ss
	}
	var out []S
	for _, s := range ss {
		if re.MatchString(s.name()) {
			out = append(out, s)
		}
	}
	return out
}

// The systems in every row, mosaik first.
func flowSystems() []system {
	return []system{mosaikSystem{}, rawSystem{}, gossipsubSystem{}, natsSystem{}}
}

// throughputSystems adds mosaik's borrowed-buffer consumer to the 1→1
// throughput rows.
func throughputSystems() []system {
	return []system{mosaikSystem{}, mosaikBorrowed{}, rawSystem{}, gossipsubSystem{}, natsSystem{}}
}

func overloadSystems() []system {
	return []system{mosaikSystem{}, mosaikDrop{}, gossipsubSystem{}, gossipsubSystem{defaults: true}, natsSystem{}, natsSystem{pending: 2048}}
}

func firstSystems() []firstDatumer {
	return []firstDatumer{mosaikSystem{}, rawSystem{}, gossipsubSystem{}, natsSystem{}}
}

func discoverers() []discoverer { return []discoverer{mosaikDiscovery{}, memberlistDiscovery{}} }

// scenario is one selectable unit of the run.
type scenario struct {
	id    string
	steps int
	run   func(ctx context.Context) error
}

// runner holds the state of one Run.
type runner struct {
	cfg     Config
	plan    plan
	res     *Results
	prog    *progress
	rows    map[string]*Row
	order   []string
	current string
}

// Run measures every selected scenario and returns the results. It stops
// at the first error (a scenario that cannot run is a harness bug, not a
// result).
func Run(ctx context.Context, cfg Config) (*Results, error) {
	if cfg.Mode == "" {
		cfg.Mode = Full
	}
	if cfg.Reps == 0 {
		cfg.Reps = MinReps
	}
	if cfg.Mode != Smoke && cfg.Reps < MinReps {
		return nil, fmt.Errorf("at least %d repetitions per row, got %d", MinReps, cfg.Reps)
	}
	r := &runner{cfg: cfg, plan: newPlan(cfg.Mode, cfg.Reps), rows: map[string]*Row{}}
	r.res = &Results{Mode: string(cfg.Mode), Reps: r.plan.reps, Command: cfg.Command, Started: time.Now().UTC(), Machine: machine()}
	r.res.Method = r.method()
	var sel []scenario
	for _, sc := range r.scenarios() {
		if cfg.Only == nil || cfg.Only.MatchString(sc.id) {
			sel = append(sel, sc)
		}
	}
	if len(sel) == 0 {
		return nil, fmt.Errorf("no scenario matches --only %v", cfg.Only)
	}
	total := 0
	for _, sc := range sel {
		total += sc.steps
	}
	r.prog = newProgress(cfg.Progress, total)
	start := time.Now()
	for _, sc := range sel {
		r.current = sc.id
		r.prog.begin(sc.id)
		if err := sc.run(ctx); err != nil {
			r.prog.finish()
			return nil, fmt.Errorf("%s: %w", sc.id, err)
		}
		runtime.GC()
	}
	r.prog.finish()
	r.res.Seconds = time.Since(start).Seconds()
	r.res.Machine.LoadAfter = loadAvg()
	for _, k := range r.order {
		r.res.Rows = append(r.res.Rows, *r.rows[k])
	}
	r.res.finish()
	return r.res, nil
}

func (r *runner) scenarios() []scenario {
	p := r.plan
	var out []scenario
	flowSteps := func(n int) int { return (p.reps + 1) * n }
	p.ovSystems = pick(r.cfg.Systems, p.ovSystems)
	for _, c := range p.tput {
		out = append(out, scenario{c.id, flowSteps(len(pick(r.cfg.Systems, throughputSystems()))), func(ctx context.Context) error { return r.flowScenario(ctx, c) }})
	}
	for _, c := range p.fan {
		out = append(out, scenario{c.id, flowSteps(len(pick(r.cfg.Systems, flowSystems()))), func(ctx context.Context) error { return r.flowScenario(ctx, c) }})
	}
	for _, c := range p.lat {
		out = append(out, scenario{c.id, flowSteps(len(pick(r.cfg.Systems, flowSystems()))), func(ctx context.Context) error { return r.latencyScenario(ctx, c) }})
	}
	out = append(out, scenario{"overload", p.reps * len(p.ovSystems), r.overloadScenario})
	out = append(out, scenario{"first-datum", len(pick(r.cfg.Systems, flowSystems())), r.firstScenario})
	for _, n := range p.discNs {
		id := fmt.Sprintf("discovery/N=%d", n)
		out = append(out, scenario{id, p.reps * len(pick(r.cfg.Systems, discoverers())), func(ctx context.Context) error { return r.discoveryScenario(ctx, id, n, p.discLimit) }})
	}
	out = append(out, r.catalogScenarios(p)...)
	out = append(out, r.replayScenarios(p)...)
	out = append(out, r.replicatedScenarios(p)...)
	out = append(out, r.sybilScenarios()...)
	return append(out, r.collectionsScenarios(p)...)
}

// replCases: sequential puts, then 8, 32 and 64 concurrent clients.
func replCases() []replCase {
	return []replCase{{"groups/put", 1}, {"groups/put/8-clients", 8}, {"groups/put/32-clients", 32}, {"groups/put/64-clients", 64}}
}

// sample records one repetition's value of a row.
func (r *runner) sample(scenario, metric, sys, unit string, better Better, v float64) *Row {
	k := scenario + "\x00" + metric + "\x00" + sys
	row, ok := r.rows[k]
	if !ok {
		row = &Row{Scenario: scenario, Metric: metric, System: sys, Unit: unit, Better: better}
		r.rows[k] = row
		r.order = append(r.order, k)
	}
	row.Samples = append(row.Samples, v)
	return row
}

type progress struct {
	w      io.Writer
	tty    bool
	total  int
	done   int
	start  time.Time
	scen   string
	lastLn int
}

func newProgress(w io.Writer, total int) *progress {
	p := &progress{w: w, total: total, start: time.Now()}
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			p.tty = true
		}
	}
	return p
}

func (p *progress) begin(id string) {
	p.scen = id
	p.draw("")
}

// step marks one unit done; what describes it.
func (p *progress) step(what string) {
	p.done++
	p.draw(what)
}

func (p *progress) draw(what string) {
	if p.w == nil {
		return
	}
	el := time.Since(p.start).Round(time.Second)
	frac := float64(p.done) / float64(max(p.total, 1))
	if !p.tty {
		if what != "" {
			fmt.Fprintf(p.w, "[%3d/%d %6s] %s %s\n", p.done, p.total, el, p.scen, what)
		}
		return
	}
	const width = 24
	n := int(frac * width)
	line := fmt.Sprintf("\r[%s%s] %3.0f%% %d/%d %s  %s %s", strings.Repeat("#", n), strings.Repeat(".", width-n), 100*frac, p.done, p.total, el, p.scen, what)
	if pad := p.lastLn - len(line); pad > 0 {
		line += strings.Repeat(" ", pad)
	}
	p.lastLn = len(line)
	fmt.Fprint(p.w, line)
}

func (p *progress) finish() {
	if p.w != nil && p.tty {
		fmt.Fprintln(p.w)
	}
}
