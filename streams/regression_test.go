package streams_test

import (
	"bufio"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/node"
	"github.com/mosaik-go/mosaik/streams"
)

// A consumer that stopped reading and then no longer qualifies (NotAllowed,
// ended with a Close frame rather than a reset) must not make the
// producer's Close hang on its blocked writer.
func TestRegression_CloseDoesNotHangOnEndedNonReader(t *testing.T) {
	t.Parallel()
	nodes := connected(t, 2, node.WithoutDHT())
	var allow atomic.Bool
	allow.Store(true)
	p, err := streams.NewProducer[[]byte](nodes[0].Streams(), "stuck",
		streams.WithCodec[[]byte](streams.Bytes{}), streams.WithDropLagging(),
		streams.WithRequire(func(catalog.PeerInfo) bool { return allow.Load() }))
	if err != nil {
		t.Fatal(err)
	}
	// A raw subscriber on the consumer node's host: reads Accept, then never
	// reads again.
	ctx := testCtx(t, 10*time.Second)
	st, err := nodes[1].Host().NewStream(ctx, nodes[0].ID(), streams.ProtocolID)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Reset()
	if _, err := st.Write(rbSubscribe(nodes[1].Network(), catalog.IDFromString("stuck"))); err != nil {
		t.Fatal(err)
	}
	if typ, _, err := rbReadFrame(bufio.NewReader(st), 1<<20); err != nil || typ != rbFrameAccept {
		t.Fatalf("no Accept: %#x %v", typ, err)
	}
	// Fill the flow-control window so the producer's writer blocks.
	big := make([]byte, 256<<10)
	for range 64 {
		if err := p.TrySend(big); err != nil && err != streams.ErrFull {
			t.Fatal(err)
		}
	}
	// The consumer stops qualifying; a catalog change makes the producer
	// end it with NotAllowed (a Close frame its writer cannot deliver).
	allow.Store(false)
	if err := nodes[1].AddTags("changed"); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return len(p.Consumers()) == 0 }, "subscriber not ended")
	done := make(chan error, 1)
	go func() { done <- p.Close() }()
	limit := testutil.Scale(nodes[0].Streams().Params().CloseTimeout + 5*time.Second)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(limit):
		t.Fatalf("Producer.Close still blocked after %v", limit)
	}
}

// An online condition over tags follows tag changes of connected peers.
func TestRegression_OnlineConditionSeesTagChanges(t *testing.T) {
	t.Parallel()
	nodes := connected(t, 2, node.WithoutDHT())
	v := catalog.IDFromString("validator")
	p, err := streams.NewProducer[int](nodes[0].Streams(), "tagged-online",
		streams.WithOnlineCondition(func(c *streams.Condition) *streams.Condition { return c.WithTags(v) }))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := streams.NewConsumer[int](nodes[1].Streams(), "tagged-online")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	testutil.Eventually(t, 5*time.Second, func() bool { return len(p.Consumers()) == 1 }, "not subscribed")
	if p.IsOnline() {
		t.Fatal("online although the consumer lacks the tag")
	}
	if err := nodes[1].AddTags("validator"); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, p.IsOnline, "the tag change did not bring the producer online")
}

// A datum the application took is already in its subscription's counters:
// the consumer counts a run before handing it over, so a reader woken by the
// delivery never sees the count behind (session 22's CI saw Datums 0 after
// two Recvs).
func TestRegression_SubscriptionStatsCountBeforeDelivery(t *testing.T) {
	t.Parallel()
	nodes := semNodes(t, nil, nil)
	p := mustProducer[[]byte](t, nodes[0], "counted", streams.WithCodec[[]byte](streams.Bytes{}))
	c := mustConsumer[[]byte](t, nodes[1], "counted", streams.WithCodec[[]byte](streams.Bytes{}))
	const n = 300
	go func() {
		ctx := testCtx(t, 30*time.Second)
		for i := range n {
			if err := p.Send(ctx, []byte{byte(i), 1, 2}); err != nil {
				return // the receiving side reports what is missing
			}
		}
	}()
	for i := 1; i <= n; i++ {
		semRecv(t, c, 10*time.Second)
		ci, ok := semInfo(c.Producers(), nodes[0].ID())
		if !ok || ci.Stats.Datums < uint64(i) || ci.Stats.Bytes < 3*uint64(i) {
			t.Fatalf("after %d datums taken the subscription counts %+v", i, ci.Stats)
		}
	}
}
