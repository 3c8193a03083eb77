package catalog

import (
	"errors"
	"testing"
	"time"
)

// vouchData is a TicketCheck that vouches for entries holding a ticket
// whose data is data.
func vouchData(data string) TicketCheck {
	return TicketCheckFunc(func(e *Entry, _ time.Time) bool {
		for _, t := range e.Tickets {
			if string(t.Data) == data {
				return true
			}
		}
		return false
	})
}

// TestStore_EvictionJunkTickets: a ticket no local check vouches for buys
// nothing at eviction. Sybils that carry made-up tickets must go before an
// honest, older peer that holds none (before the fix, any ticket was a
// preference, so the honest peer was the only candidate without one and
// went first).
func TestStore_EvictionJunkTickets(t *testing.T) {
	for _, tc := range []struct {
		name  string
		check TicketCheck
	}{
		{"no ticket check", nil},
		{"a check that refuses the junk", vouchData("issued")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := TestParams()
			p.MaxPeers = 4
			s, _ := newTestStoreWith(t, p)
			s.SetTicketCheck(tc.check)
			junk := func(e *Entry) { e.Tickets = []Ticket{{Class: IDFromString("jwt"), Data: []byte("made up")}} }
			honest := newTestPeer(t).seal(t, testNetwork, NewVersion(t0), nil)
			if _, err := s.Merge(honest, t0); err != nil {
				t.Fatal(err)
			}
			var sybils []*SignedEntry
			for i := range 3 {
				e := newTestPeer(t).seal(t, testNetwork, NewVersion(t0), junk)
				if _, err := s.Merge(e, t0.Add(time.Duration(i+1)*100*time.Millisecond)); err != nil {
					t.Fatal(err)
				}
				sybils = append(sybils, e)
			}
			for i := range 3 {
				n := newTestPeer(t).seal(t, testNetwork, NewVersion(t0), junk)
				if _, err := s.Merge(n, t0.Add(time.Duration(i+10)*100*time.Millisecond)); err != nil {
					t.Fatal(err)
				}
				if _, ok := s.Snapshot().Get(honest.Entry.PeerID); !ok {
					t.Fatalf("arrival %d evicted the long-known honest peer although junk-ticket holders were newer", i)
				}
			}
			if _, ok := s.Snapshot().Get(sybils[0].Entry.PeerID); !ok {
				t.Fatal("eviction took an older sybil before the newest")
			}
		})
	}
}

