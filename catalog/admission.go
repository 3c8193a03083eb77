package catalog

import (
	"fmt"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Admission decides which peers may enter the catalog of a closed network:
// an entry it refuses is rejected ([ErrUnadmitted]) wherever it arrives.
// Check returns when the entry's admission ends (the zero time for never),
// or why it has none. package policy provides it: policy.Require over
// ticket validators (JWT, libp2p-signed tickets) checks that the entry
// holds a valid ticket of each. Check must be pure, fast, safe for
// concurrent use and must not block or call the store; it is called
// without the store's lock, once per peer and entry version (the store
// caches the verdict; a refusal only for a second, since it may depend on
// the time: a ticket not valid yet).
type Admission interface {
	Check(e *Entry, now time.Time) (expires time.Time, err error)
}

// admitCacheSize bounds the verdicts of one generation of admitCache; two
// generations are kept.
const admitCacheSize = 4096

// admitKey names one version of one peer's entry. Only verified entries
// are judged (the store checks admission after the signature), so only the
// peer itself can put two entries under one key, and a forger cannot
// poison the verdict of another peer's version.
type admitKey struct {
	id peer.ID
	v  Version
}

type admitVerdict struct {
	expires time.Time
	err     error
	// near marks a refusal that a clock within Params.MaxClockDrift of
	// ours would not make (see Store.nearAdmission).
	near bool
	// retry is when a refusal is judged again (zero for an admission):
	// a refusal may hold only for a while (a ticket not valid yet, an
	// issuer's clock ahead of ours), and one kept for the whole version
	// refused it network-wide until the peer's next heartbeat.
	retry time.Time
}

// admitRetry is how long a refusal is kept before the entry version is
// judged again: a ticket check per second and version at most, for what
// an entry refused for good costs.
const admitRetry = time.Second

// admitCache remembers admission verdicts per (peer, entry version): one
// version arrives by gossip validation, then merge, then by every sync
// and relay, and each would otherwise cost a ticket check. It is bounded
// by two generations of admitCacheSize: when the current one fills, it
// becomes the old one and the older is dropped. Safe for concurrent use.
type admitCache struct {
	mu       sync.Mutex
	cur, old map[admitKey]admitVerdict
	// gen counts SetAdmission calls: a verdict of the check that was
	// replaced while it ran is not kept (put with the gen get returned).
	gen uint64
}

// get returns the verdict kept for k, and the generation to put a new
// one with.
func (c *admitCache) get(k admitKey) (admitVerdict, bool, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if v, ok := c.cur[k]; ok {
		return v, true, c.gen
	}
	if v, ok := c.old[k]; ok {
		c.putLocked(k, v)
		return v, true, c.gen
	}
	return admitVerdict{}, false, c.gen
}

// put keeps v for k, unless the check changed since get returned gen.
func (c *admitCache) put(k admitKey, v admitVerdict, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen == c.gen {
		c.putLocked(k, v)
	}
}

func (c *admitCache) putLocked(k admitKey, v admitVerdict) {
	if c.cur == nil {
		c.cur = make(map[admitKey]admitVerdict)
	}
	if len(c.cur) >= admitCacheSize {
		c.old, c.cur = c.cur, make(map[admitKey]admitVerdict)
	}
	c.cur[k] = v
}

// admissionBox lets atomic.Value hold a nil Admission.
type admissionBox struct{ a Admission }

// SetAdmission makes the catalog closed: from now on every remote entry
// must pass a (see [Admission]) to be merged, and an entry whose admission
// ends is purged at that instant (see [Store.Purge] and
// [Store.NextExpiry]). Set it before the store takes entries: entries
// already held are not judged again. nil opens the catalog again.
func (s *Store) SetAdmission(a Admission) {
	s.admitted.mu.Lock()
	s.admitted.cur, s.admitted.old = nil, nil // verdicts of another check
	s.admitted.gen++
	s.admission.Store(admissionBox{a})
	s.admitted.mu.Unlock()
}

// Admission returns the catalog's admission check, or nil for an open
// catalog.
func (s *Store) Admission() Admission {
	b, _ := s.admission.Load().(admissionBox)
	return b.a
}

// admit judges a verified entry against the admission check at now. It
// returns when its admission ends (zero: never, or no admission check).
func (s *Store) admit(e *SignedEntry, now time.Time) (time.Time, error) {
	k := admitKey{id: e.Entry.PeerID, v: e.Entry.Version}
	v, ok, gen := s.admitted.get(k)
	// The check is read after the generation: a SetAdmission between the
	// two makes the put below a no-op, so a verdict of the old check is
	// never kept for the new one.
	a := s.Admission()
	if a == nil {
		return time.Time{}, nil
	}
	if !ok || (v.err != nil && !now.Before(v.retry)) {
		exp, err := a.Check(&e.Entry, now)
		v = admitVerdict{expires: exp, err: err}
		if err != nil {
			v.retry = now.Add(admitRetry)
			v.near = s.nearAdmission(a, e, now)
		}
		s.admitted.put(k, v, gen)
	}
	switch {
	case v.err != nil && v.near:
		return time.Time{}, refuse(ErrAdmissionWindow, "%s: %v", e.Entry.PeerID, v.err)
	case v.err != nil:
		return time.Time{}, fmt.Errorf("%w: %s: %w", ErrUnadmitted, e.Entry.PeerID, v.err)
	case !v.expires.IsZero() && !v.expires.After(now.Add(-s.params.MaxClockDrift)):
		return time.Time{}, fmt.Errorf("%w: %s: admission ended at %v", ErrUnadmitted, e.Entry.PeerID, v.expires)
	case !v.expires.IsZero() && !v.expires.After(now):
		return time.Time{}, refuse(ErrAdmissionWindow, "%s: admission ended at %v, %v ago", e.Entry.PeerID, v.expires, now.Sub(v.expires))
	}
	return v.expires, nil
}

// nearAdmission reports whether a admits e at a time within
// Params.MaxClockDrift of now (its start or end falls in between): the
// refusal at now then depends on this node's clock, and a relay whose
// clock is that far from ours may have taken e honestly. Admit makes it an
// ErrAdmissionWindow (ignored) rather than an ErrUnadmitted (rejected,
// which would penalise that relay). Only refusals pay for it, once per
// entry version and admitRetry.
func (s *Store) nearAdmission(a Admission, e *SignedEntry, now time.Time) bool {
	d := s.params.MaxClockDrift
	if d <= 0 {
		return false
	}
	for _, at := range []time.Time{now.Add(-d), now.Add(d)} {
		if exp, err := a.Check(&e.Entry, at); err == nil && (exp.IsZero() || exp.After(at)) {
			return true
		}
	}
	return false
}

// expiryKey is e's key in the purge index, which Purge judges against
// now - PurgeAfter: the local time e arrived (now), so that a held entry
// is purged PurgeAfter after its newest version came, however old that
// version was on arrival; but no later than its update time plus
// LateGrace, so that no entry is held past MaxAge; and earlier when its
// admission ends sooner, so that Purge removes it when the admission
// ends.
func (s *Store) expiryKey(e *SignedEntry, now, admitEnds time.Time) int64 {
	t := min(now.UnixMilli(), satAdd(e.Entry.Version.UpdateMS, s.graceMS()))
	if !admitEnds.IsZero() {
		if k := admitEnds.UnixMilli() - s.params.PurgeAfter.Milliseconds(); k < t {
			t = k
		}
	}
	return t
}
