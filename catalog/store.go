package catalog

import (
	"fmt"
	"iter"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Outcome says how a merged entry changed the catalog.
type Outcome int

const (
	// Added: the peer was not in the catalog.
	Added Outcome = iota + 1
	// Updated: the entry replaced an older version of the same peer.
	Updated
)

func (o Outcome) String() string {
	switch o {
	case Added:
		return "added"
	case Updated:
		return "updated"
	}
	return "none"
}

// Snapshot is an immutable view of the catalog. Readers take it without
// locks and may keep it as long as they like; it never changes. Entries
// are shared: treat them as read-only.
type Snapshot struct {
	version uint64
	local   *SignedEntry
	peers   map[peer.ID]*SignedEntry
	sorted  []*SignedEntry
	changed chan struct{}
	// departed holds the last version of peers that announced departure,
	// until that version goes stale, so replays of their older entries
	// (from gossip caches or slow relays) cannot resurrect them.
	departed map[peer.ID]Version
}

// Version increases by one with every change to the catalog.
func (s *Snapshot) Version() uint64 { return s.version }

// Local is the local peer's current entry.
func (s *Snapshot) Local() *SignedEntry { return s.local }

// Get returns the entry of id, the local peer included.
func (s *Snapshot) Get(id peer.ID) (*SignedEntry, bool) {
	if id == s.local.Entry.PeerID {
		return s.local, true
	}
	e, ok := s.peers[id]
	return e, ok
}

// Departed reports whether id left with a signed departure notice (rather
// than being purged for silence), as long as the notice is remembered:
// until its last version goes stale.
func (s *Snapshot) Departed(id peer.ID) bool {
	_, ok := s.departed[id]
	return ok
}

// Len is the number of remote peers.
func (s *Snapshot) Len() int { return len(s.sorted) }

// All iterates over remote peers in peer ID order.
func (s *Snapshot) All() iter.Seq[*SignedEntry] { return slices.Values(s.sorted) }

// Peers returns the remote peers in peer ID order, in a new slice.
func (s *Snapshot) Peers() []*SignedEntry { return slices.Clone(s.sorted) }

// Producers returns the remote peers that produce stream id.
func (s *Snapshot) Producers(id StreamID) []*SignedEntry {
	var out []*SignedEntry
	for _, e := range s.sorted {
		if e.Entry.Produces(id) {
			out = append(out, e)
		}
	}
	return out
}

// Changed is closed as soon as a newer snapshot exists. Wait on it, then
// take the store's current snapshot.
func (s *Snapshot) Changed() <-chan struct{} { return s.changed }

// Store is the catalog of one network: the local entry plus every valid,
// fresh remote entry. It is pure: no goroutines and no I/O, and every
// time-dependent call takes now. All methods are safe for concurrent use.
// Reads go through lock-free snapshots; writers serialize on a mutex.
type Store struct {
	params  Params
	network NetworkID
	localID peer.ID

	mu     sync.Mutex
	cur    atomic.Pointer[Snapshot]
	subs   map[*Subscription]struct{}
	closed bool
}

// NewStore creates the catalog of local's network, holding only local.
func NewStore(local *SignedEntry, p Params) (*Store, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if local == nil {
		return nil, fmt.Errorf("catalog: NewStore needs the local entry")
	}
	s := &Store{params: p, network: local.Entry.Network, localID: local.Entry.PeerID, subs: map[*Subscription]struct{}{}}
	s.cur.Store(&Snapshot{version: 1, local: local, peers: map[peer.ID]*SignedEntry{}, changed: make(chan struct{})})
	return s, nil
}

// Params returns the store's parameters.
func (s *Store) Params() Params { return s.params }

// Network is the ID of the store's network.
func (s *Store) Network() NetworkID { return s.network }

// Snapshot returns the current catalog. It never blocks.
func (s *Store) Snapshot() *Snapshot { return s.cur.Load() }

// Check reports whether merging e at now would change the catalog, without
// changing it: nil if it would, otherwise the reason (see [IsRejected]).
func (s *Store) Check(e *SignedEntry, now time.Time) error {
	snap := s.cur.Load()
	return s.check(snap.peers, snap.departed, e, now)
}

func (s *Store) check(peers map[peer.ID]*SignedEntry, departed map[peer.ID]Version, e *SignedEntry, now time.Time) error {
	en := &e.Entry
	switch {
	case e.raw == nil:
		return fmt.Errorf("%w: entry was not sealed or opened", ErrMalformed)
	case en.Network != s.network:
		return fmt.Errorf("%w: %s, ours is %s", ErrOtherNetwork, en.Network.Short(), s.network.Short())
	case en.PeerID == s.localID:
		return ErrLocal
	case en.Version.UpdatedAt().After(now.Add(s.params.MaxClockDrift)):
		return fmt.Errorf("%w: entry of %s updated at %v, %v ahead", ErrClockDrift, en.PeerID, en.Version.UpdatedAt(), en.Version.UpdatedAt().Sub(now))
	case s.stale(en, now):
		return fmt.Errorf("%w: entry of %s last updated %v ago", ErrStale, en.PeerID, now.Sub(en.Version.UpdatedAt()))
	}
	old, known := peers[en.PeerID]
	if known && en.Version.Compare(old.Entry.Version) <= 0 {
		return fmt.Errorf("%w: %s has %v, offered %v", ErrNotNewer, en.PeerID, old.Entry.Version, en.Version)
	}
	if last, ok := departed[en.PeerID]; ok && en.Version.Compare(last) <= 0 {
		return fmt.Errorf("%w: %s departed at %v, offered %v", ErrNotNewer, en.PeerID, last, en.Version)
	}
	if !known && len(peers) >= s.params.MaxPeers {
		return fmt.Errorf("%w: %d peers", ErrCatalogFull, len(peers))
	}
	return nil
}

// stale reports whether e went PurgeAfter or longer without an update; an
// entry is stale from the instant NextExpiry reports.
func (s *Store) stale(e *Entry, now time.Time) bool {
	return !e.Version.UpdatedAt().After(now.Add(-s.params.PurgeAfter))
}

// Merge adds or replaces a remote entry: it must belong to this network,
// not be the local peer, not be dated beyond the clock drift, not be stale,
// and be strictly newer than the known entry of that peer (and than its
// departure, if it departed); a new peer is refused while the catalog holds
// MaxPeers. On success it publishes a new snapshot and an event.
func (s *Store) Merge(e *SignedEntry, now time.Time) (Outcome, error) {
	outs, errs := s.MergeAll([]*SignedEntry{e}, now)
	return outs[0], errs[0]
}

// MergeAll merges a batch (a sync's worth of entries) under one lock and
// publishes one snapshot, with Merge's rules applied to each entry in order.
// It returns each entry's outcome or error.
func (s *Store) MergeAll(es []*SignedEntry, now time.Time) ([]Outcome, []error) {
	outs, errs := make([]Outcome, len(es)), make([]error, len(es))
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		for i := range errs {
			errs[i] = ErrClosed
		}
		return outs, errs
	}
	snap := s.cur.Load()
	peers, departed := snap.peers, snap.departed
	cloned, clonedDeparted := false, false
	var events []Event
	for i, e := range es {
		if errs[i] = s.check(peers, departed, e, now); errs[i] != nil {
			continue
		}
		if !cloned {
			peers, cloned = maps.Clone(peers), true
		}
		_, known := peers[e.Entry.PeerID]
		peers[e.Entry.PeerID] = e
		if _, ok := departed[e.Entry.PeerID]; ok {
			if !clonedDeparted {
				departed, clonedDeparted = maps.Clone(departed), true
			}
			delete(departed, e.Entry.PeerID)
		}
		ev := Event{Kind: PeerDiscovered, Peer: e.Entry.PeerID, Entry: e}
		outs[i] = Added
		if known {
			ev.Kind, outs[i] = PeerUpdated, Updated
		}
		events = append(events, ev)
	}
	if cloned {
		s.publish(snap.local, peers, departed)
		for _, ev := range events {
			s.emit(ev)
		}
	}
	return outs, errs
}

