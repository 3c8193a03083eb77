package catalog

import (
	"context"
	"errors"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// newTestStore returns a store with TestParams (entries stale after 3 s,
// clock drift 5 s) whose local peer started at t0. The store is closed when
// the test ends.
func newTestStore(tb testing.TB) (*Store, *Local) {
	tb.Helper()
	return newTestStoreWith(tb, TestParams())
}

func newTestStoreWith(tb testing.TB, p Params) (*Store, *Local) {
	tb.Helper()
	l, err := NewLocal(newTestPeer(tb).key, testNetwork, t0, nil)
	if err != nil {
		tb.Fatal(err)
	}
	s, err := NewStore(l.Current(), p)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	return s, l
}

// nextEvent waits for the next event (bounded by a timeout).
func nextEvent(tb testing.TB, sub *Subscription) Event {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout(5*time.Second))
	defer cancel()
	ev, err := sub.Next(ctx)
	if err != nil {
		tb.Fatalf("Next: %v", err)
	}
	return ev
}

// noEvent checks that no event is pending: Next with a cancelled context
// still returns buffered events first.
func noEvent(tb testing.TB, sub *Subscription) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if ev, err := sub.Next(ctx); !errors.Is(err, context.Canceled) {
		tb.Fatalf("want no pending event, got %v %v, %v", ev.Kind, ev.Peer, err)
	}
}

func TestStore_Merge(t *testing.T) {
	p := TestParams()
	drift, purge := p.MaxClockDrift, p.PurgeAfter
	now := t0.Add(time.Hour)
	restart := now.Add(-2 * time.Second) // the peer's run began within PurgeAfter

	tests := []struct {
		name     string
		known    *Version // the version of the peer already in the store, if any
		offer    Version
		network  NetworkID // testNetwork when zero
		local    bool      // offer an entry of the local peer
		want     Outcome
		wantErr  error
		rejected bool
	}{
		{name: "new peer", offer: ver(restart, now), want: Added},
		{name: "newer version", known: &Version{restart.UnixMilli(), now.UnixMilli() - 10}, offer: ver(restart, now), want: Updated},
		{name: "restart beats old run", known: &Version{restart.UnixMilli() - 1, now.UnixMilli()}, offer: ver(restart, restart), want: Updated},
		{name: "equal version", known: &Version{restart.UnixMilli(), now.UnixMilli()}, offer: ver(restart, now), wantErr: ErrNotNewer},
		{name: "older version", known: &Version{restart.UnixMilli(), now.UnixMilli()}, offer: Version{restart.UnixMilli(), now.UnixMilli() - 1}, wantErr: ErrNotNewer},
		{name: "older run", known: &Version{restart.UnixMilli(), restart.UnixMilli()}, offer: Version{restart.UnixMilli() - 1, now.UnixMilli()}, wantErr: ErrNotNewer},
		{name: "other network", offer: ver(restart, now), network: otherNet, wantErr: ErrOtherNetwork, rejected: true},
		{name: "local peer", offer: ver(restart, now), local: true, wantErr: ErrLocal},
		{name: "stale", offer: ver(restart.Add(-time.Hour), now.Add(-purge-time.Millisecond)), wantErr: ErrStale},
		{name: "exactly PurgeAfter old is stale", offer: ver(restart.Add(-time.Hour), now.Add(-purge)), wantErr: ErrStale},
		{name: "just under PurgeAfter old", offer: ver(restart.Add(-time.Hour), now.Add(-purge+time.Millisecond)), want: Added},
		{name: "beyond the clock drift", offer: ver(restart, now.Add(drift+time.Millisecond)), wantErr: ErrClockDrift, rejected: true},
		{name: "exactly at the clock drift", offer: ver(restart, now.Add(drift)), want: Added},
		{name: "old entry within PurgeAfter", offer: ver(restart, now.Add(-purge/2)), want: Added},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, local := newTestStore(t)
			peerKey := newTestPeer(t)
			if tt.local {
				peerKey.key = local.key
				peerKey.id = local.Current().PeerID()
			}
			if tt.known != nil {
				if _, err := s.Merge(peerKey.seal(t, testNetwork, *tt.known, nil), now); err != nil {
					t.Fatalf("seeding the known entry: %v", err)
				}
			}
			nw := tt.network
			if nw.IsZero() {
				nw = testNetwork
			}
			e := peerKey.seal(t, nw, tt.offer, nil)
			before := s.Snapshot()
			sub := s.Subscribe(0)
			defer sub.Close()

			checkErr := s.Check(e, now)
			out, err := s.Merge(e, now)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("Merge = %v, %v; want %v, %v", out, err, tt.want, tt.wantErr)
			}
			if !errors.Is(checkErr, tt.wantErr) || (tt.wantErr == nil && checkErr != nil) {
				t.Fatalf("Check = %v, Merge = %v: they must agree", checkErr, err)
			}
			if got := IsRejected(err); got != tt.rejected {
				t.Fatalf("IsRejected(%v) = %v, want %v", err, got, tt.rejected)
			}
			after := s.Snapshot()
			if err != nil {
				if out != 0 {
					t.Fatalf("a refused merge returned outcome %v", out)
				}
				if after != before {
					t.Fatal("a refused merge published a snapshot")
				}
				noEvent(t, sub)
				return
			}
			if out != tt.want {
				t.Fatalf("outcome = %v, want %v", out, tt.want)
			}
			if got, ok := after.Get(e.PeerID()); !ok || got != e {
				t.Fatal("merged entry is not in the new snapshot")
			}
			if after.Version() != before.Version()+1 {
				t.Fatalf("snapshot version %d -> %d", before.Version(), after.Version())
			}
			ev := nextEvent(t, sub)
			wantKind := map[Outcome]EventKind{Added: PeerDiscovered, Updated: PeerUpdated}[tt.want]
			if ev.Kind != wantKind || ev.Peer != e.PeerID() || ev.Entry != e || ev.Purged {
				t.Fatalf("event = %+v, want %v of %s", ev, wantKind, e.PeerID())
			}
			// Merging the same entry again is ignored.
			if _, err := s.Merge(e, now); !errors.Is(err, ErrNotNewer) || IsRejected(err) {
				t.Fatalf("re-merge: %v, want ErrNotNewer", err)
			}
		})
	}
}

