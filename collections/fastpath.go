package collections

import "encoding/binary"

// CBOR major types of the strings decode takes a fast path for.
const (
	cborBytes = 2
	cborText  = 3
)

// canonicalString returns the content of raw when raw is exactly one
// definite-length string of the given major type whose length is in its
// shortest form, which is how the canonical encoder writes every string.
// It does not check UTF-8.
func canonicalString(raw []byte, major byte) ([]byte, bool) {
	if len(raw) == 0 || raw[0]>>5 != major {
		return nil, false
	}
	var n uint64
	var h int
	switch ai := raw[0] & 0x1f; {
	case ai < 24:
		n, h = uint64(ai), 1
	case ai == 24 && len(raw) >= 2:
		n, h = uint64(raw[1]), 2
		if n < 24 {
			return nil, false
		}
	case ai == 25 && len(raw) >= 3:
		n, h = uint64(binary.BigEndian.Uint16(raw[1:])), 3
		if n <= 0xff {
			return nil, false
		}
	case ai == 26 && len(raw) >= 5:
		n, h = uint64(binary.BigEndian.Uint32(raw[1:])), 5
		if n <= 0xffff {
			return nil, false
		}
	case ai == 27 && len(raw) >= 9:
		n, h = binary.BigEndian.Uint64(raw[1:]), 9
		if n <= 0xffffffff {
			return nil, false
		}
	default:
		return nil, false
	}
	if uint64(len(raw)-h) != n {
		return nil, false
	}
	return raw[h:], true
}

// stringItemLen returns the length of the definite-length byte or text
// string that b starts with (head and content, shortest head or not), or
// 0 when b starts with anything else or is cut short.
func stringItemLen(b []byte) int {
	if len(b) == 0 || (b[0]>>5 != cborBytes && b[0]>>5 != cborText) {
		return 0
	}
	var n uint64
	var h int
	switch ai := b[0] & 0x1f; {
	case ai < 24:
		n, h = uint64(ai), 1
	case ai == 24 && len(b) >= 2:
		n, h = uint64(b[1]), 2
	case ai == 25 && len(b) >= 3:
		n, h = uint64(binary.BigEndian.Uint16(b[1:])), 3
	case ai == 26 && len(b) >= 5:
		n, h = uint64(binary.BigEndian.Uint32(b[1:])), 5
	case ai == 27 && len(b) >= 9:
		n, h = binary.BigEndian.Uint64(b[1:]), 9
	default:
		return 0
	}
	if n > uint64(len(b)-h) {
		return 0
	}
	return h + int(n)
}