// Open decodes a sealed entry and checks it against the catalog, verifying
// the signature only when the entry would change the catalog: copies of
// known versions, stale entries and the local entry are refused (not
// rejected) before the costly signature check. An entry it returns without
// error is verified and ready to Merge (which checks again, since the
// catalog may have moved on).
func (s *Store) Open(data []byte, now time.Time) (*SignedEntry, error) {
	e, err := decodeEntry(data, s.params.MaxEntrySize)
	if err != nil {
		return nil, err
	}
	if err := s.Check(e, now); err != nil {
		return nil, err
	}
	if err := verifyEnvelope(data, EntryDomain); err != nil {
		return nil, err
	}
	return e, nil
}

// MergeBytes opens a sealed entry (see [Store.Open]) and merges it.
func (s *Store) MergeBytes(data []byte, now time.Time) (*SignedEntry, Outcome, error) {
	e, err := s.Open(data, now)
	if err != nil {
		return nil, 0, err
	}
	out, err := s.Merge(e, now)
	return e, out, err
}

// SetLocal replaces the local entry (after a change by its owner). It emits
// no event but does publish a new snapshot.
func (s *Store) SetLocal(e *SignedEntry) error {
	if e.Entry.PeerID != s.localID || e.Entry.Network != s.network {
		return fmt.Errorf("catalog: SetLocal: entry of %s/%s is not the local peer's", e.Entry.PeerID, e.Entry.Network.Short())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	snap := s.cur.Load()
	if e.Entry.Version.Compare(snap.local.Entry.Version) <= 0 {
		return fmt.Errorf("catalog: SetLocal: %w", ErrNotNewer)
	}
	s.publish(e, snap.peers, snap.departed)
	return nil
}

// CheckDeparture reports whether applying d at now would remove a peer,
// without changing anything: nil if it would, otherwise the reason (see
// [IsRejected]). Gossip validators call it before accepting a departure.
func (s *Store) CheckDeparture(d *Departure, now time.Time) error {
	return s.checkDeparture(s.cur.Load(), d, now)
}

func (s *Store) checkDeparture(snap *Snapshot, d *Departure, now time.Time) error {
	if d.Network != s.network {
		return fmt.Errorf("%w: departure for %s", ErrOtherNetwork, d.Network.Short())
	}
	if drift := d.Timestamp.Sub(now).Abs(); drift > s.params.MaxClockDrift {
		return fmt.Errorf("%w: departure of %s is %v off", ErrClockDrift, d.PeerID, drift)
	}
	// The tombstone lives until LastVersion goes stale: refuse one dated in
	// the future, which would never expire.
	if d.LastVersion.UpdatedAt().After(now.Add(s.params.MaxClockDrift)) {
		return fmt.Errorf("%w: departure of %s claims version %v from the future", ErrClockDrift, d.PeerID, d.LastVersion)
	}
	old, ok := snap.peers[d.PeerID]
	if !ok {
		return ErrUnknown // the local peer is never in peers
	}
	if d.LastVersion.Compare(old.Entry.Version) < 0 {
		return fmt.Errorf("%w: departure at %v, known %v", ErrNotNewer, d.LastVersion, old.Entry.Version)
	}
	return nil
}

// Depart applies a verified departure notice. It removes the peer only if
// the notice is for this network, dated within the clock drift of now, and
// its LastVersion is at least the known version. It reports whether the
// peer was removed.
func (s *Store) Depart(d *Departure, now time.Time) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false, ErrClosed
	}
	snap := s.cur.Load()
	if err := s.checkDeparture(snap, d, now); err != nil {
		return false, err
	}
	old := snap.peers[d.PeerID]
	peers := maps.Clone(snap.peers)
	delete(peers, d.PeerID)
	departed := maps.Clone(snap.departed)
	if departed == nil {
		departed = map[peer.ID]Version{}
	}
	departed[d.PeerID] = d.LastVersion // >= the known version, checked above
	s.publish(snap.local, peers, departed)
	s.emit(Event{Kind: PeerDeparted, Peer: d.PeerID, Entry: old})
	return true, nil
}

