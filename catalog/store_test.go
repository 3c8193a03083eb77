package catalog

import (
	"context"
	"errors"
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
	drift, purge, maxAge := p.MaxClockDrift, p.PurgeAfter, p.MaxAge()
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
		{name: "stale", offer: ver(restart.Add(-time.Hour), now.Add(-maxAge-time.Millisecond)), wantErr: ErrStale},
		{name: "exactly MaxAge old is stale", offer: ver(restart.Add(-time.Hour), now.Add(-maxAge)), wantErr: ErrStale},
		{name: "just under MaxAge old", offer: ver(restart.Add(-time.Hour), now.Add(-maxAge+time.Millisecond)), want: Added},
		{name: "late: PurgeAfter old", offer: ver(restart.Add(-time.Hour), now.Add(-purge)), want: Added},
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
	p.MinUpdateInterval = 0
	s, _ := newTestStoreWith(t, p)
	s.SetKeeper(KeeperFunc(func(peer.ID) bool { return true })) // nothing may be evicted
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
