package streams

import (
	"testing"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/streams/pb"
)

// TestVectors checks the streams frames of PROTOCOL.md section 16 against
// testdata/vectors/streams at the module root (rewrite with
// -update-vectors). The network is "mosaik", the stream "orders".
func TestVectors(t *testing.T) {
	const dir = "../testdata/vectors/streams"
	nw, sid := catalog.IDFromString("mosaik"), catalog.IDFromString("orders")
	control := func(typ byte, m *pb.Subscribe) []byte { b, _ := appendControl(nil, typ, m); return b }
	testutil.CheckVector(t, dir, "subscribe", control(frameSubscribe, &pb.Subscribe{Network: nw[:], Stream: sid[:],
		Features: featureCloseFrames, Codec: "cbor"}), testutil.Vector{
		Description: "Subscribe frame (type 0x01) offering in-band close frames, codec cbor",
		Section:     "16.1, 16.2",
		Fields:      map[string]any{"network": nw.String(), "stream": sid.String(), "features": 1, "codec": "cbor"},
	})
	testutil.CheckVector(t, dir, "subscribe_resume", control(frameSubscribe, &pb.Subscribe{Network: nw[:], Stream: sid[:],
		Features: featureCloseFrames | featureReplay, Codec: "cbor", Resume: true, ResumeEpoch: 0x0123456789abcdef, ResumeAfter: 300}), testutil.Vector{
		Description: "Subscribe frame (type 0x01) offering close frames and replay, resuming after seq 300 of epoch 0x0123456789abcdef",
		Section:     "16.1, 16.6",
		Fields: map[string]any{"network": nw.String(), "stream": sid.String(), "features": 3, "codec": "cbor",
			"resume": true, "resume_epoch": "0123456789abcdef", "resume_after": 300},
	})
	accept, _ := appendControl(nil, frameAccept, &pb.Accept{Network: nw[:], Stream: sid[:], Epoch: 0x0123456789abcdef,
		Features: featureCloseFrames, Codec: "cbor"})
	testutil.CheckVector(t, dir, "accept", accept, testutil.Vector{
		Description: "Accept frame (type 0x02), epoch 0x0123456789abcdef",
		Section:     "16.1, 16.2",
		Fields: map[string]any{"network": nw.String(), "stream": sid.String(), "epoch": "0123456789abcdef",
			"features": 1, "codec": "cbor"},
	})
	testutil.CheckVector(t, dir, "reject", rejectFrame(CodeNotAllowed, "require predicate failed"), testutil.Vector{
		Description: "Reject frame (type 0x03)",
		Section:     "16.1, 16.2",
		Fields:      map[string]any{"code": 10403, "reason": "require predicate failed"},
	})
	testutil.CheckVector(t, dir, "close", closeFrame(CodeGracefulShutdown, "producer closed"), testutil.Vector{
		Description: "Close frame (type 0x04), also the in-band close frame of either end",
		Section:     "16.1, 16.3",
		Fields:      map[string]any{"code": 204, "reason": "producer closed"},
	})
	payload := []byte{0x65, 0x68, 0x65, 0x6c, 0x6c, 0x6f} // CBOR text "hello"
	testutil.CheckVector(t, dir, "data", append(dataHeader(nil, 300, len(payload)), payload...), testutil.Vector{
		Description: "Data frame (type 0x10): uvarint(len) 0x10 uvarint(seq) payload; payload is CBOR text \"hello\"",
		Section:     "16.1",
		Fields:      map[string]any{"seq": 300, "payload": "6568656c6c6f"},
	})
	testutil.CheckVector(t, dir, "data_timed", append(timedHeader(nil, 301, 1700000000000000, len(payload)), payload...), testutil.Vector{
		Description: "Timed data frame (type 0x11): adds uvarint(write time, unix microseconds) after seq",
		Section:     "16.1",
		Fields:      map[string]any{"seq": 301, "write_time_us": int64(1700000000000000), "payload": "6568656c6c6f"},
	})
}
