package streams_test

import (
	"bufio"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"google.golang.org/protobuf/proto"

	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/node"
	"github.com/mosaik-go/mosaik/streams"
	"github.com/mosaik-go/mosaik/streams/pb"
)

// rbFeatureCloseFrames is the Subscribe/Accept feature bit of in-band close
// frames (wire.go).
const rbFeatureCloseFrames = 1

// rbRawSubscribe opens a raw subscription from cnode to prod with the given
// features and returns the stream, its reader and the producer's Accept.
func rbRawSubscribe(t *testing.T, cnode, pnode *node.Node, stream [32]byte, features uint32) (network.Stream, *bufio.Reader, *pb.Accept) {
	t.Helper()
	st, err := cnode.Host().NewStream(testCtx(t, 10*time.Second), pnode.ID(), streams.ProtocolID)
	if err != nil {
		t.Fatalf("NewStream: %v", err)
	}
	t.Cleanup(func() { _ = st.Reset() })
	nw := pnode.Network()
	if _, err := st.Write(rbFrame(rbFrameSubscribe, &pb.Subscribe{Network: nw[:], Stream: stream[:], Features: features})); err != nil {
		t.Fatal(err)
	}
	_ = st.SetReadDeadline(time.Now().Add(testutil.Scale(20 * time.Second)))
	r := bufio.NewReader(st)
	typ, body, err := rbReadFrame(r, 4<<10)
	if err != nil || typ != rbFrameAccept {
		t.Fatalf("answer: frame %#x, %v; want Accept", typ, err)
	}
	var acc pb.Accept
	if err := proto.Unmarshal(body, &acc); err != nil {
		t.Fatal(err)
	}
	return st, r, &acc
}

// TestRobust_InBandClose: a consumer that offers in-band close frames (as
// a js-libp2p peer whose yamux carries no reset codes) gets them, both
// ways; one that does not (an older mosaik-go) still gets reset codes.
func TestRobust_InBandClose(t *testing.T) {
	nodes := connected(t, 2)
	pnode, cnode := nodes[0], nodes[1]
	prod := mustProducer[string](t, pnode, "robust-inband")
	sid := prod.StreamID()

	t.Run("producer cut arrives as a Close frame", func(t *testing.T) {
		st, r, acc := rbRawSubscribe(t, cnode, pnode, sid, rbFeatureCloseFrames)
		if acc.GetFeatures() != rbFeatureCloseFrames {
			t.Fatalf("Accept features %d, want %d", acc.GetFeatures(), rbFeatureCloseFrames)
		}
		// A data frame from the consumer is a protocol violation.
		if _, err := st.Write([]byte{2, rbFrameData, 1}); err != nil {
			t.Fatal(err)
		}
		typ, body, err := rbReadFrame(r, 4<<10)
		if err != nil {
			t.Fatalf("reading the cut: %v, want a Close frame", err)
		}
		var cl pb.Close
		if typ != rbFrameClose || proto.Unmarshal(body, &cl) != nil || streams.Code(cl.Code) != streams.CodeProtocolViolation {
			t.Fatalf("frame %#x %+v, want Close %d", typ, &cl, streams.CodeProtocolViolation)
		}
		if _, err := r.ReadByte(); !errors.Is(err, io.EOF) {
			t.Errorf("after the Close frame: %v, want EOF", err)
		}
	})

	t.Run("consumer Close frame ends the subscription with its code", func(t *testing.T) {
		before := rbHandle(t, pnode, sid).Ends[streams.CodeCancelled]
		st, _, _ := rbRawSubscribe(t, cnode, pnode, sid, rbFeatureCloseFrames)
		testutil.Eventually(t, 10*time.Second, func() bool { return connectedConsumers(prod)[cnode.ID()] },
			"not subscribed: %+v", testutil.Lazy(func() any { return prod.Consumers() }))
		if _, err := st.Write(rbFrame(rbFrameClose, &pb.Close{Code: uint32(streams.CodeCancelled), Reason: "bye"})); err != nil {
			t.Fatal(err)
		}
		_ = st.CloseWrite()
		testutil.Eventually(t, 10*time.Second, func() bool {
			return rbHandle(t, pnode, sid).Ends[streams.CodeCancelled] == before+1 && !connectedConsumers(prod)[cnode.ID()]
		}, "the producer did not end the subscription on the consumer's Close: %v", rbHandle(t, pnode, sid).Ends)
	})

	t.Run("older consumer gets a reset code", func(t *testing.T) {
		st, _, acc := rbRawSubscribe(t, cnode, pnode, sid, 0)
		if acc.GetFeatures() != 0 {
			t.Fatalf("Accept features %d to a consumer that offered none", acc.GetFeatures())
		}
		if _, err := st.Write([]byte{0xde}); err != nil {
			t.Fatal(err)
		}
		se := rbStreamReset(t, st, 10*time.Second)
		if streams.Code(se.ErrorCode) != streams.CodeProtocolViolation {
			t.Errorf("reset %v, want code %d", se, streams.CodeProtocolViolation)
		}
	})

	t.Run("mosaik-go consumer closes in-band", func(t *testing.T) {
		before := rbHandle(t, pnode, sid).Ends[streams.CodeCancelled]
		cons := mustConsumer[string](t, cnode, "robust-inband")
		semWait(t, cons.Subscribed(), 10*time.Second, "the consumer")
		if err := cons.Close(); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, 10*time.Second, func() bool {
			return rbHandle(t, pnode, sid).Ends[streams.CodeCancelled] == before+1
		}, "the producer did not record the consumer's Cancelled: %v", rbHandle(t, pnode, sid).Ends)
	})
}
