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
// are shared: treat them as read-only. Its indexes are persistent B-trees
// shared with the snapshots before and after it, so that keeping one is
// cheap and producing the next costs O(log n).
type Snapshot struct {
	version uint64
	local   *SignedEntry
	// st holds the remote peers, the producers index and the departed
	// peers: the last version of peers that announced departure, until
	// that version goes stale, so replays of their older entries (from
	// gossip caches or slow relays) cannot resurrect them.
	st      state
	changed chan struct{}
	log     *changeLog
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
	it, ok := s.st.get(id)
	return it.e, ok
}

// Departed reports whether id left with a signed departure notice (rather
// than being purged for silence or evicted), as long as the notice is
// remembered: until its last version goes stale.
func (s *Snapshot) Departed(id peer.ID) bool {
	d, ok := s.st.departed.Get(departItem{id: id})
	return ok && !d.purged
}

// Purged reports whether id's entry was purged (it went silent) and the
// purge's tombstone is still held: until the purged version turns MaxAge
// old, or a newer entry of id is taken.
func (s *Snapshot) Purged(id peer.ID) bool {
	d, ok := s.st.departed.Get(departItem{id: id})
	return ok && d.purged
}

// DepartedAt reports whether id left with a signed departure notice whose
// last version is v, as long as the notice is remembered (see Departed).
func (s *Snapshot) DepartedAt(id peer.ID, v Version) bool {
	d, ok := s.st.departed.Get(departItem{id: id})
	return ok && !d.purged && d.v.Compare(v) == 0
}

// Len is the number of remote peers.
func (s *Snapshot) Len() int { return s.st.peers.Len() }

// All iterates over remote peers in peer ID order.
func (s *Snapshot) All() iter.Seq[*SignedEntry] {
	return func(yield func(*SignedEntry) bool) {
		s.st.peers.Ascend(func(it peerItem) bool { return yield(it.e) })
	}
}

// Peers returns the remote peers in peer ID order, in a new slice.
func (s *Snapshot) Peers() []*SignedEntry {
	out := make([]*SignedEntry, 0, s.Len())
	for e := range s.All() {
		out = append(out, e)
	}
	return out
}

// Producers returns the remote peers that produce stream id, in peer ID
// order. It costs O(log n + k) for k producers.
func (s *Snapshot) Producers(id StreamID) []*SignedEntry {
	var out []*SignedEntry
	s.st.streams.AscendGreaterOrEqual(streamItem{stream: &id}, func(it streamItem) bool {
		if *it.stream != id {
			return false
		}
		if p, ok := s.st.get(it.id); ok {
			out = append(out, p.e)
		}
		return true
	})
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
	params    Params
	network   NetworkID
	localID   peer.ID
	keeper    atomic.Value // keeperBox
	tickets   atomic.Value // ticketCheckBox
	ticketMu  sync.Mutex   // serializes SetTicketCheck (its generation)
	admission atomic.Value // admissionBox
	admitted  admitCache
	shared    interner // tag and stream sets of the entries Open decodes
	limited   atomic.Uint64
	verified  atomic.Uint64 // signature checks by Open

	mu     sync.Mutex
	cur    atomic.Pointer[Snapshot]
	w      state // the writer's copy of the current state: never published
	log    *changeLog
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
	s := &Store{params: p, network: local.Entry.Network, localID: local.Entry.PeerID, subs: map[*Subscription]struct{}{}, w: newState(), log: newChangeLog(changeLogSize)}
	s.keeper.Store(keeperBox{})
	s.tickets.Store(ticketCheckBox{})
	s.admission.Store(admissionBox{})
	s.cur.Store(&Snapshot{version: 1, local: local, st: s.w.clone(), changed: make(chan struct{}), log: s.log})
	return s, nil
}

// Params returns the store's parameters.
func (s *Store) Params() Params { return s.params }

// Network is the ID of the store's network.
func (s *Store) Network() NetworkID { return s.network }

// Snapshot returns the current catalog. It never blocks.
func (s *Store) Snapshot() *Snapshot { return s.cur.Load() }

// RateLimited is the number of entry updates refused so far because they
// went beyond the peer's update rate limit (Params.MinUpdateInterval and
// UpdateBurst), by Merge and by Open alike (gossip and sync bring entries
// through Open, which refuses them before their signature is checked).
// Check, which only asks, counts nothing.
func (s *Store) RateLimited() uint64 { return s.limited.Load() }

// SignatureChecks is the number of entry signatures Open and OpenOwned
// verified so far: the entries that passed every cheaper check (size,
// structure, network, freshness, version, rate limit, caps).
func (s *Store) SignatureChecks() uint64 { return s.verified.Load() }

