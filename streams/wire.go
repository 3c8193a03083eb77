package streams

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/protocol"
	"google.golang.org/protobuf/proto"

	"github.com/mosaik-go/mosaik/internal/framer"
	"github.com/mosaik-go/mosaik/streams/pb"
)

// ProtocolID is the libp2p protocol of data streams.
const ProtocolID protocol.ID = "/mosaik/streams/1.0.0"

// Frame types: the first byte of every frame body.
const (
	frameSubscribe byte = 0x01
	frameAccept    byte = 0x02
	frameReject    byte = 0x03
	frameClose     byte = 0x04
	frameData      byte = 0x10
	frameDataTimed byte = 0x11 // a data frame stamped with its write time
)

// maxControlFrame caps the message of a control frame (Subscribe,
// Accept, Reject, Close): the frame, type byte included, is at most one
// byte longer. Both ends read control frames under that same cap.
const maxControlFrame = 4 << 10

// Features a Subscribe offers and an Accept confirms (PROTOCOL.md 16.3).
const (
	// featureCloseFrames: every end of an admitted subscription is carried
	// in-band as a Close frame when it can be written, in both directions,
	// with the stream reset code kept for when it cannot.
	featureCloseFrames uint32 = 1
	// featureReplay: the consumer may ask to resume from the producer's
	// replay window (Subscribe.resume); a producer confirms it only when
	// it has a window (PROTOCOL.md 16.6).
	featureReplay     uint32 = 2
	supportedFeatures        = featureCloseFrames | featureReplay
)

// maxReason caps the reason of the Close and Reject frames mosaik-go
// writes; longer reasons are cut. Receivers take up to maxControlFrame.
const maxReason = 256

var errProtocol = errors.New("streams: protocol violation")

// frameReader reads typed frames through the shared framer: the cap is
// checked before anything is read, and memory follows the bytes that
// arrive. A returned body from next is valid only until the next call.
type frameReader struct {
	fr *framer.Reader
}

func newFrameReader(r io.Reader, max int) *frameReader {
	return &frameReader{fr: framer.NewReader(r, max)}
}

// next returns the type and body of the next frame.
func (r *frameReader) next() (byte, []byte, error) {
	b, err := r.fr.Next()
	if err != nil {
		return 0, nil, r.mapErr(err)
	}
	if len(b) == 0 {
		return 0, nil, fmt.Errorf("%w: empty frame", errProtocol)
	}
	return b[0], b[1:], nil
}

// nextInto is next reading the body into a buffer from get, so that the
// body stays valid after the next call. It returns that buffer too, for
// recycling (nil when get was not called).
func (r *frameReader) nextInto(get func(n int) []byte) (typ byte, body, buf []byte, err error) {
	b, buf, err := r.fr.NextInto(get)
	if err != nil {
		return 0, nil, buf, r.mapErr(err)
	}
	if len(b) == 0 {
		return 0, nil, buf, fmt.Errorf("%w: empty frame", errProtocol)
	}
	return b[0], b[1:], buf, nil
}

// mapErr turns an oversize claim into a protocol violation; a clean end
// stays io.EOF and a truncated frame io.ErrUnexpectedEOF.
func (r *frameReader) mapErr(err error) error {
	if errors.Is(err, framer.ErrTooLarge) {
		// framer says "frame exceeds size limit: N > MAX bytes".
		return fmt.Errorf("%w: frame exceeds the limit of %d bytes (%v)", errProtocol, r.fr.Max(), err)
	}
	if errors.Is(err, framer.ErrBadLength) {
		return fmt.Errorf("%w: %v", errProtocol, err)
	}
	return err
}

// setMax changes the cap for the frames that follow: a consumer reads the
// producer's Accept or Reject under the control frames' cap, and data
// frames after it under MaxFrameSize.
func (r *frameReader) setMax(max int) { r.fr.SetMax(max) }

// buffered reports whether bytes past the last frame were already read.
func (r *frameReader) buffered() bool { return r.fr.Buffered() > 0 }

// complete reports whether the next frame is buffered whole (next does
// not block).
func (r *frameReader) complete() bool { return r.fr.Complete() }

