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
	// limit spaces the versions Local seals (see SetUpdateLimit), tat is
	// its state, and pending holds a change beyond it until Flush seals it.
	limit   gcra
	tat     int64
	pending *Entry
}

// SetUpdateLimit makes Local keep to the update rate limit that receivers
// with Params.MinUpdateInterval interval and Params.UpdateBurst burst
// apply: a change beyond it is held, merged with any further changes, and
// sealed by Flush or the next Refresh. Its owner calls Flush when Pending
// says. Since receivers may only be less strict than this (see gcra),
// every version Local seals is taken by every receiver, with one
// exception: a run that began less than UpdateBurst × MinUpdateInterval
// after the previous run of the same key began finds the previous run's
// bucket at the receivers (Store.freshRun), which Local does not know.
func (l *Local) SetUpdateLimit(interval time.Duration, burst int) {
	l.limit = gcra{interval: interval.Milliseconds(), burst: int64(max(burst, 1))}
	l.tat, _ = l.limit.next(0, false, l.cur.Entry.Version.UpdateMS)
}

// next is the version after the current one at now and the limit's state
// after it; ok is false when the limit holds it, with due the earliest
// update time it allows.
func (l *Local) next(now time.Time) (v Version, tat int64, ok bool) {
	v = l.cur.Entry.Version.Next(now)
	tat, ok = l.limit.next(l.tat, true, v.UpdateMS)
	if !ok {
		v.UpdateMS = tat // the earliest the limit allows
	}
	return v, tat, ok
}

// Pending reports whether a change is held, and from when Flush will seal
// it.
func (l *Local) Pending() (time.Time, bool) {
	if l.pending == nil {
		return time.Time{}, false
	}
	v, _, _ := l.next(time.UnixMilli(0))
	return time.UnixMilli(v.UpdateMS), true
}

// Flush seals the held change, if any and if due at now. It reports
// whether it sealed a new version.
func (l *Local) Flush(now time.Time) (*SignedEntry, bool, error) {
	if l.pending == nil {
		return l.cur, false, nil
	}
	v, _, ok := l.next(now)
	if !ok {
		return l.cur, false, nil
	}
	return l.seal(*l.pending, v)
}

func (l *Local) seal(e Entry, v Version) (*SignedEntry, bool, error) {
	e.Version = v
	s, err := Seal(e, l.key)
	if err != nil {
		return l.cur, false, err
	}
	if l.maxSize > 0 && len(s.raw) > l.maxSize {
		return l.cur, false, fmt.Errorf("%w: the changed entry would be %d bytes, the limit is %d", ErrOversize, len(s.raw), l.maxSize)
	}
	l.cur, l.pending = s, nil
	l.tat, _ = l.limit.next(l.tat, true, v.UpdateMS)
	return s, true, nil
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

// Update applies f to a copy of the entry (with any held change). If that
// changed anything the version is bumped, the entry re-sealed and returned
// with changed = true; otherwise the current entry is returned unchanged.
// Beyond the limit of SetUpdateLimit a change is held instead: Update checks its size, returns the current
// entry with changed = false, and Pending reports it. f must not change
// the peer ID, network or version.
func (l *Local) Update(now time.Time, f func(*Entry)) (s *SignedEntry, changed bool, err error) {
	base := &l.cur.Entry
	if l.pending != nil {
		base = l.pending
	}
	e := base.Clone()
	f(&e)
	e.PeerID, e.Network, e.Version = l.cur.Entry.PeerID, l.cur.Entry.Network, l.cur.Entry.Version
	e.SkippedAddrs = 0 // only ever counted on received entries
	e.Normalize()
	if sameContent(&e, &l.cur.Entry) {
		l.pending = nil // changed, then changed back before it was sealed
		return l.cur, false, nil
	}
	v, _, ok := l.next(now)
	if ok {
		return l.seal(e, v)
	}
	// Held: seal once to refuse an oversize change now, not at Flush.
	if l.maxSize > 0 {
		probe := e
		probe.Version = v
		t, err := Seal(probe, l.key)
		if err != nil {
			return l.cur, false, err
		}
		if len(t.raw) > l.maxSize {
			return l.cur, false, fmt.Errorf("%w: the changed entry would be %d bytes, the limit is %d", ErrOversize, len(t.raw), l.maxSize)
		}
	}
	l.pending = &e
	return l.cur, false, nil
}

// Refresh bumps the version, sealing any held change with it: the
// liveness heartbeat. Under SetUpdateLimit the new version is dated no
// sooner than the limit allows (heartbeats, far apart, never wait for it).
func (l *Local) Refresh(now time.Time) (*SignedEntry, error) {
	e := l.cur.Entry.Clone()
	if l.pending != nil {
		e = *l.pending
	}
	v, _, _ := l.next(now)
	s, _, err := l.seal(e, v)
	return s, err
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