// Check reports whether merging e at now would change the catalog, without
// changing it: nil if it would, otherwise the reason (see [IsRejected]).
// In a closed catalog (see [Store.SetAdmission]) it also judges e's
// admission, so e must be verified (from [Seal] or [OpenEntry]).
func (s *Store) Check(e *SignedEntry, now time.Time) error {
	if err := s.cheapCheck(e, now, false); err != nil {
		return err
	}
	_, err := s.admit(e, now)
	return err
}

// cheapCheck is Check without the admission check: what can be judged
// before the signature is verified. count tells it to count a
// rate-limited update (Open does: the input was refused; Check only asks).
func (s *Store) cheapCheck(e *SignedEntry, now time.Time, count bool) error {
	st := s.cur.Load().st
	_, _, _, err := s.check(&st, e, now, count)
	return err
}

// check applies Merge's rules to e against st. It returns the known item
// of e's peer, if any, and the rate limit's next state for the peer. count
// tells it to count a rate-limited update.
func (s *Store) check(st *state, e *SignedEntry, now time.Time, count bool) (peerItem, bool, int64, error) {
	en := &e.Entry
	switch {
	case e.raw == nil:
		return peerItem{}, false, 0, fmt.Errorf("%w: entry was not sealed or opened", ErrMalformed)
	case en.Network != s.network:
		return peerItem{}, false, 0, fmt.Errorf("%w: %s, ours is %s", ErrOtherNetwork, en.Network.Short(), s.network.Short())
	case en.PeerID == s.localID:
		return peerItem{}, false, 0, ErrLocal
	case en.Version.UpdatedAt().After(now.Add(s.params.MaxClockDrift)):
		return peerItem{}, false, 0, fmt.Errorf("%w: entry of %s updated at %v, %v ahead", ErrClockDrift, en.PeerID, en.Version.UpdatedAt(), en.Version.UpdatedAt().Sub(now))
	case s.stale(en, now):
		return peerItem{}, false, 0, refuse(ErrStale, "entry of %s last updated %v ago", en.PeerID, now.Sub(en.Version.UpdatedAt()))
	}
	old, known := st.get(en.PeerID)
	if known && en.Version.Compare(old.e.Entry.Version) <= 0 {
		return old, known, 0, refuse(ErrNotNewer, "%s has %v, offered %v", en.PeerID, old.e.Entry.Version, en.Version)
	}
	prevTat, limited := old.tat, known
	var prev Version // the version whose bucket this one takes up
	if known {
		prev = old.e.Entry.Version
	}
	if last, ok := st.departed.Get(departItem{id: en.PeerID}); ok {
		if en.Version.Compare(last.v) <= 0 {
			how := "departed"
			if last.purged {
				how = "was purged"
			}
			return old, known, 0, refuse(ErrNotNewer, "%s %s at %v, offered %v", en.PeerID, how, last.v, en.Version)
		}
		prevTat, limited, prev = last.tat, true, last.v // a return does not refill the bucket...
	}
	if limited && s.freshRun(en.Version, prev) {
		limited = false // ...but a new run long enough after the last one began starts with a full one
	}
	tat, ok := s.limit().next(prevTat, limited, en.Version.UpdateMS)
	if !ok {
		if count {
			s.limited.Add(1)
		}
		return old, known, 0, refuse(ErrRateLimited, "%s updated at %d ms, its next update is due at %d ms", en.PeerID, en.Version.UpdateMS, tat)
	}
	var oldEntry *SignedEntry
	if known {
		oldEntry = old.e
	}
	if err := s.checkCaps(st, e, oldEntry); err != nil {
		return old, known, 0, err
	}
	if !known && st.peers.Len() >= s.params.MaxPeers {
		kept := s.keeper.Load().(keeperBox).Keep(en.PeerID)
		if _, err := s.evictable(st, now, kept); err != nil {
			return old, known, 0, fmt.Errorf("new peer %s: %w", en.PeerID, err)
		}
	}
	return old, known, tat, nil
}

// freshRun reports whether v begins a new run at least UpdateBurst ×
// MinUpdateInterval (the time a drained bucket takes to refill) after the
// run of prev began: such a run starts with a full bucket, as the local
// node's own Local assumes. A restarted node (departed or not) may have
// spent its burst just before it stopped, and would otherwise find most
// of its startup versions refused by every peer; a peer that starts run
// after run to refill its bucket gets at most one refill per that time.
func (s *Store) freshRun(v, prev Version) bool {
	g := s.limit()
	return v.StartMS > prev.StartMS && v.StartMS-prev.StartMS >= g.burst*g.interval
}

func (s *Store) limit() gcra {
	return gcra{interval: s.params.MinUpdateInterval.Milliseconds(), burst: int64(s.params.UpdateBurst)}
}

// stale reports whether e is MaxAge (PurgeAfter + LateGrace) old or older
// by its update time. A held entry is purged sooner: PurgeAfter after it
// arrived (see Store.expiryKey).
func (s *Store) stale(e *Entry, now time.Time) bool {
	return !e.Version.UpdatedAt().After(now.Add(-s.params.MaxAge()))
}