// Purge removes every stale remote entry and returns them.
func (s *Store) Purge(now time.Time) []*SignedEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	snap := s.cur.Load()
	var gone []*SignedEntry
	for _, e := range snap.sorted {
		if s.stale(&e.Entry, now) {
			gone = append(gone, e)
		}
	}
	departed := snap.departed
	for id, v := range snap.departed {
		if !v.UpdatedAt().After(now.Add(-s.params.PurgeAfter)) {
			if len(departed) == len(snap.departed) {
				departed = maps.Clone(snap.departed)
			}
			delete(departed, id)
		}
	}
	if len(gone) == 0 && len(departed) == len(snap.departed) {
		return nil
	}
	peers := maps.Clone(snap.peers)
	for _, e := range gone {
		delete(peers, e.Entry.PeerID)
	}
	s.publish(snap.local, peers, departed)
	for _, e := range gone {
		s.emit(Event{Kind: PeerDeparted, Peer: e.Entry.PeerID, Entry: e, Purged: true})
	}
	return gone
}

// NextExpiry returns when Purge next has work: the first remote entry (or
// departure record) goes stale. It returns false when there is none.
func (s *Store) NextExpiry() (time.Time, bool) {
	snap := s.cur.Load()
	var first time.Time
	consider := func(v Version) {
		t := v.UpdatedAt().Add(s.params.PurgeAfter)
		if first.IsZero() || t.Before(first) {
			first = t
		}
	}
	for _, e := range snap.sorted {
		consider(e.Entry.Version)
	}
	for _, v := range snap.departed {
		consider(v)
	}
	return first, !first.IsZero()
}

