package streams_test

import (
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/streams"
)

// TestProducer_EndsByTheConsumersResetCode: a consumer that ends its
// subscription with a stream reset carrying a code (one without Close
// frames, or a mosaik-go consumer whose in-band Close could not be written
// in time) ended it for that reason (PROTOCOL.md 16.3), and the producer's
// Ends count it so; they counted every such end as Cancelled. A code
// outside the table counts as Other, so a consumer cannot add labels.
func TestProducer_EndsByTheConsumersResetCode(t *testing.T) {
	nodes := connected(t, 2)
	pnode, cnode := nodes[0], nodes[1]
	prod := mustProducer[string](t, pnode, "reset-code")
	sid := prod.StreamID()
	for i, tt := range []struct {
		reset network.StreamErrorCode
		want  streams.Code
	}{
		{network.StreamErrorCode(streams.CodeProtocolViolation), streams.CodeProtocolViolation},
		{network.StreamErrorCode(streams.CodeTooSlow), streams.CodeTooSlow},
		{123456789, streams.CodeOther},
	} {
		st, _, _ := rbRawSubscribe(t, cnode, pnode, sid, 0)
		testutil.Eventually(t, 10*time.Second, func() bool { return connectedConsumers(prod)[cnode.ID()] }, "subscription %d not admitted", i)
		_ = st.ResetWithError(tt.reset)
		testutil.Eventually(t, 10*time.Second, func() bool { return !connectedConsumers(prod)[cnode.ID()] }, "subscription %d not ended", i)
		if ends := rbHandle(t, pnode, sid).Ends; ends[tt.want] != 1 {
			t.Fatalf("reset with code %d: Ends = %v, want one %v", tt.reset, ends, tt.want)
		}
	}
}