// appendControl appends a framed control message.
func appendControl(dst []byte, typ byte, m proto.Message) ([]byte, error) {
	body, err := proto.Marshal(m)
	if err != nil {
		return dst, err
	}
	dst = binary.AppendUvarint(dst, uint64(len(body)+1))
	dst = append(dst, typ)
	return append(dst, body...), nil
}

// maxDataHeader is the most a data frame adds to its payload within the
// frame length: the type byte, the sequence number and the timestamp.
const maxDataHeader = 1 + 2*binary.MaxVarintLen64

// dataHeader appends the header of a data frame carrying seq and a payload
// of n bytes; the payload follows it on the wire.
func dataHeader(dst []byte, seq uint64, n int) []byte {
	var tmp [binary.MaxVarintLen64]byte
	sl := binary.PutUvarint(tmp[:], seq)
	dst = binary.AppendUvarint(dst, uint64(1+sl+n))
	dst = append(dst, frameData)
	return append(dst, tmp[:sl]...)
}

// timedHeader is dataHeader for a frame stamped with the write time in
// unix microseconds: uvarint(seq) ‖ uvarint(micros) ‖ payload.
func timedHeader(dst []byte, seq uint64, micros uint64, n int) []byte {
	var tmp [2 * binary.MaxVarintLen64]byte
	sl := binary.PutUvarint(tmp[:], seq)
	sl += binary.PutUvarint(tmp[sl:], micros)
	dst = binary.AppendUvarint(dst, uint64(1+sl+n))
	dst = append(dst, frameDataTimed)
	return append(dst, tmp[:sl]...)
}

// parseTimed splits a timed data frame body into its sequence number, the
// producer's write time and the payload.
func parseTimed(body []byte) (uint64, time.Time, []byte, error) {
	seq, n := binary.Uvarint(body)
	if n <= 0 {
		return 0, time.Time{}, nil, fmt.Errorf("%w: bad data frame sequence number", errProtocol)
	}
	us, m := binary.Uvarint(body[n:])
	if m <= 0 || us > 1<<62 {
		return 0, time.Time{}, nil, fmt.Errorf("%w: bad data frame timestamp", errProtocol)
	}
	return seq, time.UnixMicro(int64(us)), body[n+m:], nil
}

// parseData splits a data frame body into its sequence number and payload.
func parseData(body []byte) (uint64, []byte, error) {
	seq, n := binary.Uvarint(body)
	if n <= 0 {
		return 0, nil, fmt.Errorf("%w: bad data frame sequence number", errProtocol)
	}
	return seq, body[n:], nil
}

func decodeControl[M proto.Message](body []byte, m M) (M, error) {
	if len(body) > maxControlFrame {
		return m, fmt.Errorf("%w: control frame of %d bytes", errProtocol, len(body))
	}
	if err := proto.Unmarshal(body, m); err != nil {
		return m, fmt.Errorf("%w: %v", errProtocol, err)
	}
	return m, nil
}

func closeFrame(code Code, reason string) []byte {
	b, _ := appendControl(nil, frameClose, &pb.Close{Code: uint32(code), Reason: shortReason(reason)})
	return b
}

func rejectFrame(code Code, reason string) []byte {
	b, _ := appendControl(nil, frameReject, &pb.Reject{Code: uint32(code), Reason: shortReason(reason)})
	return b
}

// shortReason cuts a reason to maxReason bytes, keeping it valid UTF-8 (a
// proto3 string must be).
func shortReason(s string) string {
	if len(s) > maxReason {
		s = s[:maxReason]
	}
	return strings.ToValidUTF8(s, "")
}

// parseConsumerFrame decodes a frame a consumer sent after Subscribe. With
// featureCloseFrames the only one allowed is a Close with a non-zero code;
// anything else is a protocol violation.
func parseConsumerFrame(typ byte, body []byte) (Code, string, error) {
	if typ != frameClose {
		return 0, "", fmt.Errorf("%w: consumer sent frame type %#x", errProtocol, typ)
	}
	m, err := decodeControl(body, &pb.Close{})
	if err != nil {
		return 0, "", err
	}
	if m.GetCode() == 0 {
		return 0, "", fmt.Errorf("%w: Close with code 0", errProtocol)
	}
	return Code(m.GetCode()), m.GetReason(), nil
}
