package harness

import (
	"context"
	"encoding/binary"
	"fmt"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync/atomic"
	"time"
)

// flight is the credit window per subscriber: mosaik's default producer
// queue (and consumer buffer), the same for every windowed system.
const flight = 1024

// opened is a system with its open session.
type opened struct {
	sys  system
	sess session
	sink *sink
}

// openAll opens one session per system; on failure it closes those opened.
func openAll(ctx context.Context, systems []system, o openOpts) ([]opened, error) {
	var out []opened
	for _, sys := range systems {
		s, err := sys.open(ctx, o)
		if err != nil {
			closeOpened(out)
			return nil, fmt.Errorf("%s: open: %w", sys.name(), err)
		}
		sk := newSink()
		s.start(sk.deliver)
		out = append(out, opened{sys, s, sk})
	}
	return out, nil
}

func closeOpened(os []opened) {
	for i := len(os) - 1; i >= 0; i-- {
		_ = os[i].sess.close()
	}
}

// rotate returns the sessions in an order that starts one further each
// repetition, so no system always runs first (or right after another).
func rotate(os []opened, rep int) []opened {
	k := rep % len(os)
	return append(slices.Clone(os[k:]), os[:k]...)
}

type flowResult struct {
	rate      float64 // delivered datums per second, all subscribers
	cpuPer    float64 // process CPU µs per delivered datum
	sent      int     // per subscriber
	delivered int64
}

// flowRep sends up to count datums of payload to every subscriber (or
// fewer when the time cap ends the sending) and waits for their delivery.
// Windowed systems take credits; bulk senders (raw) use their own
// backpressure.
func (r *runner) flowRep(ctx context.Context, o opened, subs, count int, payload []byte) (flowResult, error) {
	if rd, ok := o.sess.(readier); ok {
		if err := rd.ready(ctx); err != nil {
			return flowResult{}, err
		}
	}
	bulk, isBulk := o.sess.(bulkSender)
	var w *window
	if !isBulk {
		w = newWindow(subs, flight)
	}
	rp := newRep(subs, w, nil)
	o.sink.cur.Store(rp)
	defer o.sink.cur.Store(newRep(0, nil, nil))
	runtime.GC() // start every repetition with the same (empty) garbage
	cpu0, start := cpuTime(), time.Now()
	sent := 0
	if isBulk {
		if err := bulk.sendBulk(ctx, count, payload); err != nil {
			return flowResult{}, err
		}
		sent = count
	} else {
		deadline := start.Add(r.plan.capDur)
		actx, cancel := context.WithTimeout(ctx, r.plan.capDur+r.plan.stall)
		for sent < count {
			if sent%batch == 0 && sent > 0 && time.Now().After(deadline) {
				break
			}
			if err := w.acquire(actx, sent); err != nil {
				break // no credit for the stall time: datums were lost
			}
			if err := o.sess.send(ctx, payload); err != nil {
				cancel()
				return flowResult{}, fmt.Errorf("send: %w", err)
			}
			sent++
		}
		cancel()
	}
	last, _ := rp.await(ctx, int64(sent), r.plan.stall)
	cpu := cpuTime() - cpu0
	del := rp.total()
	el := last.Sub(start).Seconds()
	res := flowResult{sent: sent, delivered: del}
	if del > 0 && el > 0 {
		res.rate = float64(del) / el
		res.cpuPer = float64(cpu.Microseconds()) / float64(del)
	}
	return res, ctx.Err()
}

