package harness

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mosaik-go/mosaik/catalog/discovery"
	"github.com/mosaik-go/mosaik/node"
	"github.com/mosaik-go/mosaik/streams"
)

// The replay rows (issue 20): the steady-state cost of a replay window
// (mosaik with and without one, same run, alternating repetitions), the
// time a consumer takes to resume after a 2 s outage at 10 000 datums/s,
// and the memory one datum held in the window costs.

// benchReplay is the window of the mosaik-replay system and of the resume
// row: the example, far more than 2 s at 10 000/s.
var benchReplay = streams.Replay{Datums: 100_000, Bytes: 64 << 20, Age: time.Minute}

// mosaikReplay is mosaik with a replay window on the producer.
type mosaikReplay struct{ mosaikSystem }

func (mosaikReplay) name() string { return "mosaik-replay" }

func (s mosaikReplay) open(ctx context.Context, o openOpts) (session, error) {
	o.variant = "replay"
	return s.mosaikSystem.open(ctx, o)
}

func replaySystems() []system { return []system{mosaikSystem{}, mosaikReplay{}} }

const (
	replayRate = 10_000          // datums/s during the resume row
	replayCut  = 2 * time.Second // how long the consumer is away
)

func (r *runner) replayScenarios(p plan) []scenario {
	var out []scenario
	for _, c := range p.tput {
		if c.id == "throughput/64B" || c.id == "throughput/1KiB" {
			c.id = "replay/" + c.id
			out = append(out, scenario{c.id, (p.reps + 1) * len(replaySystems()), func(ctx context.Context) error { return r.flowScenario(ctx, c) }})
		}
	}
	out = append(out, scenario{"replay/resume", p.reps, r.resumeScenario})
	return append(out, scenario{"replay/memory", 1, r.replayMemoryScenario})
}

// resumeScenario: a producer sends 64 B datums at 10 000/s on an absolute
// schedule (it stays online without consumers); a consumer on another node
// reads them, closes, and 2 s later a new consumer starts with
// WithResumeFrom(the positions saved at close). The row is the time from
// the new consumer's creation until it has received every datum sent
// before it was created (the 20 000 missed included), i.e. until it is
// caught up; every datum must arrive exactly once.
func (r *runner) resumeScenario(ctx context.Context) error {
	for rep := range r.plan.reps {
		took, missed, replayed, err := r.resumeRep(ctx)
		if err != nil {
			return err
		}
		row := r.sample("replay/resume", "time to catch up after a 2 s cut at 10 000/s", "mosaik", "ms", Lower, float64(took.Microseconds())/1e3)
		if missed > 0 {
			row.addNote(fmt.Sprintf("rep %d: %d datums missed", rep+1, missed))
		}
		r.sample("replay/resume", "datums missed", "mosaik", "datums", Lower, float64(missed))
		r.sample("replay/resume", "datums resent from the window", "mosaik", "datums", Higher, float64(replayed))
		r.prog.step(fmt.Sprintf("rep %d/%d: caught up in %v, %d missed", rep+1, r.plan.reps, took.Round(time.Millisecond), missed))
	}
	return nil
}

func (r *runner) resumeRep(ctx context.Context) (took time.Duration, missed uint64, replayed uint64, err error) {
	hs, err := newHosts(2)
	if err != nil {
		return 0, 0, 0, err
	}
	defer func() { err = errors.Join(err, closeHosts(hs)) }()
	net := freshNetwork()
	dp := discovery.DefaultParams()
	dp.CascadeBelow = 0
	base := []node.Option{node.WithoutDHT(), node.WithLogger(quiet), node.WithDiscoveryParams(dp)}
	pn, err := node.New(net, append(base, node.WithHost(hs[0]))...)
	if err != nil {
		return 0, 0, 0, err
	}
	defer pn.Close()
	prod, err := streams.NewProducer[[]byte](pn.Streams(), "bench", bytesCodec(), streams.WithReplay(benchReplay),
		streams.WithOnlineCondition(func(c *streams.Condition) *streams.Condition { return c.MinimumOf(0) }))
	if err != nil {
		return 0, 0, 0, err
	}
	defer prod.Close()
	cn, err := node.New(net, append(base, node.WithHost(hs[1]), node.WithBootstrapPeers(addrInfo(hs[0])))...)
	if err != nil {
		return 0, 0, 0, err
	}
	defer cn.Close()

	sctx, stop := context.WithCancel(ctx)
	var last atomic.Uint64 // the last counter sent
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the producer at replayRate, on an absolute schedule
		defer wg.Done()
		interval := time.Second / replayRate
		start := time.Now()
		for i := uint64(1); sctx.Err() == nil; i++ {
			sleepUntil(start.Add(time.Duration(i) * interval))
			p := make([]byte, 64)
			binary.BigEndian.PutUint64(p, i)
			if err := prod.Send(sctx, p); err != nil {
				return
			}
			last.Store(i)
		}
	}()
	defer func() { stop(); wg.Wait() }()

	// The first consumer reads for a second, then closes.
	c1, err := streams.NewConsumer[[]byte](cn.Streams(), "bench", bytesCodec())
	if err != nil {
		return 0, 0, 0, err
	}
	var got uint64 // the last counter received, over both consumers
	read := func(ctx context.Context, c *streams.Consumer[[]byte], until func() bool) error {
		for !until() {
			d, err := c.RecvDatum(ctx)
			if err != nil {
				return err
			}
			v := binary.BigEndian.Uint64(d.Value)
			if d.Gap != nil {
				missed += d.Gap.Missed
			}
			if v != got+1 && got != 0 {
				return fmt.Errorf("counter %d after %d (gap %v)", v, got, d.Gap)
			}
			got = v
		}
		return nil
	}
	t0 := time.Now()
	if err := read(ctx, c1, func() bool { return time.Since(t0) >= time.Second && got > 0 }); err != nil {
		_ = c1.Close()
		return 0, 0, 0, fmt.Errorf("first consumer: %w", err)
	}
	saved := c1.Positions()
	_ = c1.Close()
	// Datums the first consumer had buffered but not taken are asked for
	// again: count from the saved position.
	if len(saved) == 1 {
		got = saved[0].Seq
	}
	time.Sleep(replayCut) // the outage being measured
	before := replayedOf(pn)
	start := time.Now()
	target := last.Load()
	c2, err := streams.NewConsumer[[]byte](cn.Streams(), "bench", bytesCodec(), streams.WithResumeFrom(saved...))
	if err != nil {
		return 0, 0, 0, err
	}
	defer c2.Close()
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := read(rctx, c2, func() bool { return got >= target }); err != nil {
		return 0, 0, 0, fmt.Errorf("resumed consumer: %w (at %d of %d)", err, got, target)
	}
	return time.Since(start), missed, replayedOf(pn) - before, nil
}

