package streams_test

import (
	"bufio"
	"testing"
	"time"

	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/streams"
	"github.com/mosaik-go/mosaik/streams/pb"
)

// TestRobust_CodecMismatch: the handshake carries both ends' codec names;
// a consumer whose codec is not the producer's is refused with
// CodecMismatch (final), never fed bytes it would misread.
func TestRobust_CodecMismatch(t *testing.T) {
	nodes := connected(t, 2)
	pnode, cnode := nodes[0], nodes[1]
	prod := mustProducer[string](t, pnode, "robust-codec") // CBOR
	cons := mustConsumer[string](t, cnode, "robust-codec", streams.WithCodec[string](streams.JSON[string]{}))
	testutil.Eventually(t, 10*time.Second, func() bool {
		ci, ok := semInfo(cons.Producers(), pnode.ID())
		if !ok || ci.Err == nil {
			return false
		}
		code, ok := semCode(ci.Err)
		return ok && code == streams.CodeCodecMismatch
	}, "the JSON consumer of a CBOR producer was not refused with CodecMismatch: %+v", testutil.Lazy(func() any { return cons.Producers() }))
	if n := len(prod.Consumers()); n != 0 {
		t.Errorf("the producer admitted %d consumers of another codec", n)
	}
	if !streams.CodeCodecMismatch.Final() {
		t.Error("CodecMismatch is not final")
	}

	// The Accept names the producer's codec; a Subscribe that names none
	// (an older consumer) is not checked.
	_, _, acc := rbRawSubscribe(t, cnode, pnode, prod.StreamID(), 0)
	if acc.GetCodec() != "cbor" {
		t.Errorf("Accept codec %q, want cbor", acc.GetCodec())
	}
	// A raw Subscribe naming another codec is refused.
	nw, sid := pnode.Network(), prod.StreamID()
	st, err := cnode.Host().NewStream(testCtx(t, 10*time.Second), pnode.ID(), streams.ProtocolID)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Reset() })
	if _, err := st.Write(rbFrame(rbFrameSubscribe, &pb.Subscribe{Network: nw[:], Stream: sid[:], Codec: "json"})); err != nil {
		t.Fatal(err)
	}
	_ = st.SetReadDeadline(time.Now().Add(testutil.Scale(10 * time.Second)))
	typ, _, err := rbReadFrame(bufio.NewReader(st), 4<<10)
	if err != nil || typ != rbFrameReject {
		t.Errorf("a Subscribe naming json: frame %#x, %v; want Reject", typ, err)
	}
}
