package collections

import (
	"bytes"
	"encoding/binary"
	"unicode/utf8"
)

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

// decodeCommandFast decodes the usual shape of a command (every argument
// A, B, C one canonical string or null, no batch arguments) by hand,
// with its arguments in one allocation; the groups CBOR codec decodes
// such an entry by reflection, one allocation per argument. It returns
// false on anything else, which the general decoder then decides; on
// what it accepts it gives what the general decoder gives (each argument
// the item's bytes, null as itself, FuzzCommandDecodeFast).
func decodeCommandFast(b []byte) (command, bool) {
	const null = 0xf6
	if len(b) < 8 || b[0] != 0x87 { // an array of the command's 7 fields
		return command{}, false
	}
	p := 1
	op, n := uintItem(b[p:])
	if n == 0 || op > 0xff {
		return command{}, false
	}
	p += n
	start := p
	var ends [3]int // of A, B and C
	for i := range ends {
		if p >= len(b) {
			return command{}, false
		}
		if b[p] != null {
			l := stringItemLen(b[p:])
			if l == 0 {
				return command{}, false
			}
			s, ok := canonicalString(b[p:p+l], b[p]>>5)
			if !ok || (b[p]>>5 == cborText && !utf8.Valid(s)) {
				return command{}, false
			}
			p += l
		} else {
			p++
		}
		ends[i] = p
	}
	nv, n := uintItem(b[p:])
	if n == 0 {
		return command{}, false
	}
	p += n
	mv, n := uintItem(b[p:])
	if n == 0 {
		return command{}, false
	}
	p += n
	if p != len(b)-1 || b[p] != null { // Many: null, and nothing after it
		return command{}, false
	}
	buf := bytes.Clone(b[start:ends[2]])
	ea, eb := ends[0]-start, ends[1]-start
	return command{Op: uint8(op), A: buf[:ea:ea], B: buf[ea:eb:eb], C: buf[eb:], N: nv, M: mv}, true
}

// uintItem returns the value of the unsigned integer b starts with, in
// any head length (as the general decoder takes it), and the item's
// length, 0 when b starts with anything else or is cut short.
func uintItem(b []byte) (uint64, int) {
	if len(b) == 0 || b[0]>>5 != 0 {
		return 0, 0
	}
	switch ai := b[0] & 0x1f; {
	case ai < 24:
		return uint64(ai), 1
	case ai == 24 && len(b) >= 2:
		return uint64(b[1]), 2
	case ai == 25 && len(b) >= 3:
		return uint64(binary.BigEndian.Uint16(b[1:])), 3
	case ai == 26 && len(b) >= 5:
		return uint64(binary.BigEndian.Uint32(b[1:])), 5
	case ai == 27 && len(b) >= 9:
		return binary.BigEndian.Uint64(b[1:]), 9
	}
	return 0, 0
}