// Subscribe returns a subscription to future events, with a buffer of
// Params.EventBuffer (or size, when size > 0).
func (s *Store) Subscribe(size int) *Subscription {
	if size <= 0 {
		size = s.params.EventBuffer
	}
	sub := newSubscription(s, size)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		sub.markClosed()
		return sub
	}
	s.subs[sub] = struct{}{}
	return sub
}

func (s *Store) unsubscribe(sub *Subscription) {
	s.mu.Lock()
	delete(s.subs, sub)
	s.mu.Unlock()
}

// Close ends every subscription and refuses further changes. The last
// snapshot stays readable. Close is idempotent.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	subs := slices.Collect(maps.Keys(s.subs))
	s.subs = nil
	s.mu.Unlock()
	for _, sub := range subs {
		sub.markClosed()
	}
	return nil
}

// publish installs a new snapshot and wakes the waiters of the old one.
// Called with s.mu held.
func (s *Store) publish(local *SignedEntry, peers map[peer.ID]*SignedEntry, departed map[peer.ID]Version) {
	old := s.cur.Load()
	sorted := slices.SortedFunc(maps.Values(peers), func(a, b *SignedEntry) int {
		return comparePeerIDs(a.Entry.PeerID, b.Entry.PeerID)
	})
	s.cur.Store(&Snapshot{version: old.version + 1, local: local, peers: peers, sorted: sorted, changed: make(chan struct{}), departed: departed})
	close(old.changed)
}

func (s *Store) emit(ev Event) {
	for sub := range s.subs {
		sub.push(ev)
	}
}

func comparePeerIDs(a, b peer.ID) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
