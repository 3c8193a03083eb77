package catalog

import (
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Local is the local peer's own entry and the key that signs it. Every
// change bumps the version and re-seals. Local is not safe for concurrent
// use: its owner (the discovery service) serializes calls.
type Local struct {
	key     crypto.PrivKey
	cur     *SignedEntry
	maxSize int
}

// SetMaxSize makes Update refuse changes that would seal an entry larger
// than n bytes (receivers with MaxEntrySize n would reject it). It reports
// an error if the current entry is already larger.
func (l *Local) SetMaxSize(n int) error {
	l.maxSize = n
	if n > 0 && len(l.cur.raw) > n {
		return fmt.Errorf("%w: local entry is %d bytes, the limit is %d", ErrOversize, len(l.cur.raw), n)
	}
	return nil
}

// NewLocal creates and seals the first entry of a run starting at now. The
// entry's peer ID is derived from key; init, if not nil, fills in the rest
// (addresses, tags, streams, tickets).
func NewLocal(key crypto.PrivKey, network NetworkID, now time.Time, init func(*Entry)) (*Local, error) {
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("catalog: local entry: %w", err)
	}
	e := Entry{PeerID: id, Network: network, Protocol: ProtocolVersion, Version: NewVersion(now)}
	if init != nil {
		init(&e)
	}
	e.PeerID, e.Network = id, network
	s, err := Seal(e, key)
	if err != nil {
		return nil, err
	}
	return &Local{key: key, cur: s}, nil
}

// Current returns the current signed entry.
func (l *Local) Current() *SignedEntry { return l.cur }

// Update applies f to a copy of the entry. If that changed anything the
// version is bumped, the entry re-sealed and returned with changed = true;
// otherwise the current entry is returned unchanged. f must not change the
// peer ID, network or version.
func (l *Local) Update(now time.Time, f func(*Entry)) (s *SignedEntry, changed bool, err error) {
	e := l.cur.Entry.Clone()
	f(&e)
	e.PeerID, e.Network, e.Version = l.cur.Entry.PeerID, l.cur.Entry.Network, l.cur.Entry.Version
	e.SkippedAddrs = 0 // only ever counted on received entries
	e.Normalize()
	if sameContent(&e, &l.cur.Entry) {
		return l.cur, false, nil
	}
	e.Version = e.Version.Next(now)
	if s, err = Seal(e, l.key); err != nil {
		return l.cur, false, err
	}
	if l.maxSize > 0 && len(s.raw) > l.maxSize {
		return l.cur, false, fmt.Errorf("%w: the changed entry would be %d bytes, the limit is %d", ErrOversize, len(s.raw), l.maxSize)
	}
	l.cur = s
	return s, true, nil
}

// Refresh bumps the version without other change: the liveness heartbeat.
func (l *Local) Refresh(now time.Time) (*SignedEntry, error) {
	e := l.cur.Entry.Clone()
	e.Version = e.Version.Next(now)
	s, err := Seal(e, l.key)
	if err != nil {
		return l.cur, err
	}
	l.cur = s
	return s, nil
}

// Departure seals a departure notice for the current version.
func (l *Local) Departure(now time.Time) ([]byte, error) {
	return SealDeparture(Departure{
		PeerID:      l.cur.Entry.PeerID,
		Network:     l.cur.Entry.Network,
		LastVersion: l.cur.Entry.Version,
		Timestamp:   now,
	}, l.key)
}