func TestStore_MergeBytes(t *testing.T) {
	s, _ := newTestStore(t)
	p := newTestPeer(t)
	e := p.seal(t, testNetwork, NewVersion(t0), nil)
	got, out, err := s.MergeBytes(e.Bytes(), t0)
	if err != nil || out != Added || got.PeerID() != p.id {
		t.Fatalf("MergeBytes = %v, %v, %v", got, out, err)
	}
	if _, _, err := s.MergeBytes(e.Bytes(), t0); !errors.Is(err, ErrNotNewer) {
		t.Fatalf("replayed bytes: %v, want ErrNotNewer", err)
	}
	// A tampered copy of a known version is refused as not newer before
	// its signature is even checked (cheap checks first); a tampered newer
	// entry fails the signature check.
	bad := append([]byte(nil), e.Bytes()...)
	bad[len(bad)-1] ^= 1
	if got, _, err := s.MergeBytes(bad, t0); got != nil || !errors.Is(err, ErrNotNewer) {
		t.Fatalf("tampered copy of a known version: %v, %v", got, err)
	}
	newer := p.seal(t, testNetwork, NewVersion(t0).Next(t0), nil)
	bad = append([]byte(nil), newer.Bytes()...)
	bad[len(bad)-1] ^= 1
	if got, _, err := s.MergeBytes(bad, t0); got != nil || !errors.Is(err, ErrBadSignature) {
		t.Fatalf("tampered newer entry: %v, %v", got, err)
	}
	// The store's MaxEntrySize applies.
	small, _ := newTestStoreWith(t, Params{PurgeAfter: time.Minute, MaxClockDrift: time.Second, MaxEntrySize: 512, MaxPeers: 10, EventBuffer: 1})
	big := p.seal(t, testNetwork, NewVersion(t0), func(e *Entry) {
		e.Tickets = []Ticket{{Class: IDFromString("jwt"), Data: make([]byte, 600)}}
	})
	if _, _, err := small.MergeBytes(big.Bytes(), t0); !errors.Is(err, ErrOversize) {
		t.Fatalf("entry above MaxEntrySize: %v, want ErrOversize", err)
	}
}

