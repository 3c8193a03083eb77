package harness

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// The groups rows: a replicated key-value write, committed by 3 replicas
// on loopback, 64 B values. Sequential puts give the commit latency (p50,
// p99); concurrent clients give puts/s. Each system is opened once per
// scenario and warmed up before the repetitions.

// replicator is a replicated store measured in the groups rows.
type replicator interface {
	name() string
	// open starts the store, ready for puts from up to clients clients.
	open(ctx context.Context, clients int) (replicated, error)
}

// replicated is an open store. put returns once the write is committed
// (acknowledged by a quorum of replicas).
type replicated interface {
	put(ctx context.Context, client int, key string, val []byte) error
	close() error
}

// replicators are the stores of the groups rows. The mosaik systems are
// listed first, so their rows lead each metric.
func (r *runner) replicators() []replicator {
	if r.cfg.Mode == Smoke {
		// Each JetStream cluster takes seconds to form: the smoke run
		// (CI's) starts one, which checks the row as well as three.
		return append(r.mosaikReplicators(), jetstreamSystem{}, rawRTT{})
	}
	return append(r.mosaikReplicators(), jetstreamSystem{}, jetstreamSystem{file: true}, jetstreamFsync{jetstreamSystem{file: true, syncAlways: true}}, rawRTT{})
}

// sequentialOnly is a replicator that serves one client only (the raw
// round trip: one stream, one request at a time).
type sequentialOnly interface{ sequentialOnly() }

type replCase struct {
	id      string
	clients int // 1: the sequential latency row
}

func (r *runner) replicatedScenarios(p plan) []scenario {
	var out []scenario
	all := pick(r.cfg.Systems, r.replicators())
	for _, c := range p.repl {
		var sys []replicator
		for _, s := range all {
			if _, one := s.(sequentialOnly); !one || c.clients == 1 {
				sys = append(sys, s)
			}
		}
		out = append(out, scenario{c.id, (p.reps + 1) * len(sys), func(ctx context.Context) error { return r.replicatedScenario(ctx, c, sys) }})
	}
	return append(out, r.groupsEventScenarios(p)...)
}

func (r *runner) replicatedScenario(ctx context.Context, c replCase, systems []replicator) error {
	for _, sys := range systems {
		st, err := sys.open(ctx, c.clients)
		if err != nil {
			return fmt.Errorf("%s: open: %w", sys.name(), err)
		}
		err = r.replicatedReps(ctx, c, sys.name(), st)
		if cerr := st.close(); err == nil && cerr != nil {
			err = fmt.Errorf("%s: close: %w", sys.name(), cerr)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// noter is a store with something to say about its run (the note of its
// rows).
type noter interface{ note() string }

func (r *runner) replicatedReps(ctx context.Context, c replCase, name string, st replicated) (err error) {
	var last *Row
	defer func() {
		if n, ok := st.(noter); ok && err == nil && last != nil {
			if s := n.note(); s != "" {
				last.addNote(s)
			}
		}
	}()
	val := make([]byte, 64)
	if c.clients == 1 {
		// Warm-up: connections, leader, caches.
		if _, err := seqPuts(ctx, st, val, max(r.plan.replSeq/10, 20)); err != nil {
			return fmt.Errorf("%s warm-up: %w", name, err)
		}
		r.prog.step(name + " warm-up")
		for rep := range r.plan.reps {
			lat, err := seqPuts(ctx, st, val, r.plan.replSeq)
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			p50, p99 := percentile(lat, 0.50), percentile(lat, 0.99)
			last = r.sample(c.id, "p50", name, "µs", Lower, p50)
			r.sample(c.id, "p99", name, "µs", Lower, p99)
			r.prog.step(fmt.Sprintf("%s rep %d/%d: p50 %s µs", name, rep+1, r.plan.reps, fmtNum(p50)))
		}
		return nil
	}
	if _, err := concurrentPuts(ctx, st, val, c.clients, r.plan.replDur/4); err != nil {
		return fmt.Errorf("%s warm-up: %w", name, err)
	}
	r.prog.step(name + " warm-up")
	for rep := range r.plan.reps {
		rate, err := concurrentPuts(ctx, st, val, c.clients, r.plan.replDur)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		last = r.sample(c.id, "rate", name, "puts/s", Higher, rate)
		r.prog.step(fmt.Sprintf("%s rep %d/%d: %s puts/s", name, rep+1, r.plan.reps, fmtNum(rate)))
	}
	return nil
}

// seqPuts makes n puts one after the other and returns their latencies in
// µs, sorted.
func seqPuts(ctx context.Context, st replicated, val []byte, n int) ([]float64, error) {
	lat := make([]float64, 0, n)
	for i := range n {
		start := time.Now()
		if err := st.put(ctx, 0, fmt.Sprintf("k-%d", i%1024), val); err != nil {
			return nil, fmt.Errorf("put %d: %w", i, err)
		}
		lat = append(lat, float64(time.Since(start).Nanoseconds())/1e3)
	}
	slices.Sort(lat)
	return lat, nil
}

// concurrentPuts runs clients goroutines putting as fast as each put
// returns, for dur, and returns the committed puts per second.
func concurrentPuts(ctx context.Context, st replicated, val []byte, clients int, dur time.Duration) (float64, error) {
	var (
		done     atomic.Int64
		wg       sync.WaitGroup
		firstErr error
		errOnce  sync.Once
	)
	stop := time.Now().Add(dur)
	start := time.Now()
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(stop); i++ {
				if err := st.put(ctx, c, fmt.Sprintf("c%d-%d", c, i%256), val); err != nil {
					errOnce.Do(func() { firstErr = fmt.Errorf("client %d put %d: %w", c, i, err) })
					return
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return 0, firstErr
	}
	return float64(done.Load()) / time.Since(start).Seconds(), ctx.Err()
}
