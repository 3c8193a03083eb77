package catalog

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

func TestStore_Depart(t *testing.T) {
	drift := TestParams().MaxClockDrift
	now := t0.Add(time.Hour)
	known := ver(now.Add(-time.Minute), now.Add(-time.Second))

	tests := []struct {
		name     string
		d        func(id peer.ID) Departure
		removed  bool
		wantErr  error
		rejected bool
	}{
		{"same version", func(id peer.ID) Departure {
			return Departure{PeerID: id, Network: testNetwork, LastVersion: known, Timestamp: now}
		}, true, nil, false},
		{"newer version", func(id peer.ID) Departure {
			return Departure{PeerID: id, Network: testNetwork, LastVersion: known.Next(now), Timestamp: now}
		}, true, nil, false},
		{"replayed older departure", func(id peer.ID) Departure {
			return Departure{PeerID: id, Network: testNetwork, LastVersion: Version{known.StartMS, known.UpdateMS - 1}, Timestamp: now}
		}, false, ErrNotNewer, false},
		{"departure of the previous run", func(id peer.ID) Departure {
			return Departure{PeerID: id, Network: testNetwork, LastVersion: Version{known.StartMS - 1, now.UnixMilli()}, Timestamp: now}
		}, false, ErrNotNewer, false},
		{"other network", func(id peer.ID) Departure {
			return Departure{PeerID: id, Network: otherNet, LastVersion: known, Timestamp: now}
		}, false, ErrOtherNetwork, true},
		{"dated in the future", func(id peer.ID) Departure {
			return Departure{PeerID: id, Network: testNetwork, LastVersion: known, Timestamp: now.Add(drift + time.Millisecond)}
		}, false, ErrClockDrift, true},
		// Late, not forged (a loaded relay): ignored, so the honest relays
		// it came through are not scored down.
		{"dated in the past", func(id peer.ID) Departure {
			return Departure{PeerID: id, Network: testNetwork, LastVersion: known, Timestamp: now.Add(-drift - time.Millisecond)}
		}, false, ErrStale, false},
		{"exactly at the drift", func(id peer.ID) Departure {
			return Departure{PeerID: id, Network: testNetwork, LastVersion: known, Timestamp: now.Add(-drift)}
		}, true, nil, false},
		{"unknown peer", func(peer.ID) Departure {
			return Departure{PeerID: "", Network: testNetwork, LastVersion: known, Timestamp: now} // signed by a new peer below
		}, false, ErrUnknown, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := newTestStore(t)
			p := newTestPeer(t)
			e := p.seal(t, testNetwork, known, nil)
			if _, err := s.Merge(e, now); err != nil {
				t.Fatal(err)
			}
			sub := s.Subscribe(0)
			defer sub.Close()
			before := s.Snapshot()

			// Go through the wire form, as the discovery service does.
			d := tt.d(p.id)
			var signer testPeer
			if d.PeerID == p.id {
				signer = p
			} else {
				signer = newTestPeer(t)
				d.PeerID = signer.id
			}
			b, err := SealDeparture(d, signer.key)
			if err != nil {
				t.Fatal(err)
			}
			opened, err := OpenDeparture(b)
			if err != nil {
				t.Fatal(err)
			}

			// CheckDeparture (the gossip validator's question) and Depart
			// share one set of rules.
			checked := s.CheckDeparture(opened, now)
			removed, err := s.Depart(opened, now)
			if (checked == nil) != removed || !errors.Is(checked, tt.wantErr) {
				t.Fatalf("CheckDeparture = %v, Depart removed = %v (want error %v)", checked, removed, tt.wantErr)
			}
			if removed != tt.removed || !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("Depart = %v, %v; want %v, %v", removed, err, tt.removed, tt.wantErr)
			}
			if IsRejected(err) != tt.rejected {
				t.Fatalf("IsRejected(%v) = %v, want %v", err, !tt.rejected, tt.rejected)
			}
			_, still := s.Snapshot().Get(p.id)
			if still == removed {
				t.Fatalf("peer still in catalog = %v after Depart returned removed = %v", still, removed)
			}
			if !removed {
				if s.Snapshot() != before {
					t.Fatal("a refused departure published a snapshot")
				}
				noEvent(t, sub)
				return
			}
			ev := nextEvent(t, sub)
			if ev.Kind != PeerDeparted || ev.Peer != p.id || ev.Entry != e || ev.Purged {
				t.Fatalf("event = %+v, want PeerDeparted of %s with its last entry, not purged", ev, p.id)
			}
			if _, ok := before.Get(p.id); !ok {
				t.Fatal("the old snapshot lost the departed peer")
			}
		})
	}
}

