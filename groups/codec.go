package groups

import (
	"github.com/fxamacker/cbor/v2"
)

// Codec encodes commands for the log. Encode must be deterministic (every
// member decodes the same bytes) and both methods safe for concurrent use.
type Codec[T any] interface {
	Encode(v T) ([]byte, error)
	Decode(b []byte) (T, error)
}

var (
	cborEnc cbor.EncMode
	cborDec cbor.DecMode
)

func init() {
	var err error
	if cborEnc, err = cbor.CoreDetEncOptions().EncMode(); err != nil {
		panic(err)
	}
	if cborDec, err = (cbor.DecOptions{MaxArrayElements: 1 << 20, MaxMapPairs: 1 << 20, MaxNestedLevels: 32}).DecMode(); err != nil {
		panic(err)
	}
}

// CBOR is the default codec: RFC 8949 core deterministic CBOR, with
// decoding limits against hostile input.
type CBOR[T any] struct{}

// Encode implements Codec.
func (CBOR[T]) Encode(v T) ([]byte, error) { return cborEnc.Marshal(v) }

// Decode implements Codec.
func (CBOR[T]) Decode(b []byte) (T, error) {
	var v T
	err := cborDec.Unmarshal(b, &v)
	return v, err
}

// CBOREncoder returns a deterministic CBOR stream encoder, for state
// machines that write snapshots as a stream of values.
func CBOREncoder(w interface{ Write([]byte) (int, error) }) *cbor.Encoder {
	return cborEnc.NewEncoder(w)
}

// CBORDecoder returns a stream decoder with the package's limits.
func CBORDecoder(r interface{ Read([]byte) (int, error) }) *cbor.Decoder {
	return cborDec.NewDecoder(r)
}
