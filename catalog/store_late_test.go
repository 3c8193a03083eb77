package catalog

import (
	"errors"
	"testing"
	"time"
)

// TestStore_LateEntriesKeepAPeer: a peer whose entries arrive later than
// PurgeAfter after they were signed, but younger than MaxAge, is taken and
// kept, each entry PurgeAfter from its arrival: a late heartbeat is proof
// of life. Under the strict rule (LateGrace zero) every such entry was
// stale on arrival, so a live peer purged for lateness stayed out for as
// long as its heartbeats stayed late.
func TestStore_LateEntriesKeepAPeer(t *testing.T) {
	s, _ := newTestStore(t)
	p := s.Params()
	purge, late := p.PurgeAfter, p.PurgeAfter+500*time.Millisecond // every entry arrives late
	if late <= purge || late >= p.MaxAge() {
		t.Fatalf("the test profile leaves no room for late entries: PurgeAfter %v, MaxAge %v", purge, p.MaxAge())
	}
	peer := newTestPeer(t)
	v := ver(t0, t0)
	for i := range 20 { // heartbeats a second apart, each arriving late
		now := v.UpdatedAt().Add(late)
		if gone := s.Purge(now); len(gone) != 0 {
			t.Fatalf("heartbeat %d: the peer was purged at %v, its last entry having arrived a second before", i, now)
		}
		if out, err := s.Merge(peer.seal(t, testNetwork, v, nil), now); err != nil || (i > 0 && out != Updated) {
			t.Fatalf("heartbeat %d, %v old on arrival: Merge = %v, %v", i, late, out, err)
		}
		// Due PurgeAfter after this arrival, or when it turns MaxAge if
		// that comes first.
		due := now.Add(purge)
		if m := v.UpdatedAt().Add(p.MaxAge()); m.Before(due) {
			due = m
		}
		if next, ok := s.NextExpiry(); !ok || next.Before(due) || next.After(due.Add(time.Millisecond)) {
			t.Fatalf("heartbeat %d: NextExpiry = %v, %v; want %v", i, next, ok, due)
		}
		v = v.Next(v.UpdatedAt().Add(time.Second))
	}
	if _, ok := s.Snapshot().Get(peer.id); !ok {
		t.Fatal("the peer is not held")
	}
}

// TestStore_LateEntryHeldAtMostMaxAge: an entry that arrives nearly MaxAge
// old is purged when it turns MaxAge, not PurgeAfter after its arrival:
// no entry is held past MaxAge, however late (through relays and syncs)
// it came.
func TestStore_LateEntryHeldAtMostMaxAge(t *testing.T) {
	s, _ := newTestStore(t)
	maxAge := s.Params().MaxAge()
	peer := newTestPeer(t)
	v := ver(t0, t0)
	arrival := v.UpdatedAt().Add(maxAge - 500*time.Millisecond)
	if _, err := s.Merge(peer.seal(t, testNetwork, v, nil), arrival); err != nil {
		t.Fatal(err)
	}
	if next, ok := s.NextExpiry(); !ok || next.After(v.UpdatedAt().Add(maxAge+time.Millisecond)) {
		t.Fatalf("NextExpiry = %v, %v; want at most %v (MaxAge)", next, ok, v.UpdatedAt().Add(maxAge))
	}
	if gone := s.Purge(v.UpdatedAt().Add(maxAge)); len(gone) != 1 {
		t.Fatalf("Purge at MaxAge removed %d entries, want 1", len(gone))
	}
}

// TestStore_PurgeTombstone: a purge leaves a tombstone of the purged
// version until that version turns MaxAge. A late copy of it, or of an
// older version (a replay, a slow relay, a sync from a peer that got it
// later), is not newer and cannot bring the dead peer back, and is refused
// before any signature check; a newer version (the peer is alive) is
// taken at once. The tombstone is not a departure.
func TestStore_PurgeTombstone(t *testing.T) {
	s, _ := newTestStore(t)
	p := s.Params()
	peer := newTestPeer(t)
	old := ver(t0.Add(-time.Second), t0.Add(-time.Second))
	last := old.Next(t0)
	for _, v := range []Version{old, last} {
		if _, err := s.Merge(peer.seal(t, testNetwork, v, nil), v.UpdatedAt()); err != nil {
			t.Fatal(err)
		}
	}
	purgedAt := last.UpdatedAt().Add(p.PurgeAfter)
	if gone := s.Purge(purgedAt); len(gone) != 1 {
		t.Fatalf("Purge removed %d entries, want the peer's", len(gone))
	}
	snap := s.Snapshot()
	if snap.Departed(peer.id) {
		t.Fatal("a purged peer counts as departed (it sent no notice)")
	}
	sealed := map[Version][]byte{}
	for _, v := range []Version{old, last} {
		sealed[v] = peer.seal(t, testNetwork, v, nil).Bytes()
	}
	checks := s.SignatureChecks()
	// Until the last version turns MaxAge, neither copy comes back.
	for _, now := range []time.Time{purgedAt, last.UpdatedAt().Add(p.MaxAge() - time.Millisecond)} {
		for v, b := range sealed {
			if _, err := s.Open(b, now); !errors.Is(err, ErrNotNewer) && !errors.Is(err, ErrStale) {
				t.Fatalf("at %v, Open(%v) of the purged peer = %v; want not newer (or stale)", now.Sub(t0), v, err)
			}
		}
		if gone := s.Purge(now); len(gone) != 0 {
			t.Fatalf("Purge at %v removed %d entries", now.Sub(t0), len(gone))
		}
		if s.Snapshot().st.departed.Len() != 1 {
			t.Fatalf("at %v the tombstone is gone", now.Sub(t0))
		}
	}
	if got := s.SignatureChecks(); got != checks {
		t.Fatalf("refusing copies of purged versions cost %d signature checks", got-checks)
	}
	// At MaxAge the stale rule takes over and the tombstone goes.
	s.Purge(last.UpdatedAt().Add(p.MaxAge()))
	if n := s.Snapshot().st.departed.Len(); n != 0 {
		t.Fatalf("%d tombstones left once the purged version is stale", n)
	}
	if _, err := s.Open(sealed[last], last.UpdatedAt().Add(p.MaxAge())); !errors.Is(err, ErrStale) {
		t.Fatalf("Open of the purged version at MaxAge = %v, want stale", err)
	}
	if _, ok := s.NextExpiry(); ok {
		t.Fatal("NextExpiry reports work in an empty store")
	}

	// A newer version before then is taken, and clears the tombstone.
	s2, _ := newTestStore(t)
	if _, err := s2.Merge(peer.seal(t, testNetwork, last, nil), last.UpdatedAt()); err != nil {
		t.Fatal(err)
	}
	s2.Purge(purgedAt)
	now := purgedAt.Add(time.Second)
	next := last.Next(now.Add(-p.PurgeAfter)) // late itself: signed PurgeAfter before now
	if out, err := s2.Merge(peer.seal(t, testNetwork, next, nil), now); err != nil || out != Added {
		t.Fatalf("a newer version after the purge = %v, %v; want added", out, err)
	}
	if s2.Snapshot().st.departed.Len() != 0 {
		t.Fatal("the tombstone outlived the peer's return")
	}
}
