package streams_test

import (
	"errors"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/node"
	"github.com/mosaik-go/mosaik/streams"
)

// TestRobust_DropModeCutsStoppedConsumer: in drop mode a consumer that
// stops reading is not kept forever. While its stream is blocked the
// producer drops for it with its queue's bytes held within
// Params.MaxQueueBytes; once a write has been blocked for
// Params.WriteTimeout the consumer is cut with TooSlow. An honest consumer
// gets every datum, in order and without a gap, before and after.
func TestRobust_DropModeCutsStoppedConsumer(t *testing.T) {
	const (
		name     = "robust-drop-stopped"
		size     = 4 << 10
		budget   = 64 << 10 // 16 datums, far below the 1024-datum queue
		afterCut = 50
	)
	writeTimeout := testutil.Scale(time.Second)
	sp := streams.DefaultParams()
	sp.HandshakeTimeout, sp.CloseTimeout = 2*time.Second, 2*time.Second
	sp.WriteTimeout, sp.MaxQueueBytes = writeTimeout, budget
	nodes := connected(t, 3, node.WithStreamsParams(sp))
	pn, sn, hn := nodes[0], nodes[1], nodes[2]
	bytesCodec := streams.WithCodec[[]byte](streams.Bytes{})
	prod := mustProducer[[]byte](t, pn, name, bytesCodec, streams.WithDropLagging())
	// The stopped consumer takes one datum into its buffer and is never
	// read; a long backoff keeps it from resubscribing after the cut.
	stopped := mustConsumer[[]byte](t, sn, name, bytesCodec, streams.WithBuffer(1),
		streams.WithBackoff(func() backoff.BackOff { return backoff.NewConstantBackOff(time.Hour) }))
	honest := mustConsumer[[]byte](t, hn, name, bytesCodec)
	testutil.Eventually(t, 10*time.Second, func() bool { return rbAllConnected(prod.Consumers(), 2) },
		"producer did not get its 2 consumers")
	ctx := testCtx(t, 60*time.Second)
	r := rbReadHonest(ctx, honest)

	// Send, one datum at a time behind the honest consumer, until the
	// stopped one is cut. Its writer blocks once the transport holds what
	// yamux's window allows; its queue then fills to the byte budget, and
	// from then on every datum is dropped for it: the first drop comes
	// after the block, so the cut must follow it within the write timeout.
	var sent uint64
	var firstDrop, cut time.Time
	limit := time.Now().Add(testutil.Scale(30 * time.Second))
	for cut.IsZero() {
		if time.Now().After(limit) {
			t.Fatalf("stopped consumer not cut after %d datums (first drop %v ago): %+v", sent, time.Since(firstDrop), prod.Consumers())
		}
		if err := prod.Send(ctx, rbPadded(sent, size)); err != nil {
			t.Fatalf("Send(%d): %v", sent, err)
		}
		sent++
		r.waitFor(t, ctx, sent)
		ci, ok := rbSubscription(prod.Consumers(), sn.ID())
		switch {
		case !ok:
			cut = time.Now()
		case firstDrop.IsZero() && ci.Stats.Dropped > 0:
			firstDrop = time.Now()
		}
	}
	if firstDrop.IsZero() {
		t.Fatalf("stopped consumer cut before anything was dropped for it")
	}
	t.Logf("cut after %d datums, %v after the first drop (write timeout %v)", sent, cut.Sub(firstDrop), writeTimeout)
	if d := cut.Sub(firstDrop); d > writeTimeout+testutil.Scale(time.Second) {
		t.Errorf("cut %v after the first drop, want within the %v write timeout", d, writeTimeout)
	}
	h := rbHandle(t, pn, prod.StreamID())
	if h.Ends[streams.CodeTooSlow] != 1 || h.Totals.Dropped == 0 {
		t.Errorf("producer ends %v, dropped %d: want one TooSlow cut and drops", h.Ends, h.Totals.Dropped)
	}
	// Memory: what the stopped consumer pinned stayed within the budget,
	// and reached it (the budget, not the 1024-datum queue, bounded it).
	if peak := streams.PeakQueuedBytes(prod); peak > budget || peak < budget-size {
		t.Errorf("peak bytes pinned by one subscription %d, want within (%d, %d]", peak, budget-size, budget)
	}

	// The honest consumer is served on, completely.
	for range afterCut {
		if err := prod.Send(ctx, rbPadded(sent, size)); err != nil {
			t.Fatalf("Send(%d): %v", sent, err)
		}
		sent++
	}
	r.waitFor(t, ctx, sent)
	if ci, ok := rbSubscription(prod.Consumers(), hn.ID()); !ok || ci.Stats.Dropped != 0 || len(prod.Consumers()) != 1 {
		t.Errorf("producer's consumers %+v, want only the honest one, nothing dropped for it", prod.Consumers())
	}

	// The stopped consumer, once read, hears TooSlow.
	testutil.Eventually(t, 10*time.Second, func() bool {
		for {
			if _, err := stopped.TryRecv(); err != nil {
				break
			}
		}
		infos := stopped.Producers()
		var ce *streams.CodeError
		return len(infos) == 1 && errors.As(infos[0].Err, &ce) && ce.Code == streams.CodeTooSlow && ce.Remote
	}, "stopped consumer did not see TooSlow: %+v", testutil.Lazy(func() any { return stopped.Producers() }))
}