func (r *runner) flowScenario(ctx context.Context, c flowCase) error {
	systems := flowSystems()
	if strings.HasPrefix(c.id, "throughput/") {
		systems = throughputSystems()
	}
	if strings.HasPrefix(c.id, "replay/") {
		systems = replaySystems()
	}
	os, err := openAll(ctx, pick(r.cfg.Systems, systems), openOpts{subs: c.subs, mode: modeFlow})
	if err != nil {
		return err
	}
	defer closeOpened(os)
	payload := make([]byte, c.size)
	for i := range payload {
		payload[i] = byte(i)
	}
	// Warm-up (not recorded): connections, yamux windows, pools.
	for _, o := range os {
		if _, err := r.flowRep(ctx, o, c.subs, max(c.count/10, batch), payload); err != nil {
			return fmt.Errorf("%s warm-up: %w", o.sys.name(), err)
		}
		r.prog.step(o.sys.name() + " warm-up")
	}
	for rep := range r.plan.reps {
		for _, o := range rotate(os, rep) {
			res, err := r.flowRep(ctx, o, c.subs, c.count, payload)
			if err != nil {
				return fmt.Errorf("%s: %w", o.sys.name(), err)
			}
			unit := "datums/s"
			if c.subs > 1 {
				unit = "datums/s (sum)"
			}
			row := r.sample(c.id, "rate", o.sys.name(), unit, Higher, res.rate)
			if want := int64(res.sent) * int64(c.subs); res.delivered < want {
				row.addNote(fmt.Sprintf("rep %d: %d of %d datums delivered", rep+1, res.delivered, want))
			}
			if res.sent < c.count {
				row.addNote(fmt.Sprintf("time cap %v reached", r.plan.capDur))
			}
			r.sample(c.id, "cpu", o.sys.name(), "µs/datum", Lower, res.cpuPer)
			r.prog.step(fmt.Sprintf("%s rep %d/%d: %s datums/s", o.sys.name(), rep+1, r.plan.reps, fmtNum(res.rate)))
		}
	}
	return nil
}

// latRep sends rate datums/s of 64 B for dur, each carrying its send time
// (time.Now().UnixNano(), one process so one clock), on an absolute
// schedule, and returns the delays measured in the receiving goroutine.
func (r *runner) latRep(ctx context.Context, o opened, rate int, dur time.Duration) ([]float64, int, error) {
	if rd, ok := o.sess.(readier); ok {
		if err := rd.ready(ctx); err != nil {
			return nil, 0, err
		}
	}
	n := max(int(float64(rate)*dur.Seconds()), 1)
	lat := make([]float64, n)
	var rp *rep
	rp = newRep(1, nil, func(_ int, p []byte) {
		if len(p) < 8 {
			return
		}
		if i := rp.count(0); i < int64(n) { // only this goroutine counts
			lat[i] = float64(time.Now().UnixNano()-int64(binary.LittleEndian.Uint64(p))) / 1e3
		}
	})
	o.sink.cur.Store(rp)
	defer o.sink.cur.Store(newRep(0, nil, nil))
	runtime.GC()
	interval := time.Second / time.Duration(rate)
	start := time.Now()
	for i := range n {
		sleepUntil(start.Add(time.Duration(i) * interval))
		p := make([]byte, 64)
		binary.LittleEndian.PutUint64(p, uint64(time.Now().UnixNano()))
		if err := o.sess.send(ctx, p); err != nil {
			return nil, 0, fmt.Errorf("send: %w", err)
		}
	}
	rp.await(ctx, int64(n), r.plan.stall)
	got := int(min(rp.count(0), int64(n)))
	s := lat[:got]
	slices.Sort(s)
	return s, n - got, ctx.Err()
}

func (r *runner) latencyScenario(ctx context.Context, c latCase) error {
	os, err := openAll(ctx, pick(r.cfg.Systems, flowSystems()), openOpts{subs: 1, mode: modeFlow, flush: true})
	if err != nil {
		return err
	}
	defer closeOpened(os)
	for _, o := range os {
		if _, _, err := r.latRep(ctx, o, c.rate, min(c.dur/2, 200*time.Millisecond)); err != nil {
			return fmt.Errorf("%s warm-up: %w", o.sys.name(), err)
		}
		r.prog.step(o.sys.name() + " warm-up")
	}
	for rep := range r.plan.reps {
		for _, o := range rotate(os, rep) {
			s, lost, err := r.latRep(ctx, o, c.rate, c.dur)
			if err != nil {
				return fmt.Errorf("%s: %w", o.sys.name(), err)
			}
			if len(s) == 0 {
				return fmt.Errorf("%s: no datum received", o.sys.name())
			}
			for _, q := range []struct {
				metric string
				q      float64
			}{{"p50", 0.50}, {"p99", 0.99}, {"p999", 0.999}} {
				row := r.sample(c.id, q.metric, o.sys.name(), "µs", Lower, percentile(s, q.q))
				if lost > 0 && q.metric == "p50" {
					row.addNote(fmt.Sprintf("rep %d: %d datums lost", rep+1, lost))
				}
			}
			r.prog.step(fmt.Sprintf("%s rep %d/%d: p99 %s µs", o.sys.name(), rep+1, r.plan.reps, fmtNum(percentile(s, 0.99))))
		}
	}
	return nil
}

