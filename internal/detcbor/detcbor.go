// Package detcbor is the deterministic CBOR that mosaik-go's codecs share
// (the streams codec, group commands, and next the collections, whose
// compare-and-exchange compares encodings): RFC 8949 core deterministic
// encoding, and decoding limits against hostile input.
package detcbor

import (
	"io"

	"github.com/fxamacker/cbor/v2"
)

// The decoding limits: elements of one array, pairs of one map, nested
// levels of arrays, maps and tags (the outermost counts).
const (
	MaxElements = 1 << 20
	MaxLevels   = 32
)

var (
	enc    cbor.EncMode
	dec    cbor.DecMode
	strict cbor.DecMode // dec without indefinite lengths (Wellformed)
	// inner[k]: strict for an item nested k levels deep in another
	// (WellformedInside).
	inner [3]cbor.DecMode
)

func init() {
	var err error
	opts := cbor.CoreDetEncOptions()
	// A time.Time as RFC 3339 text with its nanoseconds, in UTC: the core
	// options' whole seconds lose the fraction, so two instants a moment
	// apart were one value (one map key, one compare-and-exchange match)
	// and a value read back was not the one written; and one instant must
	// have one encoding whatever zone the writer's clock is in.
	opts.Time = cbor.TimeRFC3339NanoUTC
	if enc, err = opts.EncMode(); err != nil {
		panic(err)
	}
	// Limits bound what a hostile frame can make a decoder allocate.
	limits := cbor.DecOptions{MaxArrayElements: MaxElements, MaxMapPairs: MaxElements, MaxNestedLevels: MaxLevels}
	if dec, err = limits.DecMode(); err != nil {
		panic(err)
	}
	limits.IndefLength = cbor.IndefLengthForbidden
	if strict, err = limits.DecMode(); err != nil {
		panic(err)
	}
	for k := range inner {
		limits.MaxNestedLevels = MaxLevels - k
		if inner[k], err = limits.DecMode(); err != nil {
			panic(err)
		}
	}
}

// WellformedInside is Wellformed for an item that is written nested k
// levels deep in another (0 ≤ k ≤ 2): it must leave them room within the
// nesting limit, or the whole fails to decode while the item alone does.
func WellformedInside(b []byte, k int) error { return inner[k].Wellformed(b) }

// Wellformed reports whether b is one well-formed CBOR item within the
// decoding limits that the deterministic encoder would also write as raw
// bytes (a cbor.RawMessage): no indefinite-length string, array or map.
func Wellformed(b []byte) error { return strict.Wellformed(b) }

// Marshal encodes v deterministically: equal values give equal bytes.
func Marshal(v any) ([]byte, error) { return enc.Marshal(v) }

// Unmarshal decodes b into v within the decoding limits.
func Unmarshal(b []byte, v any) error { return dec.Unmarshal(b, v) }

// UnmarshalFirst decodes the first CBOR item of b into v within the
// decoding limits and returns the bytes after it.
func UnmarshalFirst(b []byte, v any) ([]byte, error) { return dec.UnmarshalFirst(b, v) }

// NewEncoder returns a deterministic stream encoder.
func NewEncoder(w io.Writer) *cbor.Encoder { return enc.NewEncoder(w) }

// NewDecoder returns a stream decoder with the decoding limits.
func NewDecoder(r io.Reader) *cbor.Decoder { return dec.NewDecoder(r) }
