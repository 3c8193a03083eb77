package catalog

import (
	"cmp"
	"math"
	"net/netip"
	"slices"
	"time"

	"github.com/google/btree"
	"github.com/libp2p/go-libp2p/core/peer"
)

// The catalog's state is a handful of persistent B-trees. A writer clones
// them (O(1): google/btree copies nodes lazily, on write) and changes the
// clones, so an update costs O(log n) time and memory whatever the catalog
// size, and every published snapshot stays immutable and shared.

// btreeDegree is small: an update copies one node per level of each tree
// it touches, and small nodes keep that copy cheap.
const btreeDegree = 8

// peerItem is a remote peer's entry, ordered by peer ID.
type peerItem struct {
	id   peer.ID
	e    *SignedEntry
	seen int64 // local time (ns) the peer entered the catalog: eviction order
	tat  int64 // the rate limit's theoretical arrival time (ms; see gcra)
	exp  int64 // key in the expiry tree (ms; see Store.expiryKey)
	// vouch: whether and until when the entry counts as a ticket holder
	// at eviction (see Store.vouched).
	vouch vouch
}

func lessPeer(a, b peerItem) bool { return a.id < b.id }

// streamItem indexes the producers of each stream: ordered by stream,
// then peer ID, so the producers of one stream are one range. It holds no
// entry, so that a heartbeat (same streams) leaves the index untouched.
// The stream is a pointer into the Streams of an entry of the peer (an
// immutable, usually shared set, see interner): 24 bytes an item instead
// of 48, at two or so items per peer.
type streamItem struct {
	stream *StreamID
	id     peer.ID
}

func lessStream(a, b streamItem) bool {
	if c := a.stream.Compare(*b.stream); c != 0 {
		return c < 0
	}
	return a.id < b.id
}

// timeItem orders peers by a time (ns or ms), then peer ID.
type timeItem struct {
	t  int64
	id peer.ID
}

func lessTime(a, b timeItem) bool {
	if c := cmp.Compare(a.t, b.t); c != 0 {
		return c < 0
	}
	return a.id < b.id
}

// departItem remembers the last version of a peer that departed, or of
// one that was purged (a purge tombstone, see Store.Purge), and the rate
// limit's state for the peer when it left: a peer that comes back takes up
// its bucket where it left it (a departure and a return must not refill
// it, or depart-and-return would lift the limit).
type departItem struct {
	id     peer.ID
	v      Version
	tat    int64 // the rate limit's theoretical arrival time (ms; see gcra)
	exp    int64 // key in the depExp tree (ms)
	purged bool
}

func lessDepart(a, b departItem) bool { return a.id < b.id }

// capKey names one public IP address (subnet false) or one subnet (the
// address masked to /24 or /48) that entries announce.
type capKey struct {
	subnet bool
	addr   netip.Addr
}

func compareCapKeys(a, b capKey) int {
	if a.subnet != b.subnet {
		if b.subnet {
			return -1
		}
		return 1
	}
	return a.addr.Compare(b.addr)
}

// countItem counts the entries that announce one capKey.
type countItem struct {
	key capKey
	n   int
}

func lessCount(a, b countItem) bool { return compareCapKeys(a.key, b.key) < 0 }

// state is the content of one snapshot: the indexes are immutable once
// published. The store's writer keeps a private state that it changes in
// place and publishes copies of (see publish).
type state struct {
	peers    *btree.BTreeG[peerItem]
	streams  *btree.BTreeG[streamItem]
	expiry   *btree.BTreeG[timeItem] // entries by arrival or UpdateMS + LateGrace (see Store.expiryKey): purge order
	seen     *btree.BTreeG[timeItem] // entries by first-seen time: eviction order
	departed *btree.BTreeG[departItem]
	depExp   *btree.BTreeG[timeItem] // tombstones by LastVersion.UpdateMS + LateGrace
	counts   *btree.BTreeG[countItem]
	// dirty marks the trees the writer changed since its last publish.
	dirty uint8
}

const (
	dirtyPeers uint8 = 1 << iota
	dirtyStreams
	dirtyExpiry
	dirtySeen
	dirtyDeparted
	dirtyCounts
)

func newState() state {
	return state{
		peers:    btree.NewG(btreeDegree, lessPeer),
		streams:  btree.NewG(btreeDegree, lessStream),
		expiry:   btree.NewG(btreeDegree, lessTime),
		seen:     btree.NewG(btreeDegree, lessTime),
		departed: btree.NewG(btreeDegree, lessDepart),
		depExp:   btree.NewG(btreeDegree, lessTime),
		counts:   btree.NewG(btreeDegree, lessCount),
	}
}

func (st *state) clone() state {
	return state{
		peers:    st.peers.Clone(),
		streams:  st.streams.Clone(),
		expiry:   st.expiry.Clone(),
		seen:     st.seen.Clone(),
		departed: st.departed.Clone(),
		depExp:   st.depExp.Clone(),
		counts:   st.counts.Clone(),
	}
}

// publish returns an immutable copy of the writer's state st, given the
// copy published last: trees st did not change since are shared as they
// are, changed ones are cloned (O(1); nodes are copied on later writes).
func (st *state) publish(prev state) state {
	out := prev
	pick := func(bit uint8, f func()) {
		if st.dirty&bit != 0 {
			f()
		}
	}
	pick(dirtyPeers, func() { out.peers = st.peers.Clone() })
	pick(dirtyStreams, func() { out.streams = st.streams.Clone() })
	pick(dirtyExpiry, func() { out.expiry = st.expiry.Clone() })
	pick(dirtySeen, func() { out.seen = st.seen.Clone() })
	pick(dirtyDeparted, func() { out.departed, out.depExp = st.departed.Clone(), st.depExp.Clone() })
	pick(dirtyCounts, func() { out.counts = st.counts.Clone() })
	st.dirty = 0
	return out
}

