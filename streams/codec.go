package streams

import (
	"encoding/json"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/mosaik-go/mosaik/internal/detcbor"
)

// Codec turns datums into bytes and back. Implementations must be safe for
// concurrent use. Encode is called once per datum however many consumers
// there are.
type Codec[T any] interface {
	Encode(v T) ([]byte, error)
	Decode(b []byte) (T, error)
}

// NamedCodec is a Codec that names its encoding on the wire. The two ends
// of a subscription exchange their codecs' names in the handshake, and a
// consumer whose codec differs from the producer's is refused with
// CodecMismatch rather than fed bytes it would misread. A codec without a
// name (or an empty one) is not checked. The built-in names are "cbor",
// "json", "raw" (Bytes and BorrowedBytes) and "protobuf".
type NamedCodec interface {
	CodecName() string
}

// codecName returns the wire name of codec c, or "".
func codecName(c any) string {
	if n, ok := c.(NamedCodec); ok {
		return n.CodecName()
	}
	return ""
}

// CBOR is the default codec: deterministic CBOR (RFC 8949 core
// deterministic encoding) with decoding limits against hostile input.
type CBOR[T any] struct{}

func (CBOR[T]) CodecName() string          { return "cbor" }
func (CBOR[T]) Encode(v T) ([]byte, error) { return detcbor.Marshal(v) }
func (CBOR[T]) Decode(b []byte) (T, error) {
	var v T
	err := detcbor.Unmarshal(b, &v)
	return v, err
}

// JSON encodes datums with encoding/json.
type JSON[T any] struct{}

func (JSON[T]) CodecName() string          { return "json" }
func (JSON[T]) Encode(v T) ([]byte, error) { return json.Marshal(v) }
func (JSON[T]) Decode(b []byte) (T, error) {
	var v T
	err := json.Unmarshal(b, &v)
	return v, err
}

// Bytes passes []byte datums through unchanged (no copy on encode; decode
// copies, since frame buffers are reused).
type Bytes struct{}

func (Bytes) CodecName() string               { return "raw" }
func (Bytes) Encode(v []byte) ([]byte, error) { return v, nil }
func (Bytes) Decode(b []byte) ([]byte, error) { return append([]byte(nil), b...), nil }

// BorrowedBytes is Bytes for consumers that read fast and keep nothing: a
// consumer with this codec hands out each datum in a buffer it recycles,
// so a datum is valid only until the next receive call (Recv, TryRecv,
// RecvDatum, or the next iteration of All) on that consumer. Copy what you
// keep, and receive from one goroutine. It saves the allocation and the
// copy of every datum, and keeps the buffers hot in the CPU cache: at 1 KiB
// it delivers about a third more datums per second than Bytes (see
// BENCHMARKS.md). On the wire and at a producer it is Bytes, so either end
// may use either.
type BorrowedBytes struct{}

func (BorrowedBytes) CodecName() string               { return "raw" }
func (BorrowedBytes) Encode(v []byte) ([]byte, error) { return v, nil }

// Decode returns b itself: the consumer reads each datum into a buffer of
// its own, recycled after the application's next receive call.
func (BorrowedBytes) Decode(b []byte) ([]byte, error) { return b, nil }

func (BorrowedBytes) borrowsBuffers() {}

// borrower marks codecs whose Decode keeps a reference to its input.
type borrower interface{ borrowsBuffers() }

// Proto encodes protobuf messages. T is the message pointer type, e.g.
// Proto[*mypb.Order]; New must return a fresh empty message.
type Proto[T proto.Message] struct{ New func() T }

func (c Proto[T]) CodecName() string          { return "protobuf" }
func (c Proto[T]) Encode(v T) ([]byte, error) { return proto.Marshal(v) }
func (c Proto[T]) Decode(b []byte) (T, error) {
	if c.New == nil {
		var zero T
		return zero, fmt.Errorf("streams: Proto codec needs New")
	}
	m := c.New()
	return m, proto.Unmarshal(b, m)
}