// overloadRep: one fast subscriber (0) and one slow subscriber (1) that
// processes at most slowRate datums/s (a fixed service time per datum)
// while the publisher sends ovRate datums/s of ovSize bytes for ovDur;
// once the publisher stops, the slow subscriber catches up at full speed,
// so only datums a system dropped (not those it still buffered) count as
// lost. The counts are taken once no datum arrived for ovQuiet, and the
// session's loss signals are compared before and after.
type overloadResult struct {
	fast, slow, silent, pubRate float64 // % delivered, % delivered, % lost without notice, datums/s
	reported                    bool
	how                         string
}

func (r *runner) overloadRep(ctx context.Context, o opened) (overloadResult, error) {
	var res overloadResult
	if rd, ok := o.sess.(readier); ok {
		if err := rd.ready(ctx); err != nil {
			return res, err
		}
	}
	var before []signal
	sg, hasSignals := o.sess.(signaler)
	if hasSignals {
		before = sg.signals()
	}
	service := time.Second / time.Duration(r.plan.slowRate)
	var (
		over atomic.Bool
		due  time.Time // touched by the slow subscriber's goroutine only
	)
	rp := newRep(2, nil, func(sub int, _ []byte) {
		if sub != 1 || over.Load() {
			return
		}
		if now := time.Now(); due.Before(now) {
			due = now
		}
		due = due.Add(service)
		sleepUntil(due)
	})
	o.sink.cur.Store(rp)
	defer o.sink.cur.Store(newRep(0, nil, nil))
	runtime.GC()
	payload := make([]byte, r.plan.ovSize)
	n := int(float64(r.plan.ovRate) * r.plan.ovDur.Seconds())
	interval := time.Second / time.Duration(r.plan.ovRate)
	sendErrs := 0
	var firstErr error
	start := time.Now()
	for i := range n {
		sleepUntil(start.Add(time.Duration(i) * interval))
		if err := o.sess.send(ctx, payload); err != nil {
			if ctx.Err() != nil {
				return res, ctx.Err()
			}
			sendErrs++
			if firstErr == nil {
				firstErr = err
			}
		}
	}
	res.pubRate = float64(n) / time.Since(start).Seconds()
	over.Store(true)
	rp.quiesce(ctx, int64(n), r.plan.ovQuiet)
	f, sl := rp.count(0), rp.count(1)
	res.fast, res.slow = 100*float64(f)/float64(n), 100*float64(sl)/float64(n)
	var seen, hidden []string
	if hasSignals {
		for i, a := range sg.signals() {
			d := a.value
			if a.cumulative {
				d -= before[i].value
			}
			if d == 0 {
				continue
			}
			if a.visible {
				res.reported = true
				seen = append(seen, fmt.Sprintf("%s +%d", a.name, d))
			} else {
				hidden = append(hidden, fmt.Sprintf("%s +%d", a.name, d))
			}
		}
	}
	if sendErrs > 0 {
		res.reported = true
		seen = append(seen, fmt.Sprintf("Send failed %d times (%v)", sendErrs, firstErr))
	}
	lost := 2*int64(n) - f - sl
	switch {
	case lost <= 0:
		res.how = "no loss"
	case res.reported:
		res.how = "told: " + strings.Join(seen, ", ")
	default:
		res.how = "not told"
		if len(hidden) > 0 {
			res.how += " (for the record: " + strings.Join(hidden, ", ") + ")"
		}
		res.silent = 100 * float64(lost) / float64(2*n)
	}
	return res, ctx.Err()
}

