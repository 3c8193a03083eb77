package groups

import (
	"github.com/fxamacker/cbor/v2"

	"github.com/mosaik-go/mosaik/internal/detcbor"
)

// Codec encodes commands for the log. Encode must be deterministic (every
// member decodes the same bytes) and both methods safe for concurrent use.
type Codec[T any] interface {
	Encode(v T) ([]byte, error)
	Decode(b []byte) (T, error)
}

// CBOR is the default codec: RFC 8949 core deterministic CBOR, with
// decoding limits against hostile input.
type CBOR[T any] struct{}

// Encode implements Codec.
func (CBOR[T]) Encode(v T) ([]byte, error) { return detcbor.Marshal(v) }

// Decode implements Codec.
func (CBOR[T]) Decode(b []byte) (T, error) {
	var v T
	err := detcbor.Unmarshal(b, &v)
	return v, err
}

// CBOREncoder returns a deterministic CBOR stream encoder, for state
// machines that write snapshots as a stream of values.
func CBOREncoder(w interface{ Write([]byte) (int, error) }) *cbor.Encoder {
	return detcbor.NewEncoder(w)
}

// CBORDecoder returns a stream decoder with the package's limits.
func CBORDecoder(r interface{ Read([]byte) (int, error) }) *cbor.Decoder {
	return detcbor.NewDecoder(r)
}
