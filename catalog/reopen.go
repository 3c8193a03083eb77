package catalog

import (
	"bytes"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	cryptopb "github.com/libp2p/go-libp2p/core/crypto/pb"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Most entries a node receives are heartbeats: the peer's previous entry
// with a new version and signature (a bump, see ContentHash). Decoding one
// in full (the envelope, the entry's protobuf, its multiaddrs, then
// compacting and interning them) was about a third of the cost of a
// gossip heartbeat beyond its signature check, and most of its garbage.
// openSame recognises such an entry by its bytes: when everything but the
// version field and the signature equals the held entry of the same key,
// the decoded entry is the held one with the new version, so it is built
// from it instead. Every check of the full path still runs on it (the
// catalog's rules, the signature, admission); only the decoding, which
// would give the same result, is skipped.

// maxInlineKey is the longest public key whose peer ID is the key itself
// (an identity multihash, as for every ed25519 key); a longer key's ID is
// its hash, which openSame does not compute: such entries take the full
// path.
const maxInlineKey = 42

// openSame opens data from the entry the catalog holds for the same key
// when data differs from it only in its version and signature (see
// above). applied reports whether it did; when it did not, the caller
// opens data in full, with the same outcome openSame would have had. When
// it did, e and err are what the full path would return.
func (s *Store) openSame(data []byte, now time.Time, owned bool) (e *SignedEntry, applied bool, err error) {
	maxSize := s.params.MaxEntrySize
	if maxSize <= 0 {
		maxSize = DefaultMaxEntrySize
	}
	if len(data) > maxSize {
		return nil, false, nil
	}
	p, payload, field, ok := splitParts(data)
	if !ok || len(p.key) > maxInlineKey {
		return nil, false, nil
	}
	v, ok := parseVersionField(field)
	if !ok {
		return nil, false, nil
	}
	// The ID of an inline key is the identity multihash of its bytes. The
	// lookup is only a hint: what proves the peer is that the key bytes
	// equal those of the held entry, which was checked to be the peer's.
	var idb [2 + maxInlineKey]byte
	idb[0], idb[1] = 0x00, byte(len(p.key)) // identity code, length
	n := copy(idb[2:], p.key)
	old, known := s.cur.Load().st.get(peer.ID(idb[:2+n]))
	if !known {
		return nil, false, nil
	}
	op, ok := splitCanonical(old.e.raw, old.e.Entry.Version)
	if !ok || !bytes.Equal(p.key, op.key) || !bytes.Equal(p.payloadType, op.payloadType) ||
		!bytes.Equal(p.pre, op.pre) || !bytes.Equal(p.post, op.post) {
		return nil, false, nil
	}
	e = &SignedEntry{Entry: old.e.Entry, raw: data[:len(data):len(data)]}
	e.Entry.Version = v
	if h, ok := old.e.ContentHash(); ok {
		e.hash.Store(h)
		e.hashState.Store(hashOK)
	}
	if err := s.cheapCheck(e, now, true); err != nil {
		return nil, true, err
	}
	key, err := crypto.UnmarshalPublicKey(p.key)
	if err != nil || key.Type() != cryptopb.KeyType_Ed25519 {
		// Cannot be: the held entry's key is these bytes.
		return nil, false, nil
	}
	env := envelope{key: key, payloadType: p.payloadType, payload: payload, sig: p.sig}
	s.verified.Add(1)
	if err := env.verify(EntryDomain); err != nil {
		return nil, true, err
	}
	if _, err := s.admit(e, now); err != nil {
		return nil, true, err
	}
	// The held entry's tickets point into its own sealed bytes: point the
	// new entry's into its own, or it would keep the old bytes alive.
	e.Entry.Tickets = slices.Clone(e.Entry.Tickets)
	e.ownRaw(owned)
	return e, true, nil
}
