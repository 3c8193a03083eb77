package catalog

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

func TestStore_RateLimit(t *testing.T) {
	p := TestParams()
	p.MinUpdateInterval, p.UpdateBurst = time.Second, 3
	s, _ := newTestStoreWith(t, p)
	a := newTestPeer(t)
	now := t0
	at := func(d time.Duration) *SignedEntry { return a.seal(t, testNetwork, ver(t0, now.Add(d)), nil) }
	tests := []struct {
		name   string
		update time.Duration // after t0
		want   error
	}{
		{"new peer (full bucket)", 0, nil},
		{"burst 1", time.Millisecond, nil},
		{"burst 2", 2 * time.Millisecond, nil},
		{"beyond the burst", 3 * time.Millisecond, ErrRateLimited},
		{"still too soon", 999 * time.Millisecond, ErrRateLimited},
		{"one interval after the first", time.Second, nil},
		{"then once per interval", 1500 * time.Millisecond, ErrRateLimited},
		{"a heartbeat", 30 * time.Second, nil},
		{"after a pause the burst is back 1", 30*time.Second + time.Millisecond, nil},
		{"after a pause the burst is back 2", 30*time.Second + 2*time.Millisecond, nil},
		{"after a pause the burst is back 3", 30*time.Second + 3*time.Millisecond, ErrRateLimited},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := s.RateLimited()
			e := at(tt.update)
			recv := now.Add(tt.update)
			// The verdict of Check (the gossip validator's) and of Merge agree.
			if err := s.Check(e, recv); !errors.Is(err, tt.want) || (err != nil && IsRejected(err)) {
				t.Fatalf("Check = %v, want %v (ignored, not rejected)", err, tt.want)
			}
			_, err := s.Merge(e, recv)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Merge = %v, want %v", err, tt.want)
			}
			if tt.want != nil {
				if got := s.RateLimited(); got != before+1 {
					t.Fatalf("RateLimited = %d, want %d", got, before+1)
				}
				if Reason(err) != "rate_limited" {
					t.Fatalf("Reason = %q", Reason(err))
				}
			}
		})
	}
	// A forger dating updates ahead borrows at most MaxClockDrift worth:
	// none may be dated beyond the drift.
	b := newTestPeer(t)
	accepted := 0
	for i := range 1000 {
		e := b.seal(t, testNetwork, ver(t0, now.Add(time.Duration(i)*100*time.Millisecond)), nil)
		if _, err := s.Merge(e, now); err == nil {
			accepted++
		}
	}
	if limit := int(p.MaxClockDrift/p.MinUpdateInterval) + p.UpdateBurst; accepted > limit {
		t.Fatalf("a forger got %d updates accepted at one instant, want at most %d", accepted, limit)
	}
}

