package streams

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"
)

// BenchmarkSendStalled measures the latency of one Producer.Send of a
// 64 B datum to one healthy subscription (writer into a discarding stream)
// beside 0, 1 and 10 stalled ones: their queues are full and stay full
// (no writer drains them). Each Send finds the stalled queues newly full,
// with their lag grace (the default 100 ms) unspent, the worst case: it
// waits out one grace for all of them together and then drops the datum
// for each (drop mode keeps them for the next op). ns/op is therefore
// about 0 with none and about one grace with 1 or 10; waiting for each
// stalled consumer in turn would give ten graces with 10.
func BenchmarkSendStalled(b *testing.B) {
	for _, k := range []int{0, 1, 10} {
		b.Run(fmt.Sprintf("stalled=%d", k), func(b *testing.B) {
			svc := &Service{params: DefaultParams(), log: benchDiscard}
			cfg, codec, _, err := newProducerConfig[[]byte](svc, []ProducerOption{WithCodec[[]byte](Bytes{}), WithDropLagging()})
			if err != nil {
				b.Fatal(err)
			}
			p := &Producer[[]byte]{svc: svc, codec: codec, cfg: cfg, set: newSubscriptionSet(nil), log: benchDiscard}
			p.set.update(func() { p.set.online = p.Subscribed() })
			healthy := newOutSub(&subscription{}, &benchSinkStream{}, cfg.queue)
			p.subs = []*outSub{healthy}
			p.set.add(healthy.sub)
			p.set.setState(healthy.sub, Connected, nil)
			p.subWG.Add(1)
			go p.writer(healthy)
			defer func() {
				p.mu.Lock()
				p.closed = true
				close(healthy.q)
				p.mu.Unlock()
				p.subWG.Wait()
			}()
			stalled := make([]*outSub, k)
			for i := range stalled {
				s := newOutSub(&subscription{}, &benchSinkStream{}, 1)
				s.q <- outItem{payload: make([]byte, 64)}
				stalled[i] = s
				p.subs = append(p.subs, s)
			}
			payload := make([]byte, 64)
			ctx := context.Background()
			var worst time.Duration
			b.ResetTimer()
			for i := range uint64(b.N) {
				// The healthy writer keeps up easily; stay well within its
				// queue so only the stalled ones are ever full.
				for i-healthy.sub.datums.Load() >= uint64(cfg.queue/2) {
					runtime.Gosched()
				}
				for _, s := range stalled {
					s.fullSince = time.Time{} // newly full: the grace is unspent
				}
				start := time.Now()
				if err := p.Send(ctx, payload); err != nil {
					b.Fatal(err)
				}
				worst = max(worst, time.Since(start))
			}
			b.StopTimer()
			b.ReportMetric(float64(worst.Nanoseconds()), "worst-ns")
			if d := healthy.sub.dropped.Load(); d > 0 {
				b.Fatalf("%d datums dropped for the healthy subscription", d)
			}
			for _, s := range stalled {
				if d := s.sub.dropped.Load(); d != uint64(b.N) {
					b.Fatalf("%d datums dropped for a stalled subscription, want %d", d, b.N)
				}
			}
		})
	}
}