func TestStore_NewStore(t *testing.T) {
	l, err := NewLocal(newTestPeer(t).key, testNetwork, t0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewStore(nil, DefaultParams()); err == nil {
		t.Error("NewStore(nil) must fail")
	}
	if _, err := NewStore(l.Current(), Params{}); err == nil {
		t.Error("NewStore with zero Params must fail")
	}
	s, err := NewStore(l.Current(), DefaultParams())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Network() != testNetwork || s.Params() != DefaultParams() {
		t.Fatal("Network/Params wrong")
	}
	snap := s.Snapshot()
	if snap.Version() != 1 || snap.Len() != 0 || snap.Local() != l.Current() {
		t.Fatalf("initial snapshot: version %d, len %d", snap.Version(), snap.Len())
	}
	if got, ok := snap.Get(l.Current().PeerID()); !ok || got != l.Current() {
		t.Fatal("Get(local) must return the local entry")
	}
	if _, ok := snap.Get(newTestPeer(t).id); ok {
		t.Fatal("Get(unknown) must fail")
	}
}

func TestSnapshot_Immutable(t *testing.T) {
	s, _ := newTestStore(t)
	orders := IDFromString("orders")
	peers := make([]testPeer, 5)
	for i := range peers {
		peers[i] = newTestPeer(t)
	}

	s1 := s.Snapshot()
	select {
	case <-s1.Changed():
		t.Fatal("Changed closed before any change")
	default:
	}
	e0 := peers[0].seal(t, testNetwork, NewVersion(t0), func(e *Entry) { e.Streams = []StreamID{orders} })
	if _, err := s.Merge(e0, t0); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s1.Changed():
	default:
		t.Fatal("Changed of the old snapshot not closed after a merge")
	}
	if s1.Len() != 0 || s1.Version() != 1 || len(s1.Peers()) != 0 {
		t.Fatal("the old snapshot changed")
	}
	if _, ok := s1.Get(peers[0].id); ok {
		t.Fatal("the old snapshot sees the new peer")
	}

	s2 := s.Snapshot()
	if s2.Version() != 2 || s2.Len() != 1 {
		t.Fatalf("new snapshot: version %d len %d", s2.Version(), s2.Len())
	}
	for _, p := range peers[1:] {
		if _, err := s.Merge(p.seal(t, testNetwork, NewVersion(t0), nil), t0); err != nil {
			t.Fatal(err)
		}
	}
	// An update replaces the entry in new snapshots only.
	e0b := peers[0].seal(t, testNetwork, NewVersion(t0).Next(t0), nil)
	if out, err := s.Merge(e0b, t0); err != nil || out != Updated {
		t.Fatalf("update: %v %v", out, err)
	}
	if got, _ := s2.Get(peers[0].id); got != e0 || s2.Len() != 1 {
		t.Fatal("s2 changed")
	}

	s3 := s.Snapshot()
	if s3.Version() != 7 || s3.Len() != 5 {
		t.Fatalf("s3: version %d len %d", s3.Version(), s3.Len())
	}
	if got, _ := s3.Get(peers[0].id); got != e0b {
		t.Fatal("s3 does not hold the update")
	}
	// All and Peers are in peer ID order and agree.
	all := slices.Collect(s3.All())
	list := s3.Peers()
	if !slices.Equal(all, list) || len(all) != 5 {
		t.Fatal("All and Peers disagree")
	}
	if !slices.IsSortedFunc(all, func(a, b *SignedEntry) int { return strings.Compare(string(a.PeerID()), string(b.PeerID())) }) {
		t.Fatal("peers not in peer ID order")
	}
	list[0] = nil
	if s3.Peers()[0] == nil {
		t.Fatal("Peers must return a new slice")
	}
	// Producers reflects the update: peer 0 stopped producing orders.
	if len(s2.Producers(orders)) != 1 || len(s3.Producers(orders)) != 0 {
		t.Fatal("Producers wrong")
	}
}

func TestSnapshot_ChangedWakesWaiter(t *testing.T) {
	s, _ := newTestStore(t)
	snap := s.Snapshot()
	woke := make(chan uint64)
	go func() {
		<-snap.Changed()
		woke <- s.Snapshot().Version()
	}()
	if _, err := s.Merge(newTestPeer(t).seal(t, testNetwork, NewVersion(t0), nil), t0); err != nil {
		t.Fatal(err)
	}
	select {
	case v := <-woke:
		if v <= snap.Version() {
			t.Fatalf("woke to version %d, had %d", v, snap.Version())
		}
	case <-time.After(testTimeout(5 * time.Second)):
		t.Fatal("waiter on Changed not woken")
	}
}