// TestStore_RateLimitSurvivesDeparture: a peer that drained its bucket,
// departed and came back (the same run or a new one) takes up the bucket
// where it left it; otherwise depart-and-return would lift the limit.
// Open, which gossip and sync use, counts the refusal as Merge does.
func TestStore_RateLimitSurvivesDeparture(t *testing.T) {
	p := TestParams()
	p.MinUpdateInterval, p.UpdateBurst = time.Second, 3
	s, _ := newTestStoreWith(t, p)
	a := newTestPeer(t)
	var last *SignedEntry
	for i := range p.UpdateBurst {
		last = a.seal(t, testNetwork, ver(t0, t0.Add(time.Duration(i)*time.Millisecond)), nil)
		if _, err := s.Merge(last, t0); err != nil {
			t.Fatalf("update %d: %v", i, err)
		}
	}
	leave := func(v Version) {
		t.Helper()
		if ok, err := s.Depart(&Departure{PeerID: a.id, Network: testNetwork, LastVersion: v, Timestamp: t0}, t0); !ok || err != nil {
			t.Fatalf("Depart = %v, %v", ok, err)
		}
	}
	leave(last.Entry.Version)
	back := t0.Add(10 * time.Millisecond)
	for _, tt := range []struct {
		name string
		v    Version
	}{
		{"the same run", ver(t0, back)},
		{"a new run", ver(back, back)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := s.RateLimited()
			e := a.seal(t, testNetwork, tt.v, nil)
			if _, err := s.Open(e.Bytes(), back); !errors.Is(err, ErrRateLimited) {
				t.Fatalf("Open of the return = %v, want %v", err, ErrRateLimited)
			}
			if got := s.RateLimited(); got != before+1 {
				t.Fatalf("RateLimited after Open = %d, want %d", got, before+1)
			}
			if _, err := s.Merge(e, back); !errors.Is(err, ErrRateLimited) {
				t.Fatalf("Merge of the return = %v, want %v", err, ErrRateLimited)
			}
		})
	}
	// One interval after the first update a token is back, and the
	// return takes it; the bucket is the one it left with (a fresh one
	// would have its tat one interval after the return, not three).
	later := t0.Add(time.Second)
	e := a.seal(t, testNetwork, ver(later, later), nil)
	if out, err := s.Merge(e, later); err != nil || out != Added {
		t.Fatalf("Merge of the return a token later = %v, %v, want Added", out, err)
	}
	want := t0.Add(time.Duration(p.UpdateBurst+1) * p.MinUpdateInterval).UnixMilli()
	if it, ok := s.Snapshot().st.get(a.id); !ok || it.tat != want {
		t.Fatalf("held tat = %d (%v), want %d", it.tat, ok, want)
	}
}

// TestStore_RateLimitNewRunRefills: a node that spent its burst just
// before it stopped (closing producers withdraws a stream each) and
// restarts finds its new run's burst taken, departed or not: a new run that
// began at least UpdateBurst × MinUpdateInterval after the last one starts
// with a full bucket, as its own Local assumes. A new run sooner than that
// (a peer starting runs to refill its bucket) takes up the old bucket.
func TestStore_RateLimitNewRunRefills(t *testing.T) {
	p := TestParams()
	p.MinUpdateInterval, p.UpdateBurst = time.Second, 3
	refill := time.Duration(p.UpdateBurst) * p.MinUpdateInterval
	for _, tt := range []struct {
		name    string
		depart  bool
		started time.Duration // the old run's start before its burst
		want    error         // for the new run's burst
	}{
		{"departed, a long run", true, time.Minute, nil},
		{"crashed, a long run", false, time.Minute, nil},
		{"departed, a run shorter than a refill", true, refill / 2, ErrRateLimited},
		{"crashed, a run shorter than a refill", false, refill / 2, ErrRateLimited},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := newTestStoreWith(t, p)
			a := newTestPeer(t)
			burst := t0.Add(2 * time.Second)
			start := burst.Add(-tt.started)
			var last *SignedEntry
			for i := range p.UpdateBurst {
				at := burst.Add(time.Duration(i) * time.Millisecond)
				last = a.seal(t, testNetwork, ver(start, at), nil)
				if _, err := s.Merge(last, at); err != nil {
					t.Fatalf("old run update %d: %v", i, err)
				}
			}
			now := burst.Add(10 * time.Millisecond)
			if tt.depart {
				if ok, err := s.Depart(&Departure{PeerID: a.id, Network: testNetwork, LastVersion: last.Entry.Version, Timestamp: now}, now); !ok || err != nil {
					t.Fatalf("Depart = %v, %v", ok, err)
				}
			}
			back := now.Add(500 * time.Millisecond)
			var err error
			for i := range p.UpdateBurst {
				at := back.Add(time.Duration(i) * time.Millisecond)
				if _, err = s.Merge(a.seal(t, testNetwork, ver(back, at), nil), at); err != nil {
					break
				}
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("the new run's burst: %v, want %v", err, tt.want)
			}
		})
	}
}

