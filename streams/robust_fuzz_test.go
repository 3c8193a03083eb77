package streams

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	"github.com/mosaik-go/mosaik/streams/pb"
)

// Fuzz targets of the wire format (wire.go). Seed corpora: the f.Add calls
// below and testdata/fuzz/<target>/.

// rbFuzzFrameMax is the frame cap the reader target runs with: small, so the
// fuzzer easily produces lengths just below, at and above it.
const rbFuzzFrameMax = 1024

// rbFuzzSeedFrames returns well-formed frames of every type.
func rbFuzzSeedFrames() [][]byte {
	var nw, id [32]byte
	for i := range nw {
		nw[i], id[i] = byte(i), byte(255-i)
	}
	sub, _ := appendControl(nil, frameSubscribe, &pb.Subscribe{Network: nw[:], Stream: id[:], Criteria: []byte("c")})
	acc, _ := appendControl(nil, frameAccept, &pb.Accept{Network: nw[:], Stream: id[:]})
	resume, _ := appendControl(nil, frameSubscribe, &pb.Subscribe{Network: nw[:], Stream: id[:], Features: featureCloseFrames | featureReplay,
		Resume: true, ResumeEpoch: ^uint64(0), ResumeAfter: 1 << 40})
	data := append(dataHeader(nil, 7, 5), "hello"...)
	return [][]byte{sub, resume, acc, rejectFrame(CodeUnknownPeer, "who are you"), closeFrame(CodeGracefulShutdown, "bye"), data}
}

// FuzzFrameReader feeds arbitrary bytes to the frame reader: it must never
// panic, never return a frame over its cap, never grow its buffer beyond
// max(cap, 4 KiB) whatever lengths are claimed, and end every input with an
// error (io.EOF only at a frame boundary).
func FuzzFrameReader(f *testing.F) {
	frames := rbFuzzSeedFrames()
	for _, fr := range frames {
		f.Add(fr)
	}
	f.Add(bytes.Join(frames, nil))
	f.Add([]byte{})
	f.Add([]byte{0})
	f.Add(binary.AppendUvarint(nil, 1<<30))
	f.Add(binary.AppendUvarint(nil, rbFuzzFrameMax+1))
	f.Add(append(binary.AppendUvarint(nil, rbFuzzFrameMax), frameData))
	// Complete frames at the cap and one byte over it.
	f.Add(append(binary.AppendUvarint(nil, rbFuzzFrameMax), bytes.Repeat([]byte{frameData}, rbFuzzFrameMax)...))
	f.Add(append(binary.AppendUvarint(nil, rbFuzzFrameMax+1), bytes.Repeat([]byte{frameData}, rbFuzzFrameMax+1)...))
	f.Add(bytes.Repeat([]byte{0xff}, 11))
	f.Fuzz(func(t *testing.T, in []byte) {
		fr := newFrameReader(bytes.NewReader(in), rbFuzzFrameMax)
		// nextInto (borrowing consumers) must read exactly what next reads,
		// asking for no buffer larger than the cap.
		fr2 := newFrameReader(bytes.NewReader(in), rbFuzzFrameMax)
		get := func(n int) []byte {
			if n > rbFuzzFrameMax {
				t.Fatalf("nextInto asked for a %d-byte buffer, cap is %d", n, rbFuzzFrameMax)
			}
			return make([]byte, n)
		}
		consumed := 0
		for range len(in) + 1 { // every frame takes at least one byte
			typ, body, err := fr.next()
			typ2, body2, _, err2 := fr2.nextInto(get)
			if (err == nil) != (err2 == nil) || typ != typ2 || !bytes.Equal(body, body2) {
				t.Fatalf("next: %#x %x %v; nextInto: %#x %x %v", typ, body, err, typ2, body2, err2)
			}
			if held := fr.fr.Held(); held > max(rbFuzzFrameMax, 4096) {
				t.Fatalf("buffer grew to %d bytes, cap is %d", held, rbFuzzFrameMax)
			}
			if err != nil {
				if errors.Is(err, io.EOF) && consumed != len(in) {
					t.Fatalf("io.EOF after %d of %d bytes: a truncated frame must be io.ErrUnexpectedEOF or a protocol error", consumed, len(in))
				}
				return
			}
			n := 1 + len(body)
			if n > rbFuzzFrameMax {
				t.Fatalf("frame of %d bytes returned, cap is %d", n, rbFuzzFrameMax)
			}
			// The frame is exactly what the input holds at this point (the
			// length prefix may be a non-minimal varint, as in protobuf).
			claimed, k := binary.Uvarint(in[consumed:])
			if k <= 0 || claimed != uint64(n) || in[consumed+k] != typ || !bytes.Equal(in[consumed+k+1:consumed+k+n], body) {
				t.Fatalf("frame type %#x body %x does not match the input at offset %d", typ, body, consumed)
			}
			consumed += k + n
		}
		t.Fatalf("reader returned more frames than input bytes")
	})
}

