package catalog

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// ErrDuplicateIdentity marks a valid entry of the local peer that the local
// peer did not sign in this run and that is newer than its own: another
// process signs entries with the same key. Every other peer keeps the
// newer entry, so the process that signed the older one is locked out of
// the network (its announcements are ignored as not newer).
var ErrDuplicateIdentity = errors.New("catalog: another process uses the local peer's identity")

// DuplicateIdentityError describes an entry found by [Store.CheckLocalCopy]:
// the local peer's ID, the local run's version and the other process's
// newer version and addresses. errors.Is(err, ErrDuplicateIdentity) holds.
type DuplicateIdentityError struct {
	Peer   peer.ID
	Ours   Version        // the local entry's version when the other was seen
	Theirs Version        // the other process's entry version
	Addrs  []ma.Multiaddr // the addresses in the other process's entry
}

func (e *DuplicateIdentityError) Error() string {
	return fmt.Sprintf("%v: peer %s: an entry started at %s (addrs %v) is newer than ours, started at %s",
		ErrDuplicateIdentity, e.Peer, e.Theirs.StartedAt().UTC().Format("2006-01-02T15:04:05.000Z"), e.Addrs,
		e.Ours.StartedAt().UTC().Format("2006-01-02T15:04:05.000Z"))
}

func (e *DuplicateIdentityError) Unwrap() error { return ErrDuplicateIdentity }

// CheckLocalCopy judges sealed bytes that [Store.Open] refused with
// [ErrLocal]: a copy of an entry the local peer signed (or of an older
// run's) returns nil; a validly signed entry of the local peer newer than
// the current local entry returns a *DuplicateIdentityError, since only
// another process holding the key can have signed it. Malformed or forged
// bytes return the reason, as Open does. The cheap version check comes
// before the signature check, so copies of our own entry, which every sync
// and relay brings back, cost no verification; a version dated beyond
// Params.MaxClockDrift after now is refused before it too ([ErrClockDrift]),
// so a forger cannot make every copy it sends cost a verification with a
// version newer than any we will sign. A forged signature is
// [ErrBadSignature]: rejected, so that gossip penalises its sender.
func (s *Store) CheckLocalCopy(data []byte, now time.Time) error {
	e, env, err := decodeEntry(data, s.params.MaxEntrySize)
	if err != nil {
		return err
	}
	local := s.cur.Load().local
	if e.Entry.PeerID != s.localID || e.Entry.Network != s.network ||
		e.Entry.Version.Compare(local.Entry.Version) <= 0 {
		return nil
	}
	if at := e.Entry.Version.UpdatedAt(); at.After(now.Add(s.params.MaxClockDrift)) {
		return fmt.Errorf("%w: entry of the local peer updated at %v, %v ahead", ErrClockDrift, at, at.Sub(now))
	}
	s.verified.Add(1)
	if err := env.verify(EntryDomain); err != nil {
		return err
	}
	return &DuplicateIdentityError{Peer: s.localID, Ours: local.Entry.Version, Theirs: e.Entry.Version, Addrs: e.Entry.Addrs}
}

// HeldCopy reports whether data is byte for byte the entry the catalog
// holds for its peer, or the local entry: verified when it came in.
func (s *Store) HeldCopy(data []byte) bool {
	cur := s.cur.Load()
	if cur.local != nil && bytes.Equal(cur.local.raw, data) {
		return true
	}
	id, ok := entryPeer(data)
	if !ok {
		return false
	}
	it, ok := cur.st.get(id)
	return ok && bytes.Equal(it.e.raw, data)
}

// Authentic reports whether sealed entry bytes carry a valid signature of
// the peer they name, and in a closed catalog a valid admission at now:
// nil for a held copy (see [Store.HeldCopy]), and otherwise after
// verifying the signature and the admission. The error is a rejection
// (see [IsRejected]): malformed bytes, a bad signature, unadmitted.
//
// A gossip validator checks the entries of a relay batch that it ignores
// without verifying them (known versions, rate limited, the local peer's)
// with it: accepting the batch makes the router forward it whole, and a
// forged entry among them would be rejected downstream, costing this node
// the penalty that its sender deserves.
func (s *Store) Authentic(data []byte, now time.Time) error {
	if s.HeldCopy(data) {
		return nil
	}
	e, env, err := decodeEntry(data, s.params.MaxEntrySize)
	if err != nil {
		return err
	}
	s.verified.Add(1)
	if err := env.verify(EntryDomain); err != nil {
		return err
	}
	_, err = s.admit(e, now) // a closed network's next hop checks it too
	return err
}

// SealedPeer reads the peer ID that sealed entry bytes name, without
// decoding them in full or verifying anything: the identity multihash of
// an inline (ed25519) key. ok is false for anything else (malformed bytes,
// a key too large to be inline). The ID is only what the bytes claim.
func SealedPeer(data []byte) (peer.ID, bool) { return entryPeer(data) }

// entryPeer reads the peer ID of sealed entry bytes without decoding them
// in full: the identity multihash of an inline (ed25519) key, as openSame
// does. ok is false for anything else; only a hint, which HeldCopy's byte
// comparison then proves or not.
func entryPeer(data []byte) (peer.ID, bool) {
	p, _, _, ok := splitParts(data)
	if !ok || len(p.key) > maxInlineKey {
		return "", false
	}
	var idb [2 + maxInlineKey]byte
	idb[0], idb[1] = 0x00, byte(len(p.key)) // identity code, length
	n := copy(idb[2:], p.key)
	return peer.ID(idb[:2+n]), true
}