func TestStore_DepartThenRejoin(t *testing.T) {
	// A departure does not block the peer's next run, and the old
	// departure replayed later does not remove the new run.
	s, _ := newTestStore(t)
	p := newTestPeer(t)
	run1 := ver(t0, t0)
	if _, err := s.Merge(p.seal(t, testNetwork, run1, nil), t0); err != nil {
		t.Fatal(err)
	}
	dep := &Departure{PeerID: p.id, Network: testNetwork, LastVersion: run1, Timestamp: t0}
	if ok, err := s.Depart(dep, t0); !ok || err != nil {
		t.Fatalf("Depart = %v, %v", ok, err)
	}
	run2 := NewVersion(t0.Add(time.Second))
	if out, err := s.Merge(p.seal(t, testNetwork, run2, nil), t0.Add(time.Second)); err != nil || out != Added {
		t.Fatalf("rejoin = %v, %v", out, err)
	}
	if ok, err := s.Depart(dep, t0.Add(time.Second)); ok || !errors.Is(err, ErrNotNewer) {
		t.Fatalf("replayed departure = %v, %v; want false, ErrNotNewer", ok, err)
	}
	if _, ok := s.Snapshot().Get(p.id); !ok {
		t.Fatal("the replayed departure removed the new run")
	}
}

func TestStore_DepartTombstone(t *testing.T) {
	// A departed peer's last version is remembered until it goes stale
	// (MaxAge old), so its older entries, still in flight in gossip caches
	// or syncs, cannot bring it back; a newer entry can.
	s, _ := newTestStore(t)
	purge := s.Params().MaxAge()
	p := newTestPeer(t)
	v1 := ver(t0, t0.Add(time.Second))
	e1 := p.seal(t, testNetwork, v1, nil)
	now := t0.Add(time.Second)
	if _, err := s.Merge(e1, now); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.Depart(&Departure{PeerID: p.id, Network: testNetwork, LastVersion: v1, Timestamp: now}, now); !ok || err != nil {
		t.Fatalf("Depart = %v, %v", ok, err)
	}
	if !s.Snapshot().Departed(p.id) {
		t.Fatal("Departed is false right after the departure")
	}
	sub := s.Subscribe(0)
	defer sub.Close()
	for _, v := range []Version{v1, ver(t0, t0)} {
		e := p.seal(t, testNetwork, v, nil)
		if err := s.Check(e, now); !errors.Is(err, ErrNotNewer) {
			t.Fatalf("Check(%v) after departure = %v, want ErrNotNewer", v, err)
		}
		if _, err := s.Merge(e, now); !errors.Is(err, ErrNotNewer) || IsRejected(err) {
			t.Fatalf("replayed entry %v after departure: %v, want ErrNotNewer (ignored)", v, err)
		}
	}
	noEvent(t, sub)
	if _, ok := s.Snapshot().Get(p.id); ok {
		t.Fatal("a replayed entry resurrected the departed peer")
	}
	// The tombstone alone gives Purge work.
	if next, ok := s.NextExpiry(); !ok || next.Before(v1.UpdatedAt().Add(purge)) {
		t.Fatalf("NextExpiry with a tombstone = %v, %v", next, ok)
	}

	// A newer entry (the peer came back) is accepted and clears the tombstone.
	e2 := p.seal(t, testNetwork, v1.Next(now), nil)
	if out, err := s.Merge(e2, now); err != nil || out != Added {
		t.Fatalf("newer entry after departure = %v, %v; want added", out, err)
	}
	if ev := nextEvent(t, sub); ev.Kind != PeerDiscovered || ev.Entry != e2 {
		t.Fatalf("event = %v, want PeerDiscovered", ev.Kind)
	}
	if s.Snapshot().Departed(p.id) {
		t.Fatal("the tombstone outlived the peer's return")
	}

	// Departed again, the tombstone goes when its version goes stale.
	if ok, err := s.Depart(&Departure{PeerID: p.id, Network: testNetwork, LastVersion: e2.Entry.Version, Timestamp: now}, now); !ok || err != nil {
		t.Fatalf("second Depart = %v, %v", ok, err)
	}
	if ev := nextEvent(t, sub); ev.Kind != PeerDeparted || ev.Entry != e2 {
		t.Fatalf("event = %v, want PeerDeparted", ev.Kind)
	}
	if gone := s.Purge(e2.Entry.Version.UpdatedAt().Add(purge - time.Millisecond)); gone != nil || s.Snapshot().st.departed.Len() != 1 {
		t.Fatal("the tombstone expired early")
	}
	before := s.Snapshot()
	if gone := s.Purge(e2.Entry.Version.UpdatedAt().Add(purge)); gone != nil {
		t.Fatalf("Purge returned %d entries for a tombstone", len(gone))
	}
	if s.Snapshot().st.departed.Len() != 0 || s.Snapshot().Departed(p.id) || s.Snapshot().Version() != before.Version()+1 {
		t.Fatal("Purge did not drop the stale tombstone")
	}
	noEvent(t, sub) // dropping a tombstone is not an event
	if _, ok := s.NextExpiry(); ok {
		t.Fatal("NextExpiry reports work in an empty store")
	}
}

