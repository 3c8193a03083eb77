package catalog

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sync"

	"google.golang.org/protobuf/encoding/protowire"
	"lukechampine.com/blake3"
)

// A heartbeat changes nothing of an entry but its version, yet re-signs it,
// so a sync would resend the whole sealed entry (about 800 bytes) for what
// is a new version and a new signature (80 bytes). A bump is that pair: a
// receiver that holds the same content at an older version rebuilds the
// new sealed bytes from its own by splicing the version in, and opens them
// like any entry. The rebuilt bytes equal the signer's only if both sides
// hold their entries in one encoding, fixed here (PROTOCOL.md section
// 10.8): both sides check it, and an entry in another encoding (no
// mosaik-go node seals one) simply travels whole.

// BumpSignatureLen is the length of the signature a bump carries: the
// ed25519 signature of the envelope.
const BumpSignatureLen = 64

// bumpHashDomain separates the content hash from other uses of BLAKE3.
const bumpHashDomain = "mosaik-catalog-bump/1"

// Envelope fields (go-libp2p core/record/pb Envelope) and the entry's
// version field, in the order a canonical envelope holds them.
const (
	envPublicKey   protowire.Number = 1
	envPayloadType protowire.Number = 2
	envPayload     protowire.Number = 3
	envSignature   protowire.Number = 5
	entryVersion   protowire.Number = 4
)

// bumpParts are the pieces of a canonical sealed entry: the envelope's
// public key and payload type, the payload before and after its version
// field, and the signature. They alias the sealed bytes.
type bumpParts struct {
	key, payloadType, pre, post, sig []byte
}

// splitCanonical splits raw into its bumpParts. It reports false unless
// raw is in canonical form (see splitParts) and its version field is the
// canonical encoding of v.
func splitCanonical(raw []byte, v Version) (bumpParts, bool) {
	p, _, field, ok := splitParts(raw)
	if !ok || !bytes.Equal(field, appendVersionField(nil, v)) {
		return bumpParts{}, false
	}
	return p, true
}

// splitParts splits raw into its bumpParts, the envelope's payload and the
// payload's version field (tag included), all aliasing raw. It reports
// false unless raw is in canonical form: exactly the envelope fields
// public key, payload type, payload and a BumpSignatureLen-byte
// signature, in that order, each once, with minimal tags and lengths; the
// payload holds exactly one version field. Whether that field is the
// canonical encoding of a version is the caller's to check.
func splitParts(raw []byte) (p bumpParts, payload, field []byte, ok bool) {
	var vals [4][]byte
	b := raw
	for i, num := range []protowire.Number{envPublicKey, envPayloadType, envPayload, envSignature} {
		n, typ, l := protowire.ConsumeTag(b)
		if l != 1 || n != num || typ != protowire.BytesType { // the four tags fit one byte
			return bumpParts{}, nil, nil, false
		}
		val, m := protowire.ConsumeBytes(b[l:])
		if m < 0 || m != protowire.SizeBytes(len(val)) {
			return bumpParts{}, nil, nil, false
		}
		vals[i], b = val, b[l+m:]
	}
	if len(b) != 0 || len(vals[3]) != BumpSignatureLen {
		return bumpParts{}, nil, nil, false
	}
	payload = vals[2]
	start, end := -1, -1
	for off := 0; off < len(payload); {
		num, typ, l := protowire.ConsumeTag(payload[off:])
		if l < 0 {
			return bumpParts{}, nil, nil, false
		}
		m := protowire.ConsumeFieldValue(num, typ, payload[off+l:])
		if m < 0 {
			return bumpParts{}, nil, nil, false
		}
		if num == entryVersion {
			if start >= 0 {
				return bumpParts{}, nil, nil, false
			}
			start, end = off, off+l+m
		}
		off += l + m
	}
	if start < 0 {
		return bumpParts{}, nil, nil, false
	}
	p = bumpParts{key: vals[0], payloadType: vals[1], pre: payload[:start], post: payload[end:], sig: vals[3]}
	return p, payload, payload[start:end], true
}

// parseVersionField decodes a version field (tag 4 included) and reports
// whether it is valid (start_ms > 0, update_ms ≥ start_ms) and in the
// canonical encoding appendVersionField gives it.
func parseVersionField(field []byte) (Version, bool) {
	_, _, l := protowire.ConsumeTag(field)
	if l < 0 {
		return Version{}, false
	}
	inner, m := protowire.ConsumeBytes(field[l:])
	if m < 0 {
		return Version{}, false
	}
	var v Version
	for b := inner; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || typ != protowire.VarintType || (num != 1 && num != 2) {
			return Version{}, false
		}
		x, k := protowire.ConsumeVarint(b[n:])
		if k < 0 {
			return Version{}, false
		}
		if num == 1 {
			v.StartMS = int64(x)
		} else {
			v.UpdateMS = int64(x)
		}
		b = b[n+k:]
	}
	if v.StartMS <= 0 || v.UpdateMS < v.StartMS || !bytes.Equal(field, appendVersionField(nil, v)) {
		return Version{}, false
	}
	return v, true
}

