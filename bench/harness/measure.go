package harness

import (
	"context"
	"math"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// cpuTime is the CPU time (user + system) the whole process used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procMem is what the process's memory did over a span: minor page
// faults (first touches of fresh pages, which cost tens of
// microseconds each on some virtual machines) and bytes allocated on
// the Go heap. Read it before and after; memStats stops the world
// briefly, so read it outside the measured time.
type procMem struct {
	faults int64
	alloc  uint64
}

func readProcMem() procMem {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return procMem{faults: int64(ru.Minflt), alloc: ms.TotalAlloc}
}

func (m procMem) since(o procMem) procMem {
	return procMem{faults: m.faults - o.faults, alloc: m.alloc - o.alloc}
}

// sleepUntil sleeps until t (pacing a sender or a slow consumer, not
// synchronisation). Schedules are absolute, so a late wake-up is caught up
// and the mean rate stays exact.
func sleepUntil(t time.Time) {
	if d := time.Until(t); d > 0 {
		time.Sleep(d)
	}
}

// percentile is the nearest-rank q-quantile of sorted s.
func percentile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// summary is the median, min and max of one row's samples (one per rep).
func summary(samples []float64) (med, lo, hi float64) {
	s := slices.Clone(samples)
	slices.Sort(s)
	if len(s) == 0 {
		return math.NaN(), math.NaN(), math.NaN()
	}
	if len(s)%2 == 1 {
		med = s[len(s)/2]
	} else {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return med, s[0], s[len(s)-1]
}

// batch is the credit granularity of window.
const batch = 64

// window bounds the datums in flight from the publisher to each
// subscriber: the sender takes one credit of every subscriber before each
// batch of 64 datums, and a subscriber returns one per 64 datums it
// received. It is the same for every system that has no backpressure of
// its own (mosaik, gossipsub, NATS), so none of their queues can overflow
// by construction in the throughput rows.
type window struct{ credit []chan struct{} }

func newWindow(subs, size int) *window {
	w := &window{credit: make([]chan struct{}, subs)}
	for i := range w.credit {
		c := make(chan struct{}, size/batch)
		for range size / batch {
			c <- struct{}{}
		}
		w.credit[i] = c
	}
	return w
}

// acquire is called before datum i (0-based).
func (w *window) acquire(ctx context.Context, i int) error {
	if i%batch != 0 {
		return nil
	}
	for _, c := range w.credit {
		select {
		case <-c:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// release is called by subscriber k after its got-th datum (1-based).
func (w *window) release(k int, got int64) {
	if got%batch == 0 {
		select {
		case w.credit[k] <- struct{}{}:
		default: // cannot happen: releases never exceed acquisitions
		}
	}
}

type counter struct {
	n atomic.Int64
	_ [56]byte // one cache line per subscriber
}

// rep is the receiving side of one repetition: per-subscriber counts, the
// credit window and an optional per-datum hook (latency sampling, a slow
// consumer's pacing). Receive loops call onDatum for every datum.
type rep struct {
	got    []counter
	target atomic.Int64 // math.MaxInt64 until the sender is done
	done   []atomic.Bool
	left   atomic.Int64
	fin    chan struct{}
	lastNS atomic.Int64 // when the last subscriber completed
	w      *window
	hook   func(sub int, p []byte)
}

func newRep(subs int, w *window, hook func(int, []byte)) *rep {
	r := &rep{got: make([]counter, subs), done: make([]atomic.Bool, subs), fin: make(chan struct{}), w: w, hook: hook}
	r.target.Store(math.MaxInt64)
	r.left.Store(int64(subs))
	return r
}

func (r *rep) onDatum(sub int, p []byte) {
	if sub < 0 || sub >= len(r.got) {
		return
	}
	if r.hook != nil {
		r.hook(sub, p)
	}
	n := r.got[sub].n.Add(1)
	if r.w != nil {
		r.w.release(sub, n)
	}
	if n >= r.target.Load() {
		r.finish(sub)
	}
}

func (r *rep) finish(sub int) {
	if r.done[sub].CompareAndSwap(false, true) && r.left.Add(-1) == 0 {
		r.lastNS.Store(time.Now().UnixNano())
		close(r.fin)
	}
}

// total is the number of datums received over all subscribers.
func (r *rep) total() int64 {
	var t int64
	for i := range r.got {
		t += r.got[i].n.Load()
	}
	return t
}

func (r *rep) count(sub int) int64 { return r.got[sub].n.Load() }

// await sets the target (datums sent per subscriber) and waits until every
// subscriber received it, or until no datum arrived for stall. It returns
// when the last datum arrived and whether every subscriber completed.
func (r *rep) await(ctx context.Context, sent int64, stall time.Duration) (time.Time, bool) {
	r.target.Store(sent)
	for i := range r.got {
		if r.got[i].n.Load() >= sent {
			r.finish(i)
		}
	}
	tick := time.NewTicker(stall / 8)
	defer tick.Stop()
	last, lastAt := r.total(), time.Now()
	for {
		select {
		case <-r.fin:
			return time.Unix(0, r.lastNS.Load()), true
		case <-ctx.Done():
			return time.Now(), false
		case now := <-tick.C:
			if t := r.total(); t != last {
				last, lastAt = t, now
			} else if now.Sub(lastAt) >= stall {
				return lastAt, false
			}
		}
	}
}

// quiesce waits until no datum arrived for quiet (overload reps, where
// loss is expected and the target may never be reached).
func (r *rep) quiesce(ctx context.Context, sent int64, quiet time.Duration) {
	tick := time.NewTicker(quiet / 10)
	defer tick.Stop()
	last, lastAt := r.total(), time.Now()
	for {
		done := true
		for i := range r.got {
			if r.got[i].n.Load() < sent {
				done = false
			}
		}
		if done {
			return
		}
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			if t := r.total(); t != last {
				last, lastAt = t, now
			} else if now.Sub(lastAt) >= quiet {
				return
			}
		}
	}
}

// sink dispatches the datums of a session's receive loops to the current
// repetition.
type sink struct{ cur atomic.Pointer[rep] }

func newSink() *sink {
	s := &sink{}
	s.cur.Store(newRep(0, nil, nil)) // datums outside a repetition are ignored
	return s
}

func (s *sink) deliver(sub int, p []byte) { s.cur.Load().onDatum(sub, p) }

// tracker counts the goroutines that libp2p starts for us (stream
// handlers), so that a session's close can wait for them: enter fails once
// shutdown has begun.
type tracker struct {
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

func (t *tracker) enter() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.wg.Add(1)
	return true
}

func (t *tracker) leave() { t.wg.Done() }

// shutdown refuses new entries and waits for the current ones.
func (t *tracker) shutdown() {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	t.wg.Wait()
}
