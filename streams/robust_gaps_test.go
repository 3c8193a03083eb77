package streams_test

import (
	"context"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/node"
	"github.com/mosaik-go/mosaik/streams"
)

// TestRobust_ReconnectReportsGap: a consumer whose link breaks while the
// producer keeps sending (a second consumer keeps it online) resubscribes
// and is told exactly what it missed: the first datum after the
// reconnection carries a GapReconnect whose Missed is the number of datums
// sent while it was away, and the same number is in its stats, per
// producer and overall, and in the mosaik.streams.consumer.gaps metric.
func TestRobust_ReconnectReportsGap(t *testing.T) {
	t.Parallel()
	const name = "robust-gap-reconnect"
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	nodes := connected(t, 2)
	pnode, cnode := nodes[0], startNode(t, node.WithBootstrapPeers(nodes[0].AddrInfo()), node.WithMeterProvider(mp))
	testutil.Eventually(t, 5*time.Second, func() bool {
		_, ok := pnode.Catalog().Get(cnode.ID())
		_, ok2 := cnode.Catalog().Get(pnode.ID())
		return ok && ok2
	}, "observed consumer's node did not join")
	bytesCodec := streams.WithCodec[[]byte](streams.Bytes{})
	prod := mustProducer[[]byte](t, pnode, name, bytesCodec)
	// The retry waits long enough that every datum sent right after the cut
	// is sent while the consumer is away.
	wait := testutil.Scale(2 * time.Second)
	cons := mustConsumer[[]byte](t, cnode, name, bytesCodec,
		streams.WithBackoff(func() backoff.BackOff { return backoff.NewConstantBackOff(wait) }))
	keeper := mustConsumer[[]byte](t, nodes[1], name, bytesCodec)
	testutil.Eventually(t, 10*time.Second, func() bool {
		return rbAllConnected(prod.Consumers(), 2) && rbOnlyConnected(cons.Producers(), pnode.ID())
	}, "producer did not get its 2 consumers")
	ctx := testCtx(t, 60*time.Second)
	go func() { // the keeper reads everything; only the observed consumer misses datums
		for {
			if _, err := keeper.Recv(ctx); err != nil {
				return
			}
		}
	}()

	// Datum i has counter i; the producer's sequence number of datum i is
	// i+1 (it numbers every datum it sends, from 1).
	send := func(from, to uint64) {
		t.Helper()
		for i := from; i < to; i++ {
			if err := prod.Send(ctx, rbU64(i)); err != nil {
				t.Fatalf("Send(%d): %v", i, err)
			}
		}
	}
	recv := func() streams.Datum[[]byte] {
		t.Helper()
		d, err := cons.RecvDatum(ctx)
		if err != nil {
			t.Fatalf("RecvDatum: %v", err)
		}
		return d
	}
	send(0, 100)
	for i := range uint64(100) {
		d := recv()
		if v, _ := rbVal(d.Value); v != i || d.Seq != i+1 || d.Gap != nil || d.Producer != pnode.ID() {
			t.Fatalf("datum %d: counter %d, seq %d, gap %v, from %s", i, v, d.Seq, d.Gap, d.Producer)
		}
	}

	// Break the observed consumer's link; send while it is away.
	if err := cnode.Host().Network().ClosePeer(pnode.ID()); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		_, ok := rbSubscription(prod.Consumers(), cnode.ID())
		return !ok
	}, "producer did not notice the broken link")
	send(100, 150)
	testutil.Eventually(t, 20*time.Second, func() bool {
		return rbAllConnected(prod.Consumers(), 2) && rbOnlyConnected(cons.Producers(), pnode.ID())
	}, "consumer did not resubscribe: %+v", testutil.Lazy(func() any { return cons.Producers() }))
	send(150, 160)

	d := recv()
	v, _ := rbVal(d.Value)
	if d.Gap == nil || d.Gap.Cause != streams.GapReconnect || d.Gap.After != 100 || d.Gap.Missed != v-100 || v <= 100 {
		t.Fatalf("first datum after the reconnection: counter %d, seq %d, gap %v; want a reconnect gap of %d after seq 100", v, d.Seq, d.Gap, v-100)
	}
	missed := d.Gap.Missed
	t.Logf("after the reconnection: counter %d, %v", v, d.Gap)
	for want := v + 1; want < 160; want++ {
		d := recv()
		if got, _ := rbVal(d.Value); got != want || d.Gap != nil {
			t.Fatalf("datum %d after the reconnection: counter %d, gap %v", want, got, d.Gap)
		}
	}
	if st := cons.Stats(); st.Gaps != missed || st.Datums != 160-missed {
		t.Errorf("consumer stats %+v, want %d gaps and %d datums", st, missed, 160-missed)
	}
	if ci, ok := rbSubscription(cons.Producers(), pnode.ID()); !ok || ci.Stats.Gaps != missed || ci.Stats.Reconnects == 0 {
		t.Errorf("per-producer stats %+v, want %d gaps and a reconnection", ci.Stats, missed)
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	if got, ok := sumOf(&rm, "mosaik.streams.consumer.gaps"); !ok || got != int64(missed) {
		t.Errorf("mosaik.streams.consumer.gaps = %d (present %v), want %d", got, ok, missed)
	}
	if got, ok := sumOf(&rm, "mosaik.streams.consumer.items.received"); !ok || got != int64(160-missed) {
		t.Errorf("mosaik.streams.consumer.items.received = %d (present %v), want %d", got, ok, 160-missed)
	}
}