// TestStore_EvictionVouchedByAdmission: in a closed catalog every entry's
// admission ticket was verified, so every entry counts as vouched and
// eviction is by arrival alone.
func TestStore_EvictionVouchedByAdmission(t *testing.T) {
	p := TestParams()
	p.MaxPeers = 2
	s, _ := newTestStoreWith(t, p)
	s.SetAdmission(admitAll{})
	a := newTestPeer(t).seal(t, testNetwork, NewVersion(t0), nil)
	b := newTestPeer(t).seal(t, testNetwork, NewVersion(t0), nil)
	c := newTestPeer(t).seal(t, testNetwork, NewVersion(t0), nil)
	for i, e := range []*SignedEntry{a, b, c} {
		if _, err := s.Merge(e, t0.Add(time.Duration(i)*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok := s.Snapshot().Get(b.Entry.PeerID); ok {
		t.Fatal("the newest-seen peer was not evicted")
	}
}

type admitAll struct{}

func (admitAll) Check(*Entry, time.Time) (time.Time, error) { return time.Time{}, nil }

func TestStore_EvictMinAge(t *testing.T) {
	p := TestParams()
	p.MaxPeers = 2
	p.EvictMinAge = time.Second
	s, _ := newTestStoreWith(t, p)
	keep := keepSet{}
	s.SetKeeper(keep)
	for i := range 2 {
		if _, err := s.Merge(newTestPeer(t).seal(t, testNetwork, NewVersion(t0), nil), t0.Add(time.Duration(i)*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	// The newest peer arrived at t0+1s: until t0+2s a stranger is refused,
	// ignored and not rejected, before its signature is checked.
	at := t0.Add(1500 * time.Millisecond)
	n := newTestPeer(t)
	e := n.seal(t, testNetwork, NewVersion(t0), nil)
	if err := s.Check(e, at); !errors.Is(err, ErrCatalogChurn) || IsRejected(err) || Reason(err) != "catalog_churn" {
		t.Fatalf("Check = %v (%s), want %v, ignored", err, Reason(err), ErrCatalogChurn)
	}
	if _, err := s.Merge(e, at); !errors.Is(err, ErrCatalogChurn) {
		t.Fatalf("Merge = %v", err)
	}
	forged := append([]byte(nil), e.Bytes()...)
	forged[len(forged)-1] ^= 1 // the signature's last byte
	if _, err := s.Open(forged, at); !errors.Is(err, ErrCatalogChurn) {
		t.Fatalf("Open of a forged entry = %v, want %v before the signature check", err, ErrCatalogChurn)
	}
	// A peer the keeper keeps (a connected peer's hello) is not held back.
	k := newTestPeer(t)
	keep[k.id] = true
	if _, err := s.Merge(k.seal(t, testNetwork, NewVersion(t0), nil), at); err != nil {
		t.Fatalf("a kept newcomer = %v", err)
	}
	// Once the newest evictable peer is old enough, a stranger gets in.
	if _, err := s.Merge(e, t0.Add(2*time.Second)); err != nil {
		t.Fatalf("after EvictMinAge = %v", err)
	}
}

// vouchUntil vouches for entries holding a ticket "issued" until end.
type vouchUntil struct{ end time.Time }

func (v vouchUntil) Vouches(e *Entry, now time.Time) bool {
	_, ok := v.VouchesUntil(e, now)
	return ok
}

func (v vouchUntil) VouchesUntil(e *Entry, now time.Time) (time.Time, bool) {
	for _, t := range e.Tickets {
		if string(t.Data) == "issued" && now.Before(v.end) {
			return v.end, true
		}
	}
	return time.Time{}, false
}

// TestStore_EvictionVouchEndsWithTheTicket: a peer vouched for by a
// ticket that expires counts as a ticket holder at eviction only until
// then. The verdict was kept for as long as the entry's tickets did not
// change, so an expired ticket went on shielding its holder (review
// finding): here the newest-seen peer, whose ticket ended, goes before an
// older peer that holds none.
func TestStore_EvictionVouchEndsWithTheTicket(t *testing.T) {
	ticket := func(e *Entry) { e.Tickets = []Ticket{{Class: IDFromString("jwt"), Data: []byte("issued")}} }
	// An older peer without a ticket, then the newest-seen holding one
	// valid until t0 + 1 s; a newcomer at arrive makes room.
	evicted := func(arrive time.Time) (oldGone, holderGone bool) {
		p := TestParams()
		p.MaxPeers = 2
		s, _ := newTestStoreWith(t, p)
		s.SetTicketCheck(vouchUntil{end: t0.Add(time.Second)})
		old := newTestPeer(t).seal(t, testNetwork, NewVersion(t0), nil)
		holder := newTestPeer(t).seal(t, testNetwork, NewVersion(t0), ticket)
		if _, err := s.Merge(old, t0); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Merge(holder, t0.Add(100*time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		n := newTestPeer(t).seal(t, testNetwork, NewVersion(arrive), nil)
		if _, err := s.Merge(n, arrive); err != nil {
			t.Fatal(err)
		}
		_, oldOK := s.Snapshot().Get(old.Entry.PeerID)
		_, holderOK := s.Snapshot().Get(holder.Entry.PeerID)
		return !oldOK, !holderOK
	}
	if oldGone, holderGone := evicted(t0.Add(500 * time.Millisecond)); !oldGone || holderGone {
		t.Fatalf("while the ticket is valid: old evicted %v, holder evicted %v; want the old peer to go", oldGone, holderGone)
	}
	if oldGone, holderGone := evicted(t0.Add(2 * time.Second)); oldGone || !holderGone {
		t.Fatalf("after the ticket expired: old evicted %v, holder evicted %v; want the holder (newest-seen) to go", oldGone, holderGone)
	}
}

// Entries held before a ticket check is installed are judged by it at
// their next update, also when their tickets are unchanged (a heartbeat):
// the verdict of no check was kept for as long as the tickets stayed.
func TestStore_TicketCheckInstalledLaterJudgesHeldEntries(t *testing.T) {
	s, _ := newTestStore(t)
	a := newTestPeer(t)
	tk := func(e *Entry) { e.Tickets = []Ticket{{Class: IDFromString("jwt"), Data: []byte("good")}} }
	if _, err := s.Merge(a.seal(t, testNetwork, NewVersion(t0), tk), t0); err != nil {
		t.Fatal(err)
	}
	s.SetTicketCheck(vouchData("good"))
	now := t0.Add(500 * time.Millisecond)
	if _, err := s.Merge(a.seal(t, testNetwork, ver(t0, now), tk), now); err != nil {
		t.Fatal(err)
	}
	it, _ := s.Snapshot().st.get(a.id)
	if !it.vouch.at(now.UnixMilli()) {
		t.Fatal("a heartbeat under the new ticket check kept the verdict of no check")
	}
	s.SetTicketCheck(vouchData("other"))
	now = now.Add(500 * time.Millisecond)
	if _, err := s.Merge(a.seal(t, testNetwork, ver(t0, now), tk), now); err != nil {
		t.Fatal(err)
	}
	if it, _ := s.Snapshot().st.get(a.id); it.vouch.at(now.UnixMilli()) {
		t.Fatal("a heartbeat under a check that refuses its ticket kept the old check's verdict")
	}
}
