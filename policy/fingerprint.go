package policy

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"hash"
	"math/big"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/mosaik-go/mosaik/catalog"
)

// Fingerprinter is implemented by ticket validators that can summarise
// their configuration: two validators with equal fingerprints accept
// exactly the same tickets. Groups derive their ID from the fingerprints
// of their validators, in order, so that members configured differently
// never join one group. Fingerprint must be pure and stable across
// processes and releases: hash an explicit, tagged encoding of the
// configuration, never reflection, Go type names or map order.
type Fingerprinter interface {
	Fingerprint() [32]byte
}

var (
	_ Fingerprinter = (*JWT)(nil)
	_ Fingerprinter = (*SignedTicketValidator)(nil)
)

// Type tags of the built-in validators' fingerprints. A change to what a
// fingerprint covers takes a new tag, so that old and new never collide.
const (
	jwtFingerprintTag    = "mosaik.policy.fingerprint.jwt.v1"
	signedFingerprintTag = "mosaik.policy.fingerprint.libp2p-signed.v1"
)

// fingerprint hashes a sequence of tagged fields. Every string and byte
// string is length-prefixed, so no two sequences of fields encode alike.
type fingerprint struct{ h hash.Hash }

func newFingerprint(typeTag string) *fingerprint {
	f := &fingerprint{h: sha256.New()}
	f.bytes([]byte(typeTag))
	return f
}

func (f *fingerprint) bytes(b []byte) {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(b)))
	f.h.Write(n[:])
	f.h.Write(b)
}

func (f *fingerprint) field(name string, value []byte) {
	f.bytes([]byte(name))
	f.bytes(value)
}

func (f *fingerprint) str(name, value string)       { f.field(name, []byte(value)) }
func (f *fingerprint) id(name string, v catalog.ID) { f.field(name, v[:]) }

func (f *fingerprint) flag(name string, v bool) {
	b := []byte{0}
	if v {
		b[0] = 1
	}
	f.field(name, b)
}

func (f *fingerprint) duration(name string, d time.Duration) {
	f.field(name, binary.BigEndian.AppendUint64(nil, uint64(d)))
}

// set writes a field holding values as a set: sorted and without
// duplicates, so the order of configuration calls does not matter where
// it does not change what is accepted.
func (f *fingerprint) set(name string, values [][]byte) {
	values = slices.Clone(values)
	slices.SortFunc(values, bytes.Compare)
	values = slices.CompactFunc(values, bytes.Equal)
	f.bytes([]byte(name))
	f.h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(values))))
	for _, v := range values {
		f.bytes(v)
	}
}

func (f *fingerprint) sum() [32]byte {
	var out [32]byte
	f.h.Sum(out[:0])
	return out
}

// Fingerprint implements Fingerprinter. It covers the network, the class,
// AcceptUnbound, the keys (as sets: the order of AddKey does not matter),
// the issuer and audience allow-lists (as sets), the required subject and
// claims, and the time limits. An HMAC key enters it through its SHA-256,
// which is no weaker than a JWT signed with the same secret, itself public
// in the holder's entry: an HMAC secret must be random, never derived from
// a password.
func (v *JWT) Fingerprint() [32]byte {
	f := newFingerprint(jwtFingerprintTag)
	f.id("network", v.network)
	f.id("class", v.class)
	f.flag("accept-unbound", v.acceptUnbound)
	keys := make([][]byte, 0, len(v.keys))
	for _, k := range v.keys {
		keys = append(keys, k.fingerprintBytes())
	}
	f.set("keys", keys)
	f.set("issuers", stringsAsBytes(v.issuers))
	f.set("audiences", stringsAsBytes(v.audiences))
	f.flag("has-subject", v.hasSubject)
	f.str("subject", v.subject)
	for _, c := range v.claims { // sorted by name and unique
		f.field("claim", appendLengthPrefixed(appendLengthPrefixed(nil, []byte(c.name)), canonicalJSON(nil, c.value)))
	}
	f.flag("allow-non-expiring", v.allowNonExpiring)
	f.duration("max-lifetime", v.maxLifetime)
	f.duration("max-age", v.maxAge)
	f.duration("leeway", v.leeway)
	return f.sum()
}

// fingerprintBytes encodes a verifying key as algorithm and key material.
func (k JWTKey) fingerprintBytes() []byte {
	var material []byte
	switch key := k.key.(type) {
	case []byte:
		sum := sha256.Sum256(key)
		material = sum[:]
	case *ecdsa.PublicKey:
		material, _ = key.Bytes() // valid by construction
	case ed25519.PublicKey:
		material = key
	}
	return appendLengthPrefixed(appendLengthPrefixed(nil, []byte(k.alg)), material)
}

// Fingerprint implements Fingerprinter. It covers the network, the class,
// the trusted issuers (as a set), AllowNonExpiring, the leeway and the
// required claims; not the cache size, which changes no verdict.
func (v *SignedTicketValidator) Fingerprint() [32]byte {
	f := newFingerprint(signedFingerprintTag)
	f.id("network", v.network)
	f.id("class", v.class)
	issuers := make([][]byte, 0, len(v.issuers))
	for _, id := range v.issuers {
		issuers = append(issuers, []byte(id))
	}
	f.set("issuers", issuers)
	f.flag("allow-non-expiring", v.allowNonExpiring)
	f.duration("leeway", v.leeway)
	names := make([]string, 0, len(v.claims))
	for name := range v.claims {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		f.field("claim", appendLengthPrefixed(appendLengthPrefixed(nil, []byte(name)), []byte(v.claims[name])))
	}
	return f.sum()
}

func stringsAsBytes(ss []string) [][]byte {
	out := make([][]byte, len(ss))
	for i, s := range ss {
		out[i] = []byte(s)
	}
	return out
}

func appendLengthPrefixed(dst, b []byte) []byte {
	dst = binary.BigEndian.AppendUint64(dst, uint64(len(b)))
	return append(dst, b...)
}

// canonicalJSON appends a decoded JSON value (numbers as json.Number) in
// one form per value as jsonEqual sees it: object keys sorted, numbers as
// integers when they are, else in the shortest float64 form.
func canonicalJSON(dst []byte, v any) []byte {
	switch x := v.(type) {
	case nil:
		return append(dst, "null"...)
	case bool:
		return strconv.AppendBool(dst, x)
	case string:
		b, _ := json.Marshal(x)
		return append(dst, b...)
	case json.Number:
		var i big.Int
		if _, ok := i.SetString(string(x), 10); ok {
			return i.Append(dst, 10)
		}
		if fl, err := x.Float64(); err == nil {
			return strconv.AppendFloat(dst, fl, 'g', -1, 64)
		}
		return append(dst, x...)
	case []any:
		dst = append(dst, '[')
		for i, e := range x {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = canonicalJSON(dst, e)
		}
		return append(dst, ']')
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		dst = append(dst, '{')
		for i, k := range keys {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = canonicalJSON(dst, k)
			dst = append(dst, ':')
			dst = canonicalJSON(dst, x[k])
		}
		return append(dst, '}')
	}
	return dst
}