// TestLocal_KeepsToTheRateLimit: the local entry's own versions, sealed
// as fast as its owner changes it, pass a receiver's rate limit, however
// many of them the receiver sees; changes beyond the burst are held and
// coalesced.
func TestLocal_KeepsToTheRateLimit(t *testing.T) {
	p := TestParams()
	p.MinUpdateInterval, p.UpdateBurst = 100*time.Millisecond, 3
	l, err := NewLocal(newTestPeer(t).key, testNetwork, t0, nil)
	if err != nil {
		t.Fatal(err)
	}
	l.SetUpdateLimit(p.MinUpdateInterval, p.UpdateBurst)
	all, _ := newTestStoreWith(t, p)  // sees every version
	some, _ := newTestStoreWith(t, p) // sees every third
	seen := 0
	deliver := func(e *SignedEntry, now time.Time) {
		t.Helper()
		if _, err := all.Merge(e, now); err != nil {
			t.Fatalf("version %v refused: %v", e.Entry.Version, err)
		}
		if seen%3 == 0 {
			if _, err := some.Merge(e, now); err != nil {
				t.Fatalf("version %v refused by a partial receiver: %v", e.Entry.Version, err)
			}
		}
		seen++
	}
	deliver(l.Current(), t0)
	now := t0
	held := 0
	for i := range 50 {
		now = now.Add(10 * time.Millisecond)
		tag := IDFromString(fmt.Sprint(i))
		e, changed, err := l.Update(now, func(e *Entry) { e.Tags = []Tag{tag} })
		if err != nil {
			t.Fatal(err)
		}
		if changed {
			deliver(e, now)
		} else if _, ok := l.Pending(); ok {
			held++
		}
		if e, changed, _ := l.Flush(now); changed {
			deliver(e, now)
		}
	}
	if held == 0 {
		t.Fatal("no change was held: the test does not exercise the limit")
	}
	due, ok := l.Pending()
	if ok {
		e, changed, _ := l.Flush(due)
		if !changed {
			t.Fatal("Flush at the due time sealed nothing")
		}
		deliver(e, due)
		now = due
	}
	if !l.Current().Entry.HasTag(IDFromString("49")) {
		t.Fatal("the last change was lost")
	}
	// A heartbeat right after is dated as the limit allows, and passes.
	e, err := l.Refresh(now)
	if err != nil {
		t.Fatal(err)
	}
	deliver(e, now.Add(p.MinUpdateInterval))
}

// publicEntry seals an entry of a fresh peer announcing the given IPv4
// addresses.
func publicEntry(t *testing.T, at time.Time, ips ...string) *SignedEntry {
	t.Helper()
	p := newTestPeer(t)
	return p.seal(t, testNetwork, NewVersion(at), func(e *Entry) {
		for _, ip := range ips {
			e.Addrs = append(e.Addrs, mustAddr(t, "/ip4/"+ip+"/tcp/4001"))
		}
	})
}