func TestStore_SetLocal(t *testing.T) {
	s, l := newTestStore(t)
	sub := s.Subscribe(0)
	defer sub.Close()
	before := s.Snapshot()

	next, err := l.Refresh(t0.Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetLocal(next); err != nil {
		t.Fatal(err)
	}
	after := s.Snapshot()
	if after.Local() != next || after.Version() != before.Version()+1 || before.Local() == next {
		t.Fatal("SetLocal did not publish a new snapshot")
	}
	select {
	case <-before.Changed():
	default:
		t.Fatal("SetLocal did not close Changed")
	}
	noEvent(t, sub) // local changes are not events

	if err := s.SetLocal(next); !errors.Is(err, ErrNotNewer) {
		t.Fatalf("same version: %v, want ErrNotNewer", err)
	}
	other := newTestPeer(t).seal(t, testNetwork, NewVersion(t0.Add(time.Hour)), nil)
	if err := s.SetLocal(other); err == nil {
		t.Fatal("SetLocal with another peer's entry must fail")
	}
	wrongNet := l.Current().Entry.Clone()
	wrongNet.Network = otherNet
	wrongNet.Version = wrongNet.Version.Next(t0.Add(time.Hour))
	sealed, err := Seal(wrongNet, l.key)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetLocal(sealed); err == nil {
		t.Fatal("SetLocal with another network must fail")
	}
	if s.Snapshot() != after {
		t.Fatal("a refused SetLocal published a snapshot")
	}
}

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
		{"dated in the past", func(id peer.ID) Departure {
			return Departure{PeerID: id, Network: testNetwork, LastVersion: known, Timestamp: now.Add(-drift - time.Millisecond)}
		}, false, ErrClockDrift, true},
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
	// A departed peer's last version is remembered until it goes stale, so
	// its older entries, still in flight in gossip caches or syncs, cannot
	// bring it back; a newer entry can.
	s, _ := newTestStore(t)
	purge := s.Params().PurgeAfter
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
	if _, ok := s.Snapshot().departed[p.id]; ok || s.Snapshot().Departed(p.id) {
		t.Fatal("the tombstone outlived the peer's return")
	}

	// Departed again, the tombstone goes when its version goes stale.
	if ok, err := s.Depart(&Departure{PeerID: p.id, Network: testNetwork, LastVersion: e2.Entry.Version, Timestamp: now}, now); !ok || err != nil {
		t.Fatalf("second Depart = %v, %v", ok, err)
	}
	if ev := nextEvent(t, sub); ev.Kind != PeerDeparted || ev.Entry != e2 {
		t.Fatalf("event = %v, want PeerDeparted", ev.Kind)
	}
	if gone := s.Purge(e2.Entry.Version.UpdatedAt().Add(purge - time.Millisecond)); gone != nil || len(s.Snapshot().departed) != 1 {
		t.Fatal("the tombstone expired early")
	}
	before := s.Snapshot()
	if gone := s.Purge(e2.Entry.Version.UpdatedAt().Add(purge)); gone != nil {
		t.Fatalf("Purge returned %d entries for a tombstone", len(gone))
	}
	if len(s.Snapshot().departed) != 0 || s.Snapshot().Departed(p.id) || s.Snapshot().Version() != before.Version()+1 {
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
	if n := len(s.Snapshot().departed); n != 0 {
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
		if _, err := s.Merge(e, t0.Add(2*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	// NextExpiry is when a's entry goes stale: PurgeAfter after its update
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

func TestSubscription_EventsInOrder(t *testing.T) {
	s, _ := newTestStore(t)
	sub := s.Subscribe(0)
	defer sub.Close()
	a, b := newTestPeer(t), newTestPeer(t)
	ea1 := a.seal(t, testNetwork, ver(t0, t0), nil)
	ea2 := a.seal(t, testNetwork, ver(t0, t0.Add(time.Millisecond)), nil)
	eb := b.seal(t, testNetwork, ver(t0, t0), nil)
	for _, e := range []*SignedEntry{ea1, ea2, eb} {
		if _, err := s.Merge(e, t0); err != nil {
			t.Fatal(err)
		}
	}
	if ok, err := s.Depart(&Departure{PeerID: a.id, Network: testNetwork, LastVersion: ea2.Entry.Version, Timestamp: t0}, t0); !ok || err != nil {
		t.Fatal(ok, err)
	}
	s.Purge(t0.Add(time.Hour))

	want := []Event{
		{Kind: PeerDiscovered, Peer: a.id, Entry: ea1},
		{Kind: PeerUpdated, Peer: a.id, Entry: ea2},
		{Kind: PeerDiscovered, Peer: b.id, Entry: eb},
		{Kind: PeerDeparted, Peer: a.id, Entry: ea2},
		{Kind: PeerDeparted, Peer: b.id, Entry: eb, Purged: true},
	}
	for i, w := range want {
		if got := nextEvent(t, sub); got != w {
			t.Fatalf("event %d = %v %s purged=%v, want %v %s purged=%v", i, got.Kind, got.Peer, got.Purged, w.Kind, w.Peer, w.Purged)
		}
	}
	noEvent(t, sub)

	// A subscription sees only events after it was made.
	late := s.Subscribe(0)
	defer late.Close()
	noEvent(t, late)
}

func TestSubscription_OverflowDropsOldest(t *testing.T) {
	s, _ := newTestStore(t)
	sub := s.Subscribe(2)
	defer sub.Close()
	entries := make([]*SignedEntry, 5)
	for i := range entries {
		entries[i] = newTestPeer(t).seal(t, testNetwork, NewVersion(t0), nil)
		if _, err := s.Merge(entries[i], t0); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout(5*time.Second))
	defer cancel()
	_, err := sub.Next(ctx)
	if !errors.Is(err, ErrLagged) {
		t.Fatalf("first Next after overflow = %v, want ErrLagged", err)
	}
	var lag *LagError
	if !errors.As(err, &lag) || lag.Missed != 3 {
		t.Fatalf("lag = %#v, want Missed = 3", lag)
	}
	if IsRejected(err) || errors.Is(err, ErrClosed) {
		t.Fatal("a lag is neither a rejection nor a close")
	}
	// The subscription stays usable and delivers the newest events.
	for _, want := range entries[3:] {
		if ev := nextEvent(t, sub); ev.Entry != want {
			t.Fatalf("after the lag got %s, want %s", ev.Peer, want.PeerID())
		}
	}
	noEvent(t, sub)

	// The missed count restarts after it was reported.
	for range 3 {
		if _, err := s.Merge(newTestPeer(t).seal(t, testNetwork, NewVersion(t0), nil), t0); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := sub.Next(ctx); !errors.As(err, &lag) || lag.Missed != 1 {
		t.Fatalf("second lag = %v, want Missed = 1", err)
	}
}

func TestSubscription_DefaultBuffer(t *testing.T) {
	p := TestParams()
	p.EventBuffer = 3
	s, _ := newTestStoreWith(t, p)
	sub := s.Subscribe(0) // 0 = Params.EventBuffer
	defer sub.Close()
	for range 4 {
		if _, err := s.Merge(newTestPeer(t).seal(t, testNetwork, NewVersion(t0), nil), t0); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var lag *LagError
	if _, err := sub.Next(ctx); !errors.As(err, &lag) || lag.Missed != 1 {
		t.Fatalf("Next = %v, want a lag of 1 with a buffer of 3", err)
	}
}

func TestSubscription_CloseDeliversBufferedThenClosed(t *testing.T) {
	s, _ := newTestStore(t)
	sub := s.Subscribe(0)
	e1 := newTestPeer(t).seal(t, testNetwork, NewVersion(t0), nil)
	e2 := newTestPeer(t).seal(t, testNetwork, NewVersion(t0), nil)
	for _, e := range []*SignedEntry{e1, e2} {
		if _, err := s.Merge(e, t0); err != nil {
			t.Fatal(err)
		}
	}
	sub.Close()
	sub.Close() // idempotent
	if _, err := s.Merge(newTestPeer(t).seal(t, testNetwork, NewVersion(t0), nil), t0); err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent(t, sub); ev.Entry != e1 {
		t.Fatal("first buffered event lost")
	}
	if ev := nextEvent(t, sub); ev.Entry != e2 {
		t.Fatal("second buffered event lost")
	}
	for range 2 {
		if _, err := sub.Next(context.Background()); !errors.Is(err, ErrClosed) {
			t.Fatalf("Next after the buffer drained = %v, want ErrClosed", err)
		}
	}
}

func TestSubscription_ContextEnds(t *testing.T) {
	s, _ := newTestStore(t)
	sub := s.Subscribe(0)
	defer sub.Close()

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := sub.Next(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled ctx: %v", err)
	}
	dctx, dcancel := context.WithDeadline(context.Background(), t0) // long past
	defer dcancel()
	if _, err := sub.Next(dctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("expired ctx: %v", err)
	}

	// A blocked Next returns when its ctx is cancelled.
	bctx, bcancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		_, err := sub.Next(bctx)
		done <- err
	}()
	bcancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("blocked Next = %v", err)
		}
	case <-time.After(testTimeout(5 * time.Second)):
		t.Fatal("blocked Next did not return on cancel")
	}
}

func TestSubscription_NextWakesOnEvent(t *testing.T) {
	s, _ := newTestStore(t)
	sub := s.Subscribe(0)
	defer sub.Close()
	type result struct {
		ev  Event
		err error
	}
	done := make(chan result)
	go func() {
		ev, err := sub.Next(context.Background())
		done <- result{ev, err}
	}()
	e := newTestPeer(t).seal(t, testNetwork, NewVersion(t0), nil)
	if _, err := s.Merge(e, t0); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-done:
		if r.err != nil || r.ev.Entry != e {
			t.Fatalf("Next = %+v, %v", r.ev, r.err)
		}
	case <-time.After(testTimeout(5 * time.Second)):
		t.Fatal("blocked Next not woken by an event")
	}
}

func TestStore_CloseClosesSubscriptions(t *testing.T) {
	s, l := newTestStore(t)
	buffered := s.Subscribe(0)
	blocked := s.Subscribe(0)
	e := newTestPeer(t).seal(t, testNetwork, NewVersion(t0), nil)
	if _, err := s.Merge(e, t0); err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent(t, blocked); ev.Entry != e {
		t.Fatal("wrong event")
	}
	done := make(chan error)
	go func() {
		_, err := blocked.Next(context.Background())
		done <- err
	}()

	last := s.Snapshot()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("blocked Next = %v, want ErrClosed", err)
		}
	case <-time.After(testTimeout(5 * time.Second)):
		t.Fatal("Store.Close did not wake a blocked Next")
	}
	if ev := nextEvent(t, buffered); ev.Entry != e {
		t.Fatal("Close dropped a buffered event")
	}
	if _, err := buffered.Next(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("drained subscription = %v, want ErrClosed", err)
	}
	buffered.Close() // after Store.Close: no panic, no effect
	blocked.Close()

	// A closed store refuses changes but stays readable.
	other := newTestPeer(t)
	if _, err := s.Merge(other.seal(t, testNetwork, NewVersion(t0), nil), t0); !errors.Is(err, ErrClosed) {
		t.Fatalf("Merge after Close = %v", err)
	}
	if ok, err := s.Depart(&Departure{PeerID: e.PeerID(), Network: testNetwork, LastVersion: e.Entry.Version, Timestamp: t0}, t0); ok || !errors.Is(err, ErrClosed) {
		t.Fatalf("Depart after Close = %v, %v", ok, err)
	}
	if gone := s.Purge(t0.Add(time.Hour)); gone != nil {
		t.Fatal("Purge after Close removed entries")
	}
	next, err := l.Refresh(t0.Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetLocal(next); !errors.Is(err, ErrClosed) {
		t.Fatalf("SetLocal after Close = %v", err)
	}
	if s.Snapshot() != last || last.Len() != 1 {
		t.Fatal("the last snapshot is not kept readable")
	}
	sub := s.Subscribe(0)
	if _, err := sub.Next(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Subscribe after Close: Next = %v, want ErrClosed", err)
	}
	sub.Close()
}

// waitBlockedInNext waits until n goroutines are parked in the select of
// Subscription.Next, by reading the goroutine dump: there is no other way to
// know that a goroutine is blocked rather than about to block.
func waitBlockedInNext(tb testing.TB, n int) {
	tb.Helper()
	deadline := time.Now().Add(testTimeout(5 * time.Second))
	buf := make([]byte, 1<<20)
	for {
		dump := string(buf[:runtime.Stack(buf, true)])
		got := 0
		for _, g := range strings.Split(dump, "\n\n") {
			if strings.Contains(g, "[select") && strings.Contains(g, "(*Subscription).Next(") {
				got++
			}
		}
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%d goroutines blocked in Next, want %d", got, n)
		}
		runtime.Gosched()
	}
}

func TestSubscription_CloseWakesEveryConcurrentNext(t *testing.T) {
	// Regression (fixed): Subscription is documented safe for concurrent use, but Next
	// waits on a notify channel of capacity 1 and Close (Subscription.Close
	// and Store.Close, events.go / store.go) sends a single token, so when
	// two goroutines are blocked in Next only one of them wakes up; the
	// other stays blocked until its ctx ends even though the subscription is
	// closed. The same lost wake-up happens when two events arrive for two
	// waiters. Fix: have a waiter that consumes the token re-post it when
	// it leaves state for others (closed, or events still buffered), or use
	// a done channel closed once on Close (and a sync.Cond-like broadcast
	// for events).
	for _, closer := range []string{"Subscription.Close", "Store.Close"} {
		t.Run(closer, func(t *testing.T) {
			s, _ := newTestStore(t)
			sub := s.Subscribe(0)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel() // releases a goroutine the bug left blocked
			const waiters = 2
			done := make(chan error, waiters)
			for range waiters {
				go func() {
					_, err := sub.Next(ctx)
					done <- err
				}()
			}
			waitBlockedInNext(t, waiters)
			if closer == "Store.Close" {
				_ = s.Close()
			} else {
				sub.Close()
			}
			timeout := time.After(testTimeout(2 * time.Second))
			for i := range waiters {
				select {
				case err := <-done:
					if !errors.Is(err, ErrClosed) {
						t.Fatalf("waiter %d: %v, want ErrClosed", i, err)
					}
				case <-timeout:
					cancel()
					for range waiters - i {
						<-done
					}
					t.Fatalf("%s woke %d of %d goroutines blocked in Next", closer, i, waiters)
				}
			}
		})
	}
}

func TestParams_Validate(t *testing.T) {
	for name, p := range map[string]Params{"default": DefaultParams(), "test": TestParams()} {
		if err := p.Validate(); err != nil {
			t.Errorf("%s params invalid: %v", name, err)
		}
	}
	if d, tp := DefaultParams(), TestParams(); tp.PurgeAfter >= d.PurgeAfter || d.PurgeAfter != 300*time.Second || d.MaxClockDrift != 50*time.Second {
		t.Errorf("profiles: default %+v, test %+v", d, tp)
	}
	tests := []struct {
		name string
		mut  func(*Params)
		want string // a fragment of the error
	}{
		{"zero PurgeAfter", func(p *Params) { p.PurgeAfter = 0 }, "PurgeAfter"},
		{"negative PurgeAfter", func(p *Params) { p.PurgeAfter = -time.Second }, "PurgeAfter"},
		{"zero MaxClockDrift", func(p *Params) { p.MaxClockDrift = 0 }, "MaxClockDrift"},
		{"MaxEntrySize too small", func(p *Params) { p.MaxEntrySize = 511 }, "MaxEntrySize"},
		{"MaxEntrySize too big", func(p *Params) { p.MaxEntrySize = 4<<20 + 1 }, "MaxEntrySize"},
		{"zero EventBuffer", func(p *Params) { p.EventBuffer = 0 }, "EventBuffer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := DefaultParams()
			tt.mut(&p)
			saved := p
			err := p.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "catalog: ") {
				t.Fatalf("Validate = %v, want an error about %s", err, tt.want)
			}
			if p != saved {
				t.Fatal("Validate modified the params")
			}
		})
	}
	edge := DefaultParams()
	edge.MaxEntrySize, edge.EventBuffer = 512, 1
	if err := edge.Validate(); err != nil {
		t.Errorf("inclusive bounds refused: %v", err)
	}
	edge.MaxEntrySize = 4 << 20
	if err := edge.Validate(); err != nil {
		t.Errorf("4 MiB refused: %v", err)
	}
	// Every invalid field is reported, not only the first.
	err := Params{}.Validate()
	for _, f := range []string{"PurgeAfter", "MaxClockDrift", "MaxEntrySize", "EventBuffer"} {
		if err == nil || !strings.Contains(err.Error(), f) {
			t.Errorf("zero Params: %v does not mention %s", err, f)
		}
	}
}