// appendVersionField appends the canonical encoding of the entry's
// version field: tag 4, length, then start_ms (field 1) and update_ms
// (field 2) as varints, each omitted when zero (proto3).
func appendVersionField(b []byte, v Version) []byte {
	var inner []byte
	if v.StartMS != 0 {
		inner = protowire.AppendVarint(protowire.AppendTag(inner, 1, protowire.VarintType), uint64(v.StartMS))
	}
	if v.UpdateMS != 0 {
		inner = protowire.AppendVarint(protowire.AppendTag(inner, 2, protowire.VarintType), uint64(v.UpdateMS))
	}
	return protowire.AppendBytes(protowire.AppendTag(b, entryVersion, protowire.BytesType), inner)
}

// contentHash is the first 8 bytes, big-endian, of BLAKE3-256 over the
// domain and the parts a bump leaves unchanged, each prefixed with its
// length as 4 bytes big-endian.
func (p bumpParts) contentHash() uint64 {
	h := contentHashers.Get().(*blake3.Hasher)
	defer contentHashers.Put(h)
	h.Reset()
	_, _ = h.Write([]byte(bumpHashDomain))
	var n [4]byte
	for _, part := range [][]byte{p.key, p.payloadType, p.pre, p.post} {
		binary.BigEndian.PutUint32(n[:], uint32(len(part)))
		_, _ = h.Write(n[:])
		_, _ = h.Write(part)
	}
	var sum [32]byte
	return binary.BigEndian.Uint64(h.Sum(sum[:0]))
}

// contentHashers recycles the hashers of contentHash: a BLAKE3 hasher is
// about 3 KB, and a sync's digest hashes every entry updated since the
// last one (with full replication, most of the catalog every heartbeat
// interval), which made them a fifth of a re-sync's garbage.
var contentHashers = sync.Pool{New: func() any { return blake3.New(32, nil) }}

// Content hash states of a SignedEntry, computed once.
const (
	hashUnknown uint32 = iota
	hashOK
	hashNone // not in canonical form
)

// ContentHash returns the entry's content hash: a digest of everything in
// its sealed bytes but the version and the signature (PROTOCOL.md section
// 10.8). Two canonical entries of one peer with equal hashes differ only
// in version and signature, so either can be rebuilt from the other and
// a bump. ok is false when the sealed bytes are not in canonical form:
// then no bump applies to the entry. It is computed on first use.
func (s *SignedEntry) ContentHash() (hash uint64, ok bool) {
	switch s.hashState.Load() {
	case hashOK:
		return s.hash.Load(), true
	case hashNone:
		return 0, false
	}
	p, ok := splitCanonical(s.raw, s.Entry.Version)
	if !ok {
		s.hashState.Store(hashNone)
		return 0, false
	}
	hash = p.contentHash()
	s.hash.Store(hash)
	s.hashState.Store(hashOK)
	return hash, true
}

// Signature returns the envelope's signature when the entry is in
// canonical form (see ContentHash): what a bump of this version carries.
func (s *SignedEntry) Signature() ([]byte, bool) {
	p, ok := splitCanonical(s.raw, s.Entry.Version)
	return p.sig, ok
}

// ApplyBump returns the sealed bytes of s with its version replaced by v
// and its signature by sig: the sealed entry the peer signed when it only
// changed its version to v, provided that it holds the same content hash.
// It checks only that the bump applies (ErrBadBump otherwise), not the
// signature: open the result like any received entry.
func (s *SignedEntry) ApplyBump(v Version, sig []byte) ([]byte, error) {
	if len(sig) != BumpSignatureLen {
		return nil, fmt.Errorf("%w: signature of %d bytes", ErrBadBump, len(sig))
	}
	p, ok := splitCanonical(s.raw, s.Entry.Version)
	if !ok {
		return nil, fmt.Errorf("%w: the held entry of %s is not in canonical form", ErrBadBump, s.Entry.PeerID)
	}
	field := appendVersionField(nil, v)
	payloadLen := len(p.pre) + len(field) + len(p.post)
	out := make([]byte, 0, len(s.raw)+len(field))
	out = protowire.AppendBytes(protowire.AppendTag(out, envPublicKey, protowire.BytesType), p.key)
	out = protowire.AppendBytes(protowire.AppendTag(out, envPayloadType, protowire.BytesType), p.payloadType)
	out = protowire.AppendVarint(protowire.AppendTag(out, envPayload, protowire.BytesType), uint64(payloadLen))
	out = append(append(append(out, p.pre...), field...), p.post...)
	return protowire.AppendBytes(protowire.AppendTag(out, envSignature, protowire.BytesType), sig), nil
}