func TestStore_AddressCaps(t *testing.T) {
	p := TestParams()
	p.MaxPeersPerIP, p.MaxPeersPerSubnet = 2, 3
	s, _ := newTestStoreWith(t, p)
	merge := func(e *SignedEntry) error { _, err := s.Merge(e, t0); return err }
	ok := func(e *SignedEntry) {
		t.Helper()
		if err := merge(e); err != nil {
			t.Fatal(err)
		}
	}
	capped := func(e *SignedEntry) {
		t.Helper()
		if err := merge(e); !errors.Is(err, ErrAddressCap) || IsRejected(err) {
			t.Fatalf("Merge = %v, want %v (ignored)", err, ErrAddressCap)
		}
	}
	a1 := publicEntry(t, t0, "198.51.100.1")
	ok(a1)
	ok(publicEntry(t, t0, "198.51.100.1"))
	capped(publicEntry(t, t0, "198.51.100.1")) // a third peer on one IP
	ok(publicEntry(t, t0, "198.51.100.2"))
	capped(publicEntry(t, t0, "198.51.100.3")) // a fourth in one /24
	ok(publicEntry(t, t0, "198.51.101.3"))     // the next /24 is another subnet
	// An entry with one capped address among others is refused whole.
	capped(publicEntry(t, t0, "203.0.113.9", "198.51.100.7"))

	// Loopback, private and link-local addresses are not counted: a test
	// on one machine (all 127.0.0.1) or a LAN is not capped.
	for range 5 {
		ok(publicEntry(t, t0, "127.0.0.1", "10.0.0.1", "192.168.1.1", "169.254.1.1"))
	}
	six := func(ip string) *SignedEntry {
		p := newTestPeer(t)
		return p.seal(t, testNetwork, NewVersion(t0), func(e *Entry) {
			e.Addrs = []ma.Multiaddr{mustAddr(t, "/ip6/"+ip+"/udp/4001/quic-v1")}
		})
	}
	ok(six("2001:db8:1:1::1"))
	ok(six("2001:db8:1:2::1"))
	ok(six("2001:db8:1:3::1"))
	capped(six("2001:db8:1:4::1")) // a fourth in one /48
	ok(six("2001:db8:2::1"))

	// A known peer that keeps its address is never capped by its own
	// count; leaving frees the slot.
	a1n := &SignedEntry{Entry: a1.Entry, raw: a1.raw}
	a1n.Entry.Version = a1.Entry.Version.Next(t0.Add(time.Second))
	if out, err := s.Merge(a1n, t0.Add(time.Second)); err != nil || out != Updated {
		t.Fatalf("heartbeat at the cap = %v, %v", out, err)
	}
	if ok, err := s.Depart(&Departure{PeerID: a1.Entry.PeerID, Network: testNetwork, LastVersion: a1n.Entry.Version, Timestamp: t0}, t0); !ok {
		t.Fatal(err)
	}
	ok(publicEntry(t, t0, "198.51.100.1"))
}

// keepSet is a Keeper over a set of peers.
type keepSet map[peer.ID]bool

func (k keepSet) Keep(id peer.ID) bool { return k[id] }

