package streams

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestFanout_ByteBoundInEveryMode: Params.MaxQueueBytes bounds what one
// consumer that stops reading pins, far below its slot count, in both
// lagging modes: the default mode cuts it with TooSlow once its lag grace
// is spent, drop mode drops for it and keeps it. (The network test of drop
// mode, with the write deadline, is TestRobust_DropModeCutsStoppedConsumer.)
func TestFanout_ByteBoundInEveryMode(t *testing.T) {
	const (
		size   = 1 << 10
		budget = 4 * size // 4 datums, far below the 1024-slot queue
		sends  = 8
	)
	for _, tc := range []struct {
		name string
		drop bool
	}{{"default mode", false}, {"drop mode", true}} {
		t.Run(tc.name, func(t *testing.T) {
			params := DefaultParams()
			params.MaxQueueBytes = budget
			svc := &Service{params: params, log: benchDiscard}
			opts := []ProducerOption{WithCodec[[]byte](Bytes{}), WithLagGrace(time.Millisecond)}
			if tc.drop {
				opts = append(opts, WithDropLagging())
			}
			cfg, codec, _, err := newProducerConfig[[]byte](svc, opts)
			if err != nil {
				t.Fatal(err)
			}
			p := &Producer[[]byte]{svc: svc, codec: codec, cfg: cfg, set: newSubscriptionSet(nil), log: benchDiscard}
			// No writer: the consumer never takes anything.
			stopped := newOutSub(&subscription{}, &benchSinkStream{}, cfg.queue)
			p.subs = []*outSub{stopped}
			p.set.add(stopped.sub)
			p.set.setState(stopped.sub, Connected, nil)

			var full int
			for i := range sends {
				err := p.fanout(context.Background(), make([]byte, size), true)
				switch {
				case err == nil:
				case errors.Is(err, ErrFull):
					full++
				default:
					t.Fatalf("fanout %d: %v", i, err)
				}
				if q := stopped.queued.Load(); q > budget {
					t.Fatalf("after fanout %d the stopped consumer pins %d bytes, want at most %d", i, q, budget)
				}
			}
			if got := len(stopped.q); got != budget/size {
				t.Errorf("%d datums queued, want %d (the byte budget, not the %d slots)", got, budget/size, cfg.queue)
			}
			if peak := p.peakQueued.Load(); peak != budget {
				t.Errorf("peak pinned %d bytes, want %d", peak, budget)
			}
			// Drop mode: every datum past the budget reaches nobody. The
			// default mode: the one that cuts the consumer; later ones
			// have no consumer to reach.
			if want := map[bool]int{true: sends - budget/size, false: 1}[tc.drop]; full != want {
				t.Errorf("%d fan-outs reached nobody, want %d", full, want)
			}
			cut := len(p.subs) == 0
			if tc.drop {
				if cut || stopped.sub.dropped.Load() != sends-budget/size {
					t.Errorf("drop mode: cut %v, dropped %d; want kept, %d dropped", cut, stopped.sub.dropped.Load(), sends-budget/size)
				}
				return
			}
			if !cut || stopped.code != CodeTooSlow {
				t.Errorf("default mode: cut %v with code %v, want cut with TooSlow", cut, stopped.code)
			}
		})
	}
}