func TestStore_DepartTombstoneFromTheFutureExpires(t *testing.T) {
	// Regression (fixed): Depart (store.go) records d.LastVersion as the peer's tombstone
	// and Purge drops a tombstone only once LastVersion.UpdatedAt() is older
	// than PurgeAfter. LastVersion is signed by the departing peer but never
	// bounded: only d.Timestamp is checked against MaxClockDrift. A peer
	// that departs with LastVersion{UpdateMS: far future} (it need only be
	// >= its known version) leaves a tombstone that never expires; with
	// fresh keys, anyone can grow every node's departed map (cloned on every
	// Depart) without bound and at no recurring cost. Fix: refuse, with
	// ErrClockDrift, a departure whose LastVersion.UpdatedAt() is after
	// now+MaxClockDrift (as Merge does for entries), or expire tombstones by
	// the time they were recorded rather than by LastVersion.
	s, _ := newTestStore(t)
	p := s.Params()
	peerKey := newTestPeer(t)
	now := t0
	if _, err := s.Merge(peerKey.seal(t, testNetwork, NewVersion(now), nil), now); err != nil {
		t.Fatal(err)
	}
	far := Version{StartMS: now.UnixMilli(), UpdateMS: now.AddDate(100, 0, 0).UnixMilli()}
	_, err := s.Depart(&Departure{PeerID: peerKey.id, Network: testNetwork, LastVersion: far, Timestamp: now}, now)
	if err != nil {
		if !IsRejected(err) {
			t.Fatalf("Depart = %v: a departure from the future is invalid, so rejected", err)
		}
		return // refused: no tombstone
	}
	s.Purge(now.Add(p.PurgeAfter + p.MaxClockDrift + time.Second))
	if n := s.Snapshot().st.departed.Len(); n != 0 {
		t.Fatalf("%d tombstone(s) left long after the departure: a LastVersion 100 years ahead keeps one forever", n)
	}
}

func TestStore_Purge(t *testing.T) {
	s, _ := newTestStore(t)
	purge := s.Params().PurgeAfter
	if _, ok := s.NextExpiry(); ok {
		t.Fatal("NextExpiry of an empty store must report false")
	}
	if gone := s.Purge(t0.Add(time.Hour)); gone != nil {
		t.Fatal("Purge of an empty store removed something")
	}

	a, b, c := newTestPeer(t), newTestPeer(t), newTestPeer(t)
	ea := a.seal(t, testNetwork, ver(t0, t0), nil)
	eb := b.seal(t, testNetwork, ver(t0, t0.Add(time.Second)), nil)
	ec := c.seal(t, testNetwork, ver(t0, t0.Add(2*time.Second)), nil)
	for _, e := range []*SignedEntry{eb, ea, ec} {
		// Each arrives when it was signed: it is purged PurgeAfter later.
		if _, err := s.Merge(e, e.Entry.Version.UpdatedAt()); err != nil {
			t.Fatal(err)
		}
	}
	// NextExpiry is when a's entry is due: PurgeAfter after it arrived
	// (up to the millisecond resolution of versions, see
	// TestStore_PurgeAtNextExpiry).
	next, ok := s.NextExpiry()
	if !ok || next.Before(t0.Add(purge)) || next.After(t0.Add(purge+time.Millisecond)) {
		t.Fatalf("NextExpiry = %v, %v; want %v", next, ok, t0.Add(purge))
	}

	sub := s.Subscribe(0)
	defer sub.Close()
	before := s.Snapshot()
	if gone := s.Purge(t0.Add(purge - time.Millisecond)); gone != nil {
		t.Fatalf("Purge before the expiry removed %d entries", len(gone))
	}
	if s.Snapshot() != before {
		t.Fatal("a Purge that removed nothing published a snapshot")
	}
	noEvent(t, sub)

	// a and b are stale one second after b's expiry; c is not.
	gone := s.Purge(t0.Add(purge + time.Second + time.Millisecond))
	if len(gone) != 2 || !slices.Contains(gone, ea) || !slices.Contains(gone, eb) {
		t.Fatalf("Purge removed %d entries, want a and b", len(gone))
	}
	snap := s.Snapshot()
	if snap.Len() != 1 || snap.Version() != before.Version()+1 {
		t.Fatalf("after purge: len %d version %d (one snapshot for the whole purge)", snap.Len(), snap.Version())
	}
	if _, ok := snap.Get(c.id); !ok {
		t.Fatal("the fresh entry was purged")
	}
	if snap.Departed(a.id) || snap.Departed(b.id) {
		t.Fatal("a purged peer counts as departed (it sent no notice)")
	}
	seen := map[peer.ID]bool{}
	for range 2 {
		ev := nextEvent(t, sub)
		if ev.Kind != PeerDeparted || !ev.Purged || (ev.Entry != ea && ev.Entry != eb) || ev.Peer != ev.Entry.PeerID() {
			t.Fatalf("event = %+v, want PeerDeparted{Purged: true} of a or b", ev)
		}
		seen[ev.Peer] = true
	}
	if !seen[a.id] || !seen[b.id] {
		t.Fatal("missing purge events")
	}
	noEvent(t, sub)
	if next, ok := s.NextExpiry(); !ok || next.Before(t0.Add(2*time.Second+purge)) || next.After(t0.Add(2*time.Second+purge+time.Millisecond)) {
		t.Fatalf("NextExpiry after purge = %v, %v; want c's expiry", next, ok)
	}
}

