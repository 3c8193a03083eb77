package streams_test

import (
	"bufio"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/node"
	"github.com/mosaik-go/mosaik/streams"
)

// TestRobust_GiveUpSendsDoNotCutAConsumerInItsGrace: a consumer's queue
// found full by a Send whose ctx already ended, or by TrySend, which does
// not wait, loses that datum but is not cut: the lag grace (5 s here) is
// not spent. Before the fix every such call cut a consumer that read as fast
// as it could with TooSlow, since a one-slot queue is often full for a
// moment.
func TestRobust_GiveUpSendsDoNotCutAConsumerInItsGrace(t *testing.T) {
	const name = "robust-grace-giveup"
	nodes := connected(t, 2, node.WithoutDHT())
	prod := mustProducer[int](t, nodes[0], name, streams.WithQueueSize(1), streams.WithLagGrace(5*time.Second))
	cons := mustConsumer[int](t, nodes[1], name)
	testutil.Eventually(t, 10*time.Second, func() bool { return connectedConsumers(prod)[nodes[1].ID()] }, "consumer not admitted")
	ctx := testCtx(t, 30*time.Second)
	go func() { // read as fast as the consumer can
		for ctx.Err() == nil {
			if _, err := cons.Recv(ctx); err != nil {
				return
			}
		}
	}()
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	dropped := func() uint64 { return nodes[0].Streams().Handles()[0].Totals.Dropped }
	start := time.Now()
	for i := 0; i < 2000 || dropped() == 0; i++ {
		if time.Since(start) > testutil.Scale(3*time.Second) {
			break // well inside the grace
		}
		var err error
		if i%2 == 0 {
			err = prod.Send(ended, i)
		} else {
			err = prod.TrySend(i)
		}
		if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, streams.ErrFull) {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	t.Logf("%d datums dropped for the consumer in %v", dropped(), time.Since(start))
	if dropped() == 0 {
		t.Fatal("the one-slot queue was never found full: the test proves nothing")
	}
	if ends := nodes[0].Streams().Handles()[0].Ends; ends[streams.CodeTooSlow] != 0 {
		t.Errorf("producer ends %v: a consumer within its lag grace was cut", ends)
	}
	if !connectedConsumers(prod)[nodes[1].ID()] {
		t.Errorf("the consumer is no longer subscribed")
	}
}

// TestRobust_TrySendCutsAStalledConsumerOnceItsGraceIsSpent: TrySend does
// not wait for a full queue, but a consumer that stopped reading is still
// cut with TooSlow once its queue has been full for the lag grace, and not
// before.
func TestRobust_TrySendCutsAStalledConsumerOnceItsGraceIsSpent(t *testing.T) {
	const name = "robust-grace-trysend"
	const grace = time.Second
	nodes := connected(t, 2, node.WithoutDHT())
	prod := mustProducer[[]byte](t, nodes[0], name, streams.WithCodec[[]byte](streams.Bytes{}),
		streams.WithQueueSize(1), streams.WithLagGrace(grace))
	// A raw subscriber: reads Accept, then nothing.
	ctx := testCtx(t, 30*time.Second)
	st, err := nodes[1].Host().NewStream(ctx, nodes[0].ID(), streams.ProtocolID)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Reset()
	if _, err := st.Write(rbSubscribe(nodes[1].Network(), catalog.IDFromString(name))); err != nil {
		t.Fatal(err)
	}
	if typ, _, err := rbReadFrame(bufio.NewReader(st), 1<<20); err != nil || typ != rbFrameAccept {
		t.Fatalf("no Accept: %#x %v", typ, err)
	}
	big := make([]byte, 256<<10)
	var firstDrop time.Time
	dropped := func() uint64 { return nodes[0].Streams().Handles()[0].Totals.Dropped }
	for len(prod.Consumers()) > 0 && ctx.Err() == nil {
		_ = prod.TrySend(big)
		if firstDrop.IsZero() && dropped() > 0 {
			firstDrop = time.Now()
		}
		time.Sleep(5 * time.Millisecond) // the pace of the sends, not a synchronisation
	}
	if ctx.Err() != nil {
		t.Fatal("the stalled consumer was never cut")
	}
	if ends := nodes[0].Streams().Handles()[0].Ends; ends[streams.CodeTooSlow] != 1 {
		t.Errorf("producer ends %v, want one TooSlow", ends)
	}
	if firstDrop.IsZero() {
		t.Fatal("cut without a datum dropped first")
	}
	// The grace counts from when the queue was first found full, at or
	// before the first drop was seen.
	if d := time.Since(firstDrop); d < grace-50*time.Millisecond {
		t.Errorf("cut %v after the first drop, want the lag grace (%v)", d, grace)
	}
}