// replayedOf returns the datums the node's producers resent from windows.
func replayedOf(n *node.Node) uint64 {
	var t uint64
	for _, h := range n.Streams().Handles() {
		if h.Replay != nil {
			t += h.Replay.Replayed
		}
	}
	return t
}

// replayMemoryScenario: the heap a full window of 100 000 datums of 64 B
// holds (payloads included), per datum.
func (r *runner) replayMemoryScenario(ctx context.Context) error {
	hs, err := newHosts(1)
	if err != nil {
		return err
	}
	defer closeHosts(hs)
	n, err := node.New(freshNetwork(), node.WithHost(hs[0]), node.WithoutDHT(), node.WithLogger(quiet))
	if err != nil {
		return err
	}
	defer n.Close()
	const held, size = 100_000, 64
	prod, err := streams.NewProducer[[]byte](n.Streams(), "bench", bytesCodec(), streams.WithReplay(streams.Replay{Datums: held}),
		streams.WithOnlineCondition(func(c *streams.Condition) *streams.Condition { return c.MinimumOf(0) }))
	if err != nil {
		return err
	}
	defer prod.Close()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range held {
		if err := prod.Send(ctx, make([]byte, size)); err != nil {
			return err
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / held
	r.sample("replay/memory", "bytes per 64 B datum held", "mosaik", "B", Lower, per)
	r.prog.step(fmt.Sprintf("%.0f B per datum held", per))
	return nil
}

// replayTargets judges the replay rows.
func (res *Results) replayTargets() []Target {
	var ts []Target
	t := Target{Goal: "replay: steady-state throughput with a window ≥ 95 % of without (64 B, 1 KiB)", Measured: "not measured"}
	var parts []string
	met := true
	for _, id := range []string{"replay/throughput/64B", "replay/throughput/1KiB"} {
		m, w := res.find(id, "rate", "mosaik"), res.find(id, "rate", "mosaik-replay")
		if m == nil || w == nil || m.Median == 0 {
			continue
		}
		f := w.Median / m.Median
		parts = append(parts, fmt.Sprintf("%s: %.3f×", strings.TrimPrefix(id, "replay/throughput/"), f))
		met = met && f >= 0.95
	}
	if len(parts) > 0 {
		t.Measured, t.Met = strings.Join(parts, ", "), boolp(met)
	}
	ts = append(ts, t)
	t = Target{Goal: "replay: after a 2 s cut at 10 000 datums/s, every datum arrives exactly once (time to catch up reported)", Measured: "not measured"}
	if m, tm := res.find("replay/resume", "datums missed", "mosaik"), res.find("replay/resume", "time to catch up after a 2 s cut at 10 000/s", "mosaik"); m != nil && tm != nil {
		t.Measured = fmt.Sprintf("%s datums missed (max over reps); caught up in %s ms (median)", fmtNum(m.Max), fmtNum(tm.Median))
		t.Met = boolp(m.Max == 0)
	}
	ts = append(ts, t)
	t = Target{Goal: "replay: memory per datum held (reported)", Measured: "not measured"}
	if m := res.find("replay/memory", "bytes per 64 B datum held", "mosaik"); m != nil {
		t.Measured = fmt.Sprintf("%s B per 64 B datum (payload included)", fmtNum(m.Median))
		t.Reported = true
	}
	return append(ts, t)
}
