package streams

import (
	"context"
	"runtime"
	"testing"
	"time"
)

// benchSendProducer is BenchmarkSendPath's producer (Bytes codec, one
// subscription, its writer goroutine writing into a discarding stream),
// with opts; stop ends it.
func benchSendProducer(b *testing.B, opts ...ProducerOption) (p *Producer[[]byte], s *outSub, stop func()) {
	svc := &Service{params: DefaultParams(), log: benchDiscard}
	cfg, codec, _, err := newProducerConfig[[]byte](svc, append([]ProducerOption{WithCodec[[]byte](Bytes{})}, opts...))
	if err != nil {
		b.Fatal(err)
	}
	p = &Producer[[]byte]{svc: svc, codec: codec, cfg: cfg, set: newSubscriptionSet(nil), log: benchDiscard}
	p.set.update(func() { p.set.online = p.Subscribed() })
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.startWindow()
	s = newOutSub(&subscription{}, &benchSinkStream{}, cfg.queue)
	p.subs = []*outSub{s}
	p.set.add(s.sub)
	p.set.setState(s.sub, Connected, nil)
	p.subWG.Add(1)
	go p.writer(s)
	return p, s, func() {
		p.mu.Lock()
		p.closed = true
		close(s.q)
		p.mu.Unlock()
		p.subWG.Wait()
		p.cancel()
		p.wg.Wait()
	}
}

// BenchmarkSendWithReplay measures the cost of a replay window on Send: a
// 64 B datum to one subscription (as BenchmarkSendPath) by two producers,
// one without a window and one with a full window of 100 000 datums and
// an age bound (so every Send adds one entry, evicts one and reads the
// clock), in alternating blocks of 1 000 datums (each first every other
// time) so that both see the same machine. It reports ns per datum of
// each and the window's cost in percent (target: at most 5).
func BenchmarkSendWithReplay(b *testing.B) {
	const block = 1000
	off, soff, stopOff := benchSendProducer(b)
	defer stopOff()
	on, son, stopOn := benchSendProducer(b, WithReplay(Replay{Datums: 100_000, Bytes: 64 << 20, Age: time.Minute}))
	defer stopOn()
	payload := make([]byte, 64)
	ctx := context.Background()
	inflight := uint64(off.cfg.queue / 2)
	// Fill the window, so that the timed Sends evict.
	for i := range uint64(100_000) {
		for i-son.sub.datums.Load() >= inflight {
			runtime.Gosched()
		}
		if err := on.Send(ctx, payload); err != nil {
			b.Fatal(err)
		}
	}
	var took [2]time.Duration
	var sent [2]uint64
	run := func(k int, p *Producer[[]byte], s *outSub, n int) {
		base := s.sub.datums.Load() + uint64(0)
		start := time.Now()
		for i := range uint64(n) {
			for base+i-s.sub.datums.Load() >= inflight {
				runtime.Gosched()
			}
			if err := p.Send(ctx, payload); err != nil {
				b.Fatal(err)
			}
		}
		for s.sub.datums.Load() < base+uint64(n) {
			runtime.Gosched()
		}
		took[k] += time.Since(start)
		sent[k] += uint64(n)
	}
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	b.ResetTimer()
	for k, done := 0, 0; done < b.N; k, done = k+1, done+block {
		n := min(block, b.N-done)
		if k%2 == 0 { // neither always runs first
			run(0, off, soff, n)
			run(1, on, son, n)
		} else {
			run(1, on, son, n)
			run(0, off, soff, n)
		}
	}
	b.StopTimer()
	if sent[0] > 0 {
		nsOff := float64(took[0].Nanoseconds()) / float64(sent[0])
		nsOn := float64(took[1].Nanoseconds()) / float64(sent[1])
		b.ReportMetric(nsOff, "ns/datum-nowindow")
		b.ReportMetric(nsOn, "ns/datum-window")
		b.ReportMetric(100*(nsOn-nsOff)/nsOff, "window-cost-%")
	}
}

// BenchmarkReplayWindowMemory measures the memory one datum held in a full
// replay window costs besides its payload: the heap in use after filling a
// window of 100 000 datums of 64 B, minus the payloads, per datum.
func BenchmarkReplayWindowMemory(b *testing.B) {
	const n, size = 100_000, 64
	var perDatum float64
	for range b.N {
		payloads := make([][]byte, n)
		for i := range payloads {
			payloads[i] = make([]byte, size)
		}
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		w := newWindow(Replay{Datums: n}, nil)
		for i, pl := range payloads {
			w.add(uint64(i+1), pl)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		perDatum = float64(after.HeapAlloc-before.HeapAlloc) / n
		runtime.KeepAlive(w)
		runtime.KeepAlive(payloads)
	}
	b.ReportMetric(perDatum, "B/held-datum-overhead")
	b.ReportMetric(perDatum+size, "B/held-datum-64B")
}
