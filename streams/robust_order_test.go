package streams_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/streams"
)

// TestRobust_OrderAndCompleteness100k sends 100 000 datums (8-byte
// big-endian counters) from one producer to three consumers on separate
// nodes: each consumer must take every datum exactly once and in order,
// see no sequence gap, and the producer must count every datum sent to each
// of them with nothing dropped.
//
// The producer's queue holds the whole run, so this test is about the data
// path (fan-out, batching writer, framing, sequence numbers, receivers), not
// about the lagging policy, which the slow-consumer tests cover: with the
// default 1024-datum queue a consumer slowed down by -race on a loaded
// machine could be cut with TooSlow, and the test would flake for the
// wrong reason.
func TestRobust_OrderAndCompleteness100k(t *testing.T) {
	const total = 100_000
	bytesCodec := streams.WithCodec[[]byte](streams.Bytes{})
	nodes := connected(t, 4)
	prod := mustProducer[[]byte](t, nodes[0], "robust-order", bytesCodec, streams.WithQueueSize(total))
	var cons []*streams.Consumer[[]byte]
	for _, n := range nodes[1:] {
		cons = append(cons, mustConsumer[[]byte](t, n, "robust-order", bytesCodec))
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		if !rbAllConnected(prod.Consumers(), len(cons)) {
			return false
		}
		for _, c := range cons {
			if !rbOnlyConnected(c.Producers(), nodes[0].ID()) {
				return false
			}
		}
		return true
	}, "subscriptions not established")

	ctx := testCtx(t, 120*time.Second)
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, len(cons))
	took := make([]time.Duration, len(cons))
	for ci, c := range cons {
		wg.Go(func() {
			for want := range uint64(total) {
				b, err := c.Recv(ctx)
				if err != nil {
					errs[ci] = fmt.Errorf("after %d datums: %w", want, err)
					return
				}
				got, err := rbVal(b)
				if err != nil || len(b) != 8 || got != want {
					errs[ci] = fmt.Errorf("datum %d: got %x (%v), want counter %d", want, b, err, want)
					return
				}
			}
			took[ci] = time.Since(start)
		})
	}
	for i := range uint64(total) {
		if err := prod.Send(ctx, rbU64(i)); err != nil {
			t.Fatalf("Send(%d): %v", i, err)
		}
	}
	sendTook := time.Since(start)
	wg.Wait()
	for ci, err := range errs {
		if err != nil {
			t.Fatalf("consumer %d: %v", ci, err)
		}
	}
	t.Logf("%d datums to %d consumers: sends done in %v, consumers done in %v", total, len(cons), sendTook, took)

	for ci, c := range cons {
		infos := c.Producers()
		if len(infos) != 1 {
			t.Fatalf("consumer %d has %d producers, want 1", ci, len(infos))
		}
		st := infos[0].Stats
		if st.Gaps != 0 || st.Datums != total || st.Reconnects != 0 || st.Bytes != 8*total {
			t.Errorf("consumer %d: receiver stats %+v, want %d datums of 8 bytes, no gap, no reconnect", ci, st, total)
		}
		if agg := c.Stats(); agg.Datums != total || agg.Bytes != 8*total {
			t.Errorf("consumer %d: handle stats %+v, want %d datums, %d bytes", ci, agg, total, 8*total)
		}
		if _, err := c.TryRecv(); !errors.Is(err, streams.ErrEmpty) {
			t.Errorf("consumer %d: TryRecv after the run = %v, want ErrEmpty (no duplicate)", ci, err)
		}
	}
	// The producer's per-consumer counts are bumped by its writers; they
	// have flushed everything the consumers read, so they are final.
	for _, ci := range prod.Consumers() {
		if ci.Stats.Datums != total || ci.Stats.Dropped != 0 || ci.Stats.Bytes != 8*total {
			t.Errorf("producer side, consumer %s: stats %+v, want %d datums, none dropped", ci.Peer, ci.Stats, total)
		}
	}
}