func (st state) get(id peer.ID) (peerItem, bool) { return st.peers.Get(peerItem{id: id}) }

// put adds or replaces e with purge key exp, keeping the first-seen time of a known peer
// (seen is the local time of a peer new to the catalog). A heartbeat, with
// the same streams and addresses as before, touches only the peers and
// expiry trees.
func (st *state) put(e *SignedEntry, seen time.Time, tat, exp int64, v vouch) {
	id := e.Entry.PeerID
	it := peerItem{id: id, e: e, seen: seen.UnixNano(), tat: tat, exp: exp, vouch: v}
	var oldStreams []StreamID
	var oldKeys []capKey
	if old, ok := st.peers.Get(it); ok {
		it.seen = old.seen
		oldStreams, oldKeys = old.e.Entry.Streams, capKeys(&old.e.Entry)
		st.expiry.Delete(timeItem{t: old.exp, id: id})
	} else {
		st.seen.ReplaceOrInsert(timeItem{t: it.seen, id: id})
		st.dirty |= dirtySeen
	}
	st.peers.ReplaceOrInsert(it)
	st.expiry.ReplaceOrInsert(timeItem{t: exp, id: id})
	st.dirty |= dirtyPeers | dirtyExpiry
	st.reindexStreams(id, oldStreams, e.Entry.Streams)
	st.recount(oldKeys, capKeys(&e.Entry))
	st.forgetDeparture(id)
}

// remove drops the entry of id; it reports the entry it removed.
// (Callers that leave a tombstone read the item first, for its tat.)
func (st *state) remove(id peer.ID) (*SignedEntry, bool) {
	old, ok := st.peers.Delete(peerItem{id: id})
	if !ok {
		return nil, false
	}
	st.expiry.Delete(timeItem{t: old.exp, id: id})
	st.seen.Delete(timeItem{t: old.seen, id: id})
	st.dirty |= dirtyPeers | dirtyExpiry | dirtySeen
	st.reindexStreams(id, old.e.Entry.Streams, nil)
	st.recount(capKeys(&old.e.Entry), nil)
	return old.e, true
}

// reindexStreams moves id's producer records from the streams it had to
// the streams it has. Both lists are sorted (entries are normalized).
func (st *state) reindexStreams(id peer.ID, had, has []StreamID) {
	if slices.Equal(had, has) {
		return
	}
	for i, s := range had {
		if !slices.Contains(has, s) {
			st.streams.Delete(streamItem{stream: &had[i], id: id})
		}
	}
	for i, s := range has {
		if !slices.Contains(had, s) {
			st.streams.ReplaceOrInsert(streamItem{stream: &has[i], id: id})
		}
	}
	st.dirty |= dirtyStreams
}

// recount moves one count from each key of had to each key of has.
func (st *state) recount(had, has []capKey) {
	if slices.Equal(had, has) {
		return
	}
	for _, k := range had {
		if slices.Contains(has, k) {
			continue
		}
		c, ok := st.counts.Get(countItem{key: k})
		switch {
		case !ok:
		case c.n <= 1:
			st.counts.Delete(c)
		default:
			st.counts.ReplaceOrInsert(countItem{key: k, n: c.n - 1})
		}
	}
	for _, k := range has {
		if slices.Contains(had, k) {
			continue
		}
		c, _ := st.counts.Get(countItem{key: k})
		st.counts.ReplaceOrInsert(countItem{key: k, n: c.n + 1})
	}
	st.dirty |= dirtyCounts
}

// depart records a tombstone of id's version v and rate-limit state tat,
// a departure or a purge (purged), kept until v.UpdateMS + graceMS + PurgeAfter: until v turns
// MaxAge, when the stale rule refuses every copy of v and older ones. At
// most most are kept, the ones that expire first going first: identities
// are free, and a flood of entries each followed by its departure left a
// tombstone per identity for MaxAge (review probe: 200 tombstones with
// MaxPeers 2). A dropped tombstone lets a late copy of that peer's last
// version in again, until the version goes stale.
func (st *state) depart(id peer.ID, v Version, tat, graceMS int64, purged bool, most int) {
	st.forgetDeparture(id)
	d := departItem{id: id, v: v, tat: tat, exp: satAdd(v.UpdateMS, graceMS), purged: purged}
	st.departed.ReplaceOrInsert(d)
	st.depExp.ReplaceOrInsert(timeItem{t: d.exp, id: id})
	st.dirty |= dirtyDeparted
	for most > 0 && st.departed.Len() > most {
		first, _ := st.depExp.Min()
		st.forgetDeparture(first.id)
	}
}

func (st *state) forgetDeparture(id peer.ID) {
	if d, ok := st.departed.Delete(departItem{id: id}); ok {
		st.depExp.Delete(timeItem{t: d.exp, id: id})
		st.dirty |= dirtyDeparted
	}
}

// satAdd is a + b for b >= 0, saturating at the largest int64.
func satAdd(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

func (st *state) count(key capKey) int {
	c, _ := st.counts.Get(countItem{key: key})
	return c.n
}
