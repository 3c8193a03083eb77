package streams_test

import (
	"errors"
	"testing"
	"time"

	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/node"
	"github.com/mosaik-go/mosaik/streams"
)

// A datum whose encoding does not fit in a frame is refused by Send and
// TrySend with ErrTooLarge, before it is numbered: the consumer's next
// datum follows without a gap. Sent, it cut every consumer (an oversize
// frame is a protocol violation), and from a replay window it was served
// first to every resubscription, which then failed again (76 reconnects in
// 8 s in a review probe).
func TestProducer_DatumLargerThanAFrameIsRefused(t *testing.T) {
	t.Parallel()
	nodes := connected(t, 2)
	codec := streams.WithCodec[[]byte](streams.Bytes{})
	p := mustProducer[[]byte](t, nodes[0], "too-large", codec, streams.WithReplay(streams.Replay{Datums: 16}))
	c := mustConsumer[[]byte](t, nodes[1], "too-large", codec)
	ctx := testCtx(t, 30*time.Second)
	if err := p.WaitOnline(ctx); err != nil {
		t.Fatal(err)
	}
	huge := make([]byte, streams.DefaultParams().MaxFrameSize)
	if err := p.Send(ctx, huge); !errors.Is(err, streams.ErrTooLarge) {
		t.Fatalf("Send of a datum of MaxFrameSize bytes: %v, want ErrTooLarge", err)
	}
	if err := p.TrySend(huge); !errors.Is(err, streams.ErrTooLarge) {
		t.Fatalf("TrySend of it: %v, want ErrTooLarge", err)
	}
	if err := p.Send(ctx, []byte("small")); err != nil {
		t.Fatal(err)
	}
	d, err := c.RecvDatum(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if string(d.Value) != "small" || d.Seq != 1 || d.Gap != nil {
		t.Fatalf("got %q seq %d gap %v, want \"small\" as datum 1 with no gap", d.Value, d.Seq, d.Gap)
	}
	testutil.Eventually(t, 5*time.Second, func() bool {
		st := c.Stats()
		return st.Datums == 1 && st.Gaps == 0 && st.Reconnects == 0
	}, "consumer stats %+v", testutil.Lazy(func() any { return c.Stats() }))
}

// A consumer whose frame cap is below its producer's cannot read a datum
// between the two: it ends the link as a protocol violation, and counts
// that end in its handle's Ends like the codes producers send (it counted
// nothing: 76 failed sessions showed an empty map in a review probe).
func TestConsumer_LocalProtocolViolationCountsInEnds(t *testing.T) {
	t.Parallel()
	small := streams.DefaultParams()
	small.MaxFrameSize = 1024
	pn := startNode(t)
	cn := startNode(t, node.WithStreamsParams(small), node.WithBootstrapPeers(pn.AddrInfo()))
	testutil.Eventually(t, 5*time.Second, func() bool {
		_, ok := cn.Catalog().Get(pn.ID())
		_, ok2 := pn.Catalog().Get(cn.ID())
		return ok && ok2
	}, "nodes did not converge")
	codec := streams.WithCodec[[]byte](streams.Bytes{})
	p := mustProducer[[]byte](t, pn, "small-cap", codec)
	_ = mustConsumer[[]byte](t, cn, "small-cap", codec)
	ctx := testCtx(t, 30*time.Second)
	if err := p.WaitOnline(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.Send(ctx, make([]byte, 2000)); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		for _, h := range cn.Streams().Handles() {
			if h.Role == streams.RoleConsumer && h.Ends[streams.CodeProtocolViolation] >= 1 {
				return true
			}
		}
		return false
	}, "the consumer did not count its protocol violation: %v", testutil.Lazy(func() any { return cn.Streams().Handles() }))
}
