package streams_test

import (
	"bufio"
	"testing"
	"time"

	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/streams"
)

// TestRobust_ConsumerHalfCloseKeepsSubscription: a consumer that closes its
// write side after Subscribe (as a js-libp2p peer may) is not cancelling:
// the producer keeps it and goes on sending (PROTOCOL.md section 16.3).
// Before, the producer reset such a stream with Cancelled (102).
func TestRobust_ConsumerHalfCloseKeepsSubscription(t *testing.T) {
	nodes := connected(t, 2)
	pnode, cnode := nodes[0], nodes[1]
	prod := mustProducer[string](t, pnode, "robust-half-close")
	st, err := cnode.Host().NewStream(testCtx(t, 10*time.Second), pnode.ID(), streams.ProtocolID)
	if err != nil {
		t.Fatalf("NewStream: %v", err)
	}
	t.Cleanup(func() { _ = st.Reset() })
	if _, err := st.Write(rbSubscribe(pnode.Network(), prod.StreamID())); err != nil {
		t.Fatal(err)
	}
	if err := st.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	_ = st.SetReadDeadline(time.Now().Add(testutil.Scale(20 * time.Second)))
	r := bufio.NewReader(st)
	if typ, _, err := rbReadFrame(r, 4<<10); err != nil || typ != rbFrameAccept {
		t.Fatalf("answer: frame %#x, %v; want Accept", typ, err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return connectedConsumers(prod)[cnode.ID()] },
		"the producer does not list the half-closed consumer: %+v", testutil.Lazy(func() any { return prod.Consumers() }))
	for _, v := range []string{"one", "two"} {
		semSend(t, prod, v, 10*time.Second)
		typ, _, err := rbReadFrame(r, 1<<20)
		if err != nil {
			t.Fatalf("reading datum %q after the half-close: %v", v, err)
		}
		if typ != rbFrameData && typ != rbFrameData+1 {
			t.Fatalf("frame %#x, want a data frame", typ)
		}
	}
	if !connectedConsumers(prod)[cnode.ID()] {
		t.Errorf("the producer dropped the half-closed consumer: %+v", prod.Consumers())
	}
}