func TestOutcomeAndEventKind_String(t *testing.T) {
	for v, want := range map[interface{ String() string }]string{
		Added: "added", Updated: "updated", Outcome(0): "none",
		PeerDiscovered: "PeerDiscovered", PeerUpdated: "PeerUpdated", PeerDeparted: "PeerDeparted", EventKind(9): "EventKind(9)",
	} {
		if got := v.String(); got != want {
			t.Errorf("String() = %q, want %q", got, want)
		}
	}
}

func TestStore_ConcurrentReadersAndWriters(t *testing.T) {
	// Writers merge entries while readers check every snapshot they take.
	// Entries are built without signatures: Merge trusts its input (OpenEntry
	// verifies), and sealing thousands of entries would only slow -race down.
	const (
		writers        = 4
		peersPerWriter = 5
		updates        = 200
		readers        = 4
	)
	s, _ := newTestStore(t)
	now := t0.Add(updates * time.Millisecond)
	ids := make([][]peer.ID, writers)
	for w := range ids {
		for range peersPerWriter {
			ids[w] = append(ids[w], newTestPeer(t).id)
		}
	}
	sub := s.Subscribe(16) // small on purpose: the reader lags
	events := make(chan int)
	go func() {
		n := 0
		for {
			_, err := sub.Next(context.Background())
			if errors.Is(err, ErrClosed) {
				events <- n
				return
			}
			n++
		}
	}()

	stop := make(chan struct{})
	var readersWG, writersWG sync.WaitGroup
	errs := make(chan error, readers+writers+1)
	for range readers {
		readersWG.Go(func() {
			var lastVersion uint64
			seen := map[peer.ID]Version{}
			for {
				select {
				case <-stop:
					return
				default:
				}
				snap := s.Snapshot()
				if snap.Version() < lastVersion {
					errs <- errors.New("snapshot version went back")
					return
				}
				lastVersion = snap.Version()
				var prev peer.ID
				n := 0
				for e := range snap.All() {
					if n > 0 && e.PeerID() <= prev {
						errs <- errors.New("snapshot not sorted")
						return
					}
					if got, ok := snap.Get(e.PeerID()); !ok || got != e {
						errs <- errors.New("Get disagrees with All")
						return
					}
					if e.Entry.Version.Compare(seen[e.PeerID()]) < 0 {
						errs <- errors.New("a peer's version went back")
						return
					}
					seen[e.PeerID()] = e.Entry.Version
					prev = e.PeerID()
					n++
				}
				if n != snap.Len() {
					errs <- errors.New("Len disagrees with All")
					return
				}
				_, _ = s.NextExpiry()
			}
		})
	}
	// A waiter follows Changed from snapshot to snapshot.
	readersWG.Go(func() {
		snap := s.Snapshot()
		for {
			select {
			case <-snap.Changed():
				next := s.Snapshot()
				if next.Version() <= snap.Version() {
					errs <- errors.New("Changed closed but no newer snapshot")
					return
				}
				snap = next
			case <-stop:
				return
			}
		}
	})
	for w := range writers {
		writersWG.Go(func() {
			for i := range updates {
				for _, id := range ids[w] {
					// Hand-built entries (no signature) keep the writers fast;
					// raw must be set since Merge refuses unsealed entries.
					e := &SignedEntry{Entry: Entry{PeerID: id, Network: testNetwork, Version: ver(t0, t0.Add(time.Duration(i)*time.Millisecond))}, raw: []byte{1}}
					if _, err := s.Merge(e, now); err != nil {
						errs <- err
						return
					}
					_ = s.Check(e, now)
				}
			}
		})
	}
	writersWG.Wait()
	close(stop)
	readersWG.Wait()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	n := <-events
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	snap := s.Snapshot()
	if snap.Len() != writers*peersPerWriter || snap.Version() != 1+writers*peersPerWriter*updates {
		t.Fatalf("final snapshot: len %d version %d", snap.Len(), snap.Version())
	}
	for e := range snap.All() {
		if e.Entry.Version != ver(t0, t0.Add((updates-1)*time.Millisecond)) {
			t.Fatalf("peer %s ends at %v", e.PeerID(), e.Entry.Version)
		}
	}
	if n == 0 || n > writers*peersPerWriter*updates {
		t.Fatalf("subscriber got %d events", n)
	}
}