// Merge adds or replaces a remote entry: it must belong to this network,
// not be the local peer, not be dated beyond the clock drift, not be stale,
// be strictly newer than the known entry of that peer (and than its
// departure, if it departed), follow the known entry by at least
// MinUpdateInterval, keep within the per-address caps and, in a closed
// catalog, pass its admission check (see [Store.SetAdmission]). A new peer that
// finds the catalog holding MaxPeers evicts another (see [Keeper]), or is
// refused when every candidate must be kept. On success it publishes a new
// snapshot and an event.
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
	var events []Event
	for i, e := range es {
		old, known, tat, err := s.check(&s.w, e, now, true)
		if errs[i] = err; err != nil {
			continue
		}
		// The verdict is cached per (peer, version): Open judged it already.
		ends, err := s.admit(e, now)
		if errs[i] = err; err != nil {
			continue
		}
		id := e.Entry.PeerID
		if !known && s.w.peers.Len() >= s.params.MaxPeers {
			victim, _ := s.evictable(&s.w, now, true) // check found one
			gone, _ := s.w.remove(victim)
			events = append(events, Event{Kind: PeerDeparted, Peer: victim, Entry: gone, Old: gone, Evicted: true})
		}
		s.w.put(e, now, tat, s.expiryKey(e, now, ends), s.vouched(e, old, known, now))
		ev := Event{Kind: PeerDiscovered, Peer: id, Entry: e}
		outs[i] = Added
		if known {
			ev.Kind, ev.Old, outs[i] = PeerUpdated, old.e, Updated
		}
		events = append(events, ev)
	}
	if len(events) > 0 {
		s.publish(s.cur.Load().local, events)
	}
	return outs, errs
}

// Open decodes a sealed entry and checks it against the catalog, verifying
// the signature only when the entry would change the catalog: copies of
// known versions, stale entries and the local entry are refused (not
// rejected) before the costly signature check. In a closed catalog the
// admission check follows the signature, so that the tickets of a forged
// entry are never judged. An entry it returns without error is verified
// and ready to Merge (which checks again, since the catalog may have moved
// on).
func (s *Store) Open(data []byte, now time.Time) (*SignedEntry, error) {
	return s.open(data, now, false)
}

// OpenOwned is [Store.Open] for a buffer the caller hands over: the entry
// keeps data as its sealed bytes instead of a copy, so the caller must
// never modify data afterwards (reading it stays fine). It suits buffers
// that nothing writes again, such as the entries of a decoded sync page or
// gossipsub's message data, and saves a copy of every entry received.
func (s *Store) OpenOwned(data []byte, now time.Time) (*SignedEntry, error) {
	return s.open(data, now, true)
}

func (s *Store) open(data []byte, now time.Time, owned bool) (*SignedEntry, error) {
	if e, applied, err := s.openSame(data, now, owned); applied {
		return e, err
	}
	return s.openFull(data, now, owned)
}

// openFull is open without openSame: every entry decoded in full.
func (s *Store) openFull(data []byte, now time.Time, owned bool) (*SignedEntry, error) {
	e, env, err := decodeEntry(data, s.params.MaxEntrySize)
	if err != nil {
		return nil, err
	}
	if err := s.cheapCheck(e, now, true); err != nil {
		return nil, err
	}
	s.verified.Add(1)
	if err := env.verify(EntryDomain); err != nil {
		return nil, err
	}
	if _, err := s.admit(e, now); err != nil {
		return nil, err
	}
	e.compact(owned)
	s.shared.intern(&e.Entry)
	// A newer version of a known peer takes the peer ID string the
	// catalog holds already: the indexes keep the first version's (an
	// update that keeps the streams leaves the streams and first-seen
	// indexes untouched), so each peer holds one copy, not two.
	if it, ok := s.cur.Load().st.get(e.Entry.PeerID); ok {
		e.Entry.PeerID = it.id
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
	if e.Entry.Version.Compare(s.cur.Load().local.Entry.Version) <= 0 {
		return fmt.Errorf("catalog: SetLocal: %w", ErrNotNewer)
	}
	s.publish(e, nil)
	return nil
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

// publish installs a new snapshot of the writer's state, records which
// peers changed, wakes the waiters of the old snapshot and emits events.
// Called with s.mu held.
func (s *Store) publish(local *SignedEntry, events []Event) {
	old := s.cur.Load()
	v := old.version + 1
	if local != old.local {
		s.log.add(v, s.localID)
	}
	for _, ev := range events {
		s.log.add(v, ev.Peer)
	}
	s.cur.Store(&Snapshot{version: v, local: local, st: s.w.publish(old.st), changed: make(chan struct{}), log: s.log})
	close(old.changed)
	for _, ev := range events {
		for sub := range s.subs {
			sub.push(ev)
		}
	}
}