// FuzzFrameControl decodes arbitrary bodies as every control message: no
// panic, bodies over maxControlFrame refused, and whatever decodes
// re-encodes to a message that decodes to the same value.
func FuzzFrameControl(f *testing.F) {
	for _, fr := range rbFuzzSeedFrames() {
		_, n := binary.Uvarint(fr)
		f.Add(fr[n+1:]) // the body, after length and type
	}
	f.Add([]byte{})
	f.Add([]byte{0xff, 0xff, 0xff})
	f.Add(bytes.Repeat([]byte{0x0a, 0x00}, maxControlFrame/2+1))
	f.Fuzz(func(t *testing.T, body []byte) {
		rbFuzzControl(t, body, &pb.Subscribe{}, func() *pb.Subscribe { return &pb.Subscribe{} })
		rbFuzzControl(t, body, &pb.Accept{}, func() *pb.Accept { return &pb.Accept{} })
		rbFuzzControl(t, body, &pb.Reject{}, func() *pb.Reject { return &pb.Reject{} })
		rbFuzzControl(t, body, &pb.Close{}, func() *pb.Close { return &pb.Close{} })
	})
}

func rbFuzzControl[M proto.Message](t *testing.T, body []byte, m M, fresh func() M) {
	t.Helper()
	got, err := decodeControl(body, m)
	if len(body) > maxControlFrame {
		if err == nil || !errors.Is(err, errProtocol) {
			t.Fatalf("%T: body of %d bytes accepted (err %v), cap is %d", m, len(body), err, maxControlFrame)
		}
		return
	}
	if err != nil {
		if !errors.Is(err, errProtocol) {
			t.Fatalf("%T: error %v is not a protocol violation", m, err)
		}
		return
	}
	again, err := proto.Marshal(got)
	if err != nil {
		t.Fatalf("%T: decoded %v does not re-encode: %v", m, got, err)
	}
	back, err := decodeControl(again, fresh())
	if err != nil || !proto.Equal(got, back) {
		t.Fatalf("%T: %v re-decodes to %v (%v)", m, got, back, err)
	}
	// The framed form reads back through the frame reader.
	typ := map[string]byte{"Subscribe": frameSubscribe, "Accept": frameAccept, "Reject": frameReject, "Close": frameClose}[string(got.ProtoReflect().Descriptor().Name())]
	framed, err := appendControl(nil, typ, got)
	if err != nil {
		t.Fatal(err)
	}
	ft, fb, err := newFrameReader(bytes.NewReader(framed), maxControlFrame+16).next()
	if err != nil || ft != typ || !bytes.Equal(fb, again) {
		t.Fatalf("%T: framed %x reads back as type %#x body %x (%v)", m, framed, ft, fb, err)
	}
}