func (r *runner) overloadScenario(ctx context.Context) error {
	os, err := openAll(ctx, r.plan.ovSystems, openOpts{subs: 2, mode: modeOverload})
	if err != nil {
		return err
	}
	defer closeOpened(os)
	told := map[string]int{}
	for rep := range r.plan.reps {
		for _, o := range rotate(os, rep) {
			name := o.sys.name()
			res, err := r.overloadRep(ctx, o)
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			const id = "overload"
			r.sample(id, "slow consumer delivered", name, "%", Neither, res.slow)
			r.sample(id, "fast consumer delivered", name, "%", Higher, res.fast)
			row := r.sample(id, "lost without notice", name, "% of due", Lower, res.silent)
			r.sample(id, "publisher rate", name, "datums/s", Neither, res.pubRate)
			if res.reported {
				told[name]++
			}
			row.setNote(fmt.Sprintf("loss signalled in %d/%d reps; last rep: %s", told[name], rep+1, res.how))
			r.prog.step(fmt.Sprintf("%s rep %d/%d: slow %.1f%% fast %.1f%% (%s)", name, rep+1, r.plan.reps, res.slow, res.fast, res.how))
		}
	}
	return nil
}

func (r *runner) firstScenario(ctx context.Context) error {
	for _, f := range firstSystems() {
		name := f.(system).name()
		if r.cfg.Systems != nil && !r.cfg.Systems.MatchString(name) {
			continue
		}
		err := f.firstDatum(ctx, r.plan.firstOps, func(d time.Duration) {
			r.sample("first-datum", "subscribe → first datum", name, "ms", Lower, float64(d.Microseconds())/1e3)
		})
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		r.prog.step(name)
	}
	return nil
}

func (r *runner) discoveryScenario(ctx context.Context, id string, n int, limit time.Duration) error {
	ds := pick(r.cfg.Systems, discoverers())
	capped, capped99 := map[string]int{}, map[string]int{}
	for rep := range r.plan.reps {
		for k := range ds {
			d := ds[(k+rep)%len(ds)]
			// Every repetition starts with the heap's free pages given
			// back to the OS, as a fresh process starts. Without it a
			// repetition after one of the same system reused the pages
			// that one had touched, while one after the other system's
			// (whose rep lasts the whole limit, time enough for the
			// scavenger) or the first of the run touched them anew: at
			// N = 100 mosaik's first touches before 99 % of pairs were
			// about 32 000 page faults, 0.5 s of CPU and 250-300 ms of the
			// time, so its median hung on the systems' order.
			debug.FreeOSMemory()
			c, err := d.converge(ctx, n, limit)
			if err != nil {
				return err
			}
			ms := func(t time.Duration) float64 { return float64(t.Microseconds()) / 1e3 }
			row99 := r.sample(id, "99 % of pairs known", d.name(), "ms", Lower, ms(c.p99))
			row := r.sample(id, "all nodes see all nodes", d.name(), "ms", Lower, ms(c.all))
			// Where the 99 % time goes: starting the nodes, and the spread
			// after the last start (not judged: the targets are on the
			// two times above).
			r.sample(id, "last node started", d.name(), "ms", Lower, ms(c.started))
			if !c.capped99 {
				r.sample(id, "99 % of pairs known, after the last start", d.name(), "ms", Lower, ms(max(c.p99-c.started, 0)))
				// What the 99 % time cost the process (not judged).
				r.sample(id, "CPU used to 99 % of pairs", d.name(), "ms", Lower, ms(c.cpu99))
				r.sample(id, "page faults to 99 % of pairs", d.name(), "faults", Lower, float64(c.faults99))
			}
			if c.capped {
				capped[d.name()]++
			}
			if c.capped99 {
				capped99[d.name()]++
			}
			note := func(k int) string {
				return fmt.Sprintf("%d/%d reps stopped at the %v limit (counted as %v: the true time is longer)", k, rep+1, limit, limit)
			}
			if k := capped[d.name()]; k > 0 {
				row.setNote(note(k))
			}
			if k := capped99[d.name()]; k > 0 {
				row99.setNote(note(k))
			}
			r.prog.step(fmt.Sprintf("%s rep %d/%d: 99%% %s ms, all %s ms", d.name(), rep+1, r.plan.reps, fmtNum(ms(c.p99)), fmtNum(ms(c.all))))
			runtime.GC()
		}
	}
	return nil
}