func TestStore_EvictionOrder(t *testing.T) {
	p := TestParams()
	p.MaxPeers = 4
	s, _ := newTestStoreWith(t, p)
	s.SetTicketCheck(vouchData("vouched"))
	sub := s.Subscribe(0)
	defer sub.Close()
	// Peers arrive 100 ms apart: e[0] is the oldest seen.
	var es []*SignedEntry
	for i := range 4 {
		tp := newTestPeer(t)
		e := tp.seal(t, testNetwork, NewVersion(t0), func(e *Entry) {
			if i == 2 {
				e.Tickets = []Ticket{{Class: IDFromString("jwt"), Data: []byte("vouched")}}
			}
		})
		if _, err := s.Merge(e, t0.Add(time.Duration(i)*100*time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		es = append(es, e)
		nextEvent(t, sub)
	}
	keep := keepSet{es[3].Entry.PeerID: true} // e.g. connected
	s.SetKeeper(keep)

	has := func(e *SignedEntry) bool { _, ok := s.Snapshot().Get(e.Entry.PeerID); return ok }
	admit := func(at time.Duration) *SignedEntry {
		t.Helper()
		n := newTestPeer(t).seal(t, testNetwork, NewVersion(t0), nil)
		out, err := s.Merge(n, t0.Add(at))
		if err != nil || out != Added {
			t.Fatalf("a new peer at the cap = %v, %v", out, err)
		}
		return n
	}
	// The newest-seen peer that holds no vouched ticket and is not kept
	// goes: e[3] is kept, e[2] holds a vouched ticket, so e[1].
	n1 := admit(time.Second)
	if has(es[1]) || !has(es[0]) || !has(es[2]) || !has(es[3]) || !has(n1) {
		t.Fatal("eviction did not take e[1]")
	}
	ev := nextEvent(t, sub)
	if ev.Kind != PeerDeparted || !ev.Evicted || ev.Peer != es[1].Entry.PeerID || ev.Old != es[1] {
		t.Fatalf("eviction event = %+v", ev)
	}
	if ev := nextEvent(t, sub); ev.Kind != PeerDiscovered || ev.Peer != n1.Entry.PeerID {
		t.Fatalf("then %+v", ev)
	}
	if s.Snapshot().Departed(es[1].Entry.PeerID) {
		t.Fatal("an evicted peer counts as departed")
	}
	// Then the newcomer itself (newest seen), before the long-known e[0].
	n2 := admit(1100 * time.Millisecond)
	if has(n1) || !has(es[0]) || !has(n2) {
		t.Fatal("eviction did not take the newest-seen peer")
	}
	// An update keeps the first-seen time: e[0] refreshed is still oldest.
	e0 := &SignedEntry{Entry: es[0].Entry, raw: es[0].raw}
	e0.Entry.Version = e0.Entry.Version.Next(t0.Add(1200 * time.Millisecond))
	if _, err := s.Merge(e0, t0.Add(1200*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	admit(1300 * time.Millisecond)
	if has(n2) || !has(es[0]) {
		t.Fatal("an update made a long-known peer look new")
	}
	// When every peer without a ticket must be kept, the newest-seen ticket
	// holder goes: a made-up ticket must not pin a slot for good.
	for e := range s.Snapshot().All() {
		if len(e.Entry.Tickets) == 0 {
			keep[e.Entry.PeerID] = true
		}
	}
	admit(1350 * time.Millisecond)
	if has(es[2]) {
		t.Fatal("a ticket holder was spared although nothing else could go")
	}
	// When every candidate must be kept, a new peer is refused (ignored).
	for e := range s.Snapshot().All() {
		keep[e.Entry.PeerID] = true
	}
	n := newTestPeer(t).seal(t, testNetwork, NewVersion(t0), nil)
	if err := s.Check(n, t0.Add(1400*time.Millisecond)); !errors.Is(err, ErrCatalogFull) || IsRejected(err) {
		t.Fatalf("Check = %v, want %v", err, ErrCatalogFull)
	}
	if _, err := s.Merge(n, t0.Add(1400*time.Millisecond)); !errors.Is(err, ErrCatalogFull) {
		t.Fatalf("Merge = %v, want %v", err, ErrCatalogFull)
	}
	if s.Snapshot().Len() != 4 {
		t.Fatalf("len %d", s.Snapshot().Len())
	}
}

func TestStore_IncrementalEvents(t *testing.T) {
	s, _ := newTestStore(t)
	sub := s.Subscribe(0)
	defer sub.Close()
	orders, blocks := IDFromString("orders"), IDFromString("blocks")
	a, b := newTestPeer(t), newTestPeer(t)
	a1 := a.seal(t, testNetwork, ver(t0, t0), func(e *Entry) { e.Streams = []StreamID{orders} })
	a2 := a.seal(t, testNetwork, ver(t0, t0.Add(time.Second)), func(e *Entry) { e.Streams = []StreamID{blocks} })
	b1 := b.seal(t, testNetwork, ver(t0, t0), func(e *Entry) { e.Streams = []StreamID{orders} })
	s0 := s.Snapshot()
	if _, errs := s.MergeAll([]*SignedEntry{a1, b1}, t0); errs[0] != nil || errs[1] != nil {
		t.Fatal(errs)
	}
	s1 := s.Snapshot()
	if _, err := s.Merge(a2, t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	s2 := s.Snapshot()

	want := []Event{
		{Kind: PeerDiscovered, Peer: a.id, Entry: a1},
		{Kind: PeerDiscovered, Peer: b.id, Entry: b1},
		{Kind: PeerUpdated, Peer: a.id, Entry: a2, Old: a1},
	}
	for i, w := range want {
		if got := nextEvent(t, sub); got != w {
			t.Fatalf("event %d = %+v, want %+v", i, got, w)
		}
	}
	// The producers index follows the change, and older snapshots keep
	// theirs.
	ids := func(es []*SignedEntry) []peer.ID {
		var out []peer.ID
		for _, e := range es {
			out = append(out, e.Entry.PeerID)
		}
		slices.Sort(out)
		return out
	}
	both := ids([]*SignedEntry{a1, b1})
	if got := ids(s1.Producers(orders)); !slices.Equal(got, both) {
		t.Fatalf("s1 orders producers %v", got)
	}
	if got := ids(s2.Producers(orders)); !slices.Equal(got, []peer.ID{b.id}) {
		t.Fatalf("s2 orders producers %v", got)
	}
	if got := s2.Producers(blocks); len(got) != 1 || got[0] != a2 {
		t.Fatalf("s2 blocks producers %v", got)
	}
	// ChangedSince names exactly the peers that changed in between.
	if got, ok := s2.ChangedSince(s1); !ok || !slices.Equal(got, []peer.ID{a.id}) {
		t.Fatalf("ChangedSince(s1) = %v, %v", got, ok)
	}
	if got, ok := s2.ChangedSince(s0); !ok || !slices.Equal(got, both) {
		t.Fatalf("ChangedSince(s0) = %v, %v", got, ok)
	}
	if got, ok := s2.ChangedSince(s2); !ok || len(got) != 0 {
		t.Fatalf("ChangedSince(self) = %v, %v", got, ok)
	}
	// A local change names the local peer.
	local := s2.Local()
	l2 := &SignedEntry{Entry: local.Entry, raw: local.raw}
	l2.Entry.Version = local.Entry.Version.Next(t0.Add(2 * time.Second))
	if err := s.SetLocal(l2); err != nil {
		t.Fatal(err)
	}
	if got, ok := s.Snapshot().ChangedSince(s2); !ok || !slices.Equal(got, []peer.ID{local.Entry.PeerID}) {
		t.Fatalf("ChangedSince after SetLocal = %v, %v", got, ok)
	}
	// Past the log, the caller is told to compare everything.
	for i := range changeLogSize + 1 {
		e := newTestPeer(t).seal(t, testNetwork, ver(t0, t0), nil)
		if _, err := s.Merge(e, t0); err != nil {
			t.Fatal(i, err)
		}
	}
	if _, ok := s.Snapshot().ChangedSince(s2); ok {
		t.Fatal("ChangedSince claims to know changes it forgot")
	}
}

// TestStore_SnapshotsShareStructure checks that many snapshots of a large
// catalog do not each copy it: every update costs O(log n) memory.
func TestStore_SnapshotsShareStructure(t *testing.T) {
	if testing.Short() {
		t.Skip("seals 2 000 entries")
	}
	p := TestParams()
	s, _ := newTestStoreWith(t, p)
	const n = 2000
	es := make([]*SignedEntry, n)
	for i := range es {
		es[i] = newTestPeer(t).seal(t, testNetwork, ver(t0, t0), func(e *Entry) {
			e.Streams = []StreamID{IDFromString(fmt.Sprint(i % 7))}
		})
	}
	if _, errs := s.MergeAll(es, t0); slices.ContainsFunc(errs, func(err error) bool { return err != nil }) {
		t.Fatal(errs)
	}
	allocs := testing.AllocsPerRun(50, func() {
		i := int(s.Snapshot().Version()) % n
		e := &SignedEntry{Entry: es[i].Entry, raw: es[i].raw}
		e.Entry.Version.UpdateMS = es[i].Entry.Version.UpdateMS + int64(s.Snapshot().Version())
		es[i] = e
		if _, err := s.Merge(e, t0); err != nil {
			t.Fatal(err)
		}
	})
	// A copy of the catalog would be thousands of allocations.
	if allocs > 100 {
		t.Fatalf("%v allocations per update of a %d-peer catalog", allocs, n)
	}
	if got := len(s.Snapshot().Producers(IDFromString("3"))); got != (n+3)/7 {
		t.Fatalf("%d producers", got)
	}
}