func TestStore_PurgeAtNextExpiry(t *testing.T) {
	// Regression (fixed): NextExpiry (store.go) documents "when the first remote entry goes
	// stale" and returns UpdatedAt+PurgeAfter, but stale() is
	// UpdatedAt < now-PurgeAfter, i.e. strictly after that instant. A caller
	// that does what the docs say - Purge(NextExpiry()) - removes nothing,
	// and NextExpiry then returns the same past instant again, so a timer
	// loop re-armed from it spins until the wall clock moves past the
	// boundary. Fix: make the two agree, e.g. NextExpiry returns
	// UpdatedAt+PurgeAfter+1ms (the first instant at which the entry is
	// stale, UpdateMS having millisecond resolution), or stale() uses
	// !UpdatedAt().After(now-PurgeAfter) (and Check then refuses an entry
	// exactly PurgeAfter old).
	s, _ := newTestStore(t)
	p := newTestPeer(t)
	if _, err := s.Merge(p.seal(t, testNetwork, NewVersion(t0), nil), t0); err != nil {
		t.Fatal(err)
	}
	next, ok := s.NextExpiry()
	if !ok {
		t.Fatal("no expiry")
	}
	if gone := s.Purge(next); len(gone) != 1 {
		t.Fatalf("Purge(NextExpiry()) removed %d entries, want 1 (the entry whose expiry it is)", len(gone))
	}
}

// Tombstones are bounded by MaxPeers, the ones that expire first going
// first: a flood of identities each merged and departed grew them without
// bound (review probe: 200 tombstones with MaxPeers 2).
func TestStore_DepartTombstonesBounded(t *testing.T) {
	p := TestParams()
	p.MaxPeers = 4
	s, _ := newTestStoreWith(t, p)
	var last testPeer
	for i := range 50 {
		last = newTestPeer(t)
		now := t0.Add(time.Duration(i) * time.Millisecond)
		v := ver(t0, now)
		if _, err := s.Merge(last.seal(t, testNetwork, v, nil), now); err != nil {
			t.Fatal(err)
		}
		if ok, err := s.Depart(&Departure{PeerID: last.id, Network: testNetwork, LastVersion: v, Timestamp: now}, now); !ok || err != nil {
			t.Fatalf("Depart = %v, %v", ok, err)
		}
	}
	if n := s.Snapshot().st.departed.Len(); n != p.MaxPeers {
		t.Fatalf("%d tombstones with MaxPeers %d", n, p.MaxPeers)
	}
	if n := s.Snapshot().st.depExp.Len(); n != p.MaxPeers {
		t.Fatalf("%d tombstone expiries with MaxPeers %d", n, p.MaxPeers)
	}
	if !s.Snapshot().Departed(last.id) {
		t.Fatal("the newest departure's tombstone went first")
	}
}
