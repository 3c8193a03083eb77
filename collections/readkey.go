package collections

import (
	"encoding/binary"
	"sync"

	"github.com/mosaik-go/mosaik/internal/detcbor"
)

// readKeyBufs holds buffers for the key encodings of local reads (Get,
// Contains): a read encodes its key, searches with it and drops it, so the
// buffer goes back to the pool and a read of a string, byte-string or
// integer key allocates nothing.
var readKeyBufs = sync.Pool{New: func() any { return new([]byte) }}

// readKeyMaxPooled is the largest buffer put back into readKeyBufs; a huge
// key's buffer is left to the collector.
const readKeyMaxPooled = 1 << 10

// readKey is the canonical encoding of a key for one local read. Call
// release once done with enc (enc must not be kept).
type readKey struct {
	enc []byte
	buf *[]byte // pooled, or nil
}

// encodeReadKey encodes k as detcbor.Marshal does. Strings, byte strings
// and integers are encoded here, into a pooled buffer and without boxing
// k; other types go through detcbor. It reports false if k cannot be
// encoded (it is then absent from every collection).
//
// Reads use plain marshalling rather than encode's round-trip check: a key
// whose bytes are no canonical K (a string that is not UTF-8) is absent
// anyway, since no command carrying it applies.
func encodeReadKey[K any](k K) (readKey, bool) {
	p := readKeyBufs.Get().(*[]byte)
	if enc, ok := appendCanonicalKey((*p)[:0], k); ok {
		*p = enc
		return readKey{enc: enc, buf: p}, true
	}
	readKeyBufs.Put(p)
	enc, err := detcbor.Marshal(k)
	if err != nil {
		return readKey{}, false
	}
	return readKey{enc: enc}, true
}

func (r readKey) release() {
	if r.buf != nil && cap(*r.buf) <= readKeyMaxPooled {
		readKeyBufs.Put(r.buf)
	}
}

// appendCanonicalKey appends k's RFC 8949 core deterministic encoding
// (the encoding detcbor.Marshal gives) to dst for the kinds encoded here:
// string, non-nil []byte (detcbor writes nil as null) and the integer
// types. ok is false for any other type, dst unchanged.
// TestReadKey_MatchesDetcbor and FuzzReadKey hold it to detcbor.
func appendCanonicalKey[K any](dst []byte, k K) (_ []byte, ok bool) {
	switch v := any(k).(type) {
	case string:
		return append(appendCBORHead(dst, 0x60, uint64(len(v))), v...), true
	case []byte:
		if v == nil {
			return dst, false
		}
		return append(appendCBORHead(dst, 0x40, uint64(len(v))), v...), true
	case int:
		return appendCBORInt(dst, int64(v)), true
	case int64:
		return appendCBORInt(dst, v), true
	case int32:
		return appendCBORInt(dst, int64(v)), true
	case int16:
		return appendCBORInt(dst, int64(v)), true
	case int8:
		return appendCBORInt(dst, int64(v)), true
	case uint:
		return appendCBORHead(dst, 0x00, uint64(v)), true
	case uint64:
		return appendCBORHead(dst, 0x00, v), true
	case uint32:
		return appendCBORHead(dst, 0x00, uint64(v)), true
	case uint16:
		return appendCBORHead(dst, 0x00, uint64(v)), true
	case uint8:
		return appendCBORHead(dst, 0x00, uint64(v)), true
	}
	return dst, false
}

func appendCBORInt(dst []byte, v int64) []byte {
	if v < 0 {
		return appendCBORHead(dst, 0x20, uint64(-1-v))
	}
	return appendCBORHead(dst, 0x00, uint64(v))
}

// appendCBORHead appends the shortest head of a major type (major is its
// top three bits) with argument n.
func appendCBORHead(dst []byte, major byte, n uint64) []byte {
	switch {
	case n < 24:
		return append(dst, major|byte(n))
	case n <= 0xff:
		return append(dst, major|24, byte(n))
	case n <= 0xffff:
		return binary.BigEndian.AppendUint16(append(dst, major|25), uint16(n))
	case n <= 0xffffffff:
		return binary.BigEndian.AppendUint32(append(dst, major|26), uint32(n))
	}
	return binary.BigEndian.AppendUint64(append(dst, major|27), n)
}
