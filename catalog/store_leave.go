package catalog

import (
	"fmt"
	"time"
)

// How peers leave the catalog: a signed departure (Depart), a purge of
// the silent, stale or no longer admitted (Purge, NextExpiry). Each leaves
// a tombstone of the peer's last version (state.depart).

// CheckDeparture reports whether applying d at now would remove a peer,
// without changing anything: nil if it would, otherwise the reason (see
// [IsRejected]). Gossip validators call it before accepting a departure.
func (s *Store) CheckDeparture(d *Departure, now time.Time) error {
	return s.checkDeparture(s.cur.Load().st, d, now)
}

// OpenDeparture opens a sealed departure for this catalog at now:
// CheckDeparture's checks first, on the decoded but unverified departure,
// then the signature (see [OpenDeparture]). A departure that would not
// apply (a peer this catalog does not hold, an old or late one) is refused
// before its signature is checked, as an entry is (Store.Open): any key can
// sign a departure of its own made-up identity, and each cost a check.
func (s *Store) OpenDeparture(data []byte, now time.Time) (*Departure, error) {
	d, env, err := decodeDeparture(data)
	if err != nil {
		return nil, err
	}
	if err := s.CheckDeparture(d, now); err != nil {
		return nil, err
	}
	if err := verifyDeparture(d, env); err != nil {
		return nil, err
	}
	return d, nil
}

func (s *Store) checkDeparture(st state, d *Departure, now time.Time) error {
	if d.Network != s.network {
		return fmt.Errorf("%w: departure for %s", ErrOtherNetwork, d.Network.Short())
	}
	if ahead := d.Timestamp.Sub(now); ahead > s.params.MaxClockDrift {
		return fmt.Errorf("%w: departure of %s is dated %v ahead", ErrClockDrift, d.PeerID, ahead)
	}
	if late := now.Sub(d.Timestamp); late > s.params.MaxClockDrift {
		// Late, not forged: a relay on a loaded host took that long. An
		// honest relay must not be scored down for it (reject would).
		return refuse(ErrStale, "departure of %s signed %v ago", d.PeerID, late)
	}
	// The tombstone lives until LastVersion goes stale: refuse one dated in
	// the future, which would never expire.
	if d.LastVersion.UpdatedAt().After(now.Add(s.params.MaxClockDrift)) {
		return fmt.Errorf("%w: departure of %s claims version %v from the future", ErrClockDrift, d.PeerID, d.LastVersion)
	}
	old, ok := st.get(d.PeerID)
	if !ok {
		return ErrUnknown // the local peer is never in peers
	}
	if d.LastVersion.Compare(old.e.Entry.Version) < 0 {
		return fmt.Errorf("%w: departure at %v, known %v", ErrNotNewer, d.LastVersion, old.e.Entry.Version)
	}
	return nil
}

// Depart applies a verified departure notice. It removes the peer only if
// the notice is for this network, dated no more than the clock drift
// ahead of now (a rejection) nor behind it (ignored as stale: late, not
// forged), with a LastVersion not from the future and at least the known
// version. It reports whether the peer was removed.
func (s *Store) Depart(d *Departure, now time.Time) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false, ErrClosed
	}
	if err := s.checkDeparture(s.w, d, now); err != nil {
		return false, err
	}
	it, _ := s.w.get(d.PeerID)
	old, _ := s.w.remove(d.PeerID)
	s.w.depart(d.PeerID, d.LastVersion, it.tat, s.graceMS(), false, s.params.MaxPeers) // >= the known version, checked above
	s.publish(s.cur.Load().local, []Event{{Kind: PeerDeparted, Peer: d.PeerID, Entry: old, Old: old}})
	return true, nil
}

// Purge removes every remote entry that arrived PurgeAfter or longer ago
// without a newer version, or turned MaxAge old (see Params.LateGrace),
// and in a closed catalog every entry whose admission ended, and returns
// them. Each purged entry leaves a tombstone of its version until that
// version turns MaxAge: a late copy of it (or of an older one) is not
// newer, so it cannot bring a dead peer back. It costs O(k log n) for k
// such entries.
func (s *Store) Purge(now time.Time) []*SignedEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	limit := now.Add(-s.params.PurgeAfter).UnixMilli()
	var gone []*SignedEntry
	for {
		it, ok := s.w.expiry.Min()
		if !ok || it.t > limit {
			break
		}
		held, _ := s.w.get(it.id)
		e, _ := s.w.remove(it.id)
		gone = append(gone, e)
		if e.Entry.Version.UpdateMS+s.graceMS() > limit {
			s.w.depart(it.id, e.Entry.Version, held.tat, s.graceMS(), true, s.params.MaxPeers)
		}
	}
	forgot := false
	for {
		it, ok := s.w.depExp.Min()
		if !ok || it.t > limit {
			break
		}
		s.w.forgetDeparture(it.id)
		forgot = true
	}
	if len(gone) == 0 && !forgot {
		return nil
	}
	events := make([]Event, len(gone))
	for i, e := range gone {
		events[i] = Event{Kind: PeerDeparted, Peer: e.Entry.PeerID, Entry: e, Old: e, Purged: true}
	}
	s.publish(s.cur.Load().local, events)
	return gone
}

// graceMS is Params.LateGrace in milliseconds: tombstones are kept until
// their version turns MaxAge, that is LateGrace past PurgeAfter.
func (s *Store) graceMS() int64 { return s.params.LateGrace.Milliseconds() }

// NextExpiry returns when Purge next has work: the first remote entry is
// due for a purge (or its admission ends), or a tombstone expires. It returns false when there is none. It
// costs O(log n).
func (s *Store) NextExpiry() (time.Time, bool) {
	st := s.cur.Load().st
	e, eok := st.expiry.Min()
	d, dok := st.depExp.Min()
	if !eok && !dok {
		return time.Time{}, false
	}
	ms := e.t
	if !eok || (dok && d.t < ms) {
		ms = d.t
	}
	return time.UnixMilli(ms).Add(s.params.PurgeAfter), true
}