func TestStore_MaxPeersRefusesNewPeers(t *testing.T) {
	p := DefaultParams()
	p.MaxPeers = 2
	s, _ := newTestStoreWith(t, p)
	a, b, c := newTestPeer(t), newTestPeer(t), newTestPeer(t)
	ea := a.seal(t, testNetwork, NewVersion(t0), nil)
	eb := b.seal(t, testNetwork, NewVersion(t0), nil)
	ec := c.seal(t, testNetwork, NewVersion(t0), nil)
	outs, errs := s.MergeAll([]*SignedEntry{ea, eb, ec}, t0)
	if outs[0] != Added || outs[1] != Added || !errors.Is(errs[2], ErrCatalogFull) || IsRejected(errs[2]) {
		t.Fatalf("MergeAll = %v %v", outs, errs)
	}
	if s.Snapshot().Len() != 2 || s.Snapshot().Version() != 2 {
		t.Fatalf("one batch must publish one snapshot with 2 peers: len %d version %d", s.Snapshot().Len(), s.Snapshot().Version())
	}
	// Known peers still update at the cap.
	if out, err := s.Merge(a.seal(t, testNetwork, NewVersion(t0).Next(t0), nil), t0); err != nil || out != Updated {
		t.Fatalf("update at the cap = %v, %v", out, err)
	}
}