// FuzzFrameData parses arbitrary data frame bodies: no panic; a parsed
// sequence number and payload rebuild the same body with dataHeader (for
// canonical varints), and any (seq, payload) written with dataHeader reads
// back through the frame reader and parseData unchanged.
func FuzzFrameData(f *testing.F) {
	f.Add([]byte{}, uint64(0), []byte{})
	f.Add([]byte{1, 'h', 'i'}, uint64(1), []byte("hi"))
	f.Add([]byte{0x80}, uint64(1<<63), []byte{0})
	f.Add(bytes.Repeat([]byte{0xff}, 10), ^uint64(0), bytes.Repeat([]byte{7}, 300))
	f.Fuzz(func(t *testing.T, body []byte, seq uint64, payload []byte) {
		// Timed frames: never panic; a valid one round-trips.
		if ts, _, tp, err := parseTimed(body); err != nil {
			if !errors.Is(err, errProtocol) {
				t.Fatalf("timed: error %v is not a protocol violation", err)
			}
		} else if len(tp) > len(body) {
			t.Fatalf("timed: payload of %d bytes from a %d-byte body (seq %d)", len(tp), len(body), ts)
		}
		us := seq >> 2 // within the timestamp range parseTimed accepts
		fr := append(timedHeader(nil, seq, us, len(payload)), payload...)
		typ, b, err := newFrameReader(bytes.NewReader(fr), len(fr)+16).next()
		if err != nil || typ != frameDataTimed {
			t.Fatalf("timed frame does not read back: %v %#x", err, typ)
		}
		gs, gt, gp, err := parseTimed(b)
		if err != nil || gs != seq || uint64(gt.UnixMicro()) != us || !bytes.Equal(gp, payload) {
			t.Fatalf("timed round trip: %d %v %v %v", gs, gt, err, len(gp))
		}
		s, p, err := parseData(body)
		if err != nil {
			if !errors.Is(err, errProtocol) {
				t.Fatalf("error %v is not a protocol violation", err)
			}
		} else {
			if len(p) > len(body) || (len(p) > 0 && &p[len(p)-1] != &body[len(body)-1]) {
				t.Fatalf("payload %x is not the tail of the body %x", p, body)
			}
			if _, n := binary.Uvarint(body); n == len(binary.AppendUvarint(nil, s)) {
				hdr := dataHeader(nil, s, len(p))
				_, hn := binary.Uvarint(hdr)
				if rebuilt := append(hdr[hn+1:], p...); !bytes.Equal(rebuilt, body) {
					t.Fatalf("seq %d payload %x rebuild %x, want %x", s, p, rebuilt, body)
				}
			}
		}

		frame := append(dataHeader(nil, seq, len(payload)), payload...)
		typ, b, err = newFrameReader(bytes.NewReader(frame), len(frame)).next()
		if err != nil || typ != frameData {
			t.Fatalf("data frame %x reads back as type %#x (%v)", frame, typ, err)
		}
		gs, gp, err = parseData(b)
		if err != nil || gs != seq || !bytes.Equal(gp, payload) {
			t.Fatalf("seq %d payload %x read back as seq %d payload %x (%v)", seq, payload, gs, gp, err)
		}
	})
}

// FuzzConsumerFrame: the producer's decoder of what a consumer that speaks
// featureCloseFrames may send after Subscribe (one Close frame) never
// panics, refuses oversize bodies and code 0, and returns what it decoded.
func FuzzConsumerFrame(f *testing.F) {
	f.Add(frameClose, closeFrame(CodeCancelled, "bye")[2:])
	f.Add(frameClose, []byte{})
	f.Add(frameData, []byte{1, 'x'})
	f.Add(frameClose, make([]byte, maxControlFrame+1))
	f.Fuzz(func(t *testing.T, typ byte, body []byte) {
		code, reason, err := parseConsumerFrame(typ, body)
		if err != nil {
			if !errors.Is(err, errProtocol) {
				t.Fatalf("error %v is not a protocol violation", err)
			}
			return
		}
		if typ != frameClose || len(body) > maxControlFrame || code == 0 {
			t.Fatalf("accepted type %#x, %d bytes, code %d", typ, len(body), code)
		}
		var m pb.Close
		if proto.Unmarshal(body, &m) != nil || Code(m.GetCode()) != code || m.GetReason() != reason {
			t.Fatalf("decoded %d %q, protobuf says %+v", code, reason, &m)
		}
	})
}

// TestShortReason: reasons are cut to maxReason bytes and stay valid
// UTF-8, or the Close frame would not encode.
func TestShortReason(t *testing.T) {
	long := strings.Repeat("é", maxReason) // 2 bytes each: a cut falls on a rune boundary or not
	for _, s := range []string{"", "bye", long, "x" + long} {
		got := shortReason(s)
		if len(got) > maxReason || !utf8.ValidString(got) {
			t.Errorf("shortReason(%d bytes) = %d bytes, valid %v", len(s), len(got), utf8.ValidString(got))
		}
		if len(closeFrame(CodeTooSlow, s)) == 0 {
			t.Errorf("no Close frame for a reason of %d bytes", len(s))
		}
	}
}
