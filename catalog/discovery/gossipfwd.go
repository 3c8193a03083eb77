package discovery

import (
	"sync"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/catalog"
)

// unforwarded remembers, per peer, the version of its entry that this node
// took from somewhere other than gossip (a sync, a bump push, the DHT, the
// application) and has not yet seen on gossip.
//
// The validator ignores a gossip copy of a version the catalog holds, and
// gossipsub forwards only what its validator accepts. When a heartbeat
// reached this node by bump push or sync before its gossip copy came, that
// copy stopped here: peers that hear heartbeats only on gossip through
// this node (one with no push peer yet, or a peer that does not serve bump
// push) lost it, and under load such gaps outlasted PurgeAfter, so live
// peers were purged and taken back over and over (TestChurn_ThirtyNodes,
// session 29's diagnosis: 3 to 60 % of a node's gossip copies). The first
// gossip copy of such a version is now accepted to be forwarded, and
// merges nothing (PROTOCOL.md section 9.4). Later copies (a relay with a
// nonce) are ignored as before, so a relay still stops at the first hop
// that holds its entry.
//
// The set is a hint: bounded by max entries, it is emptied when full, and
// a peer's record goes when a gossip copy of any of its versions is merged
// or forwarded, or when the peer's entry changes (the record no longer
// matches and is dropped at the next look-up).
type unforwarded struct {
	mu  sync.Mutex
	m   map[peer.ID]catalog.Version
	max int
}

func newUnforwarded(max int) *unforwarded {
	return &unforwarded{m: make(map[peer.ID]catalog.Version), max: max}
}

// note records that p's entry at v came other than on gossip.
func (u *unforwarded) note(p peer.ID, v catalog.Version) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if _, ok := u.m[p]; !ok && len(u.m) >= u.max {
		clear(u.m)
	}
	u.m[p] = v
}

// drop forgets p: its entry came on gossip.
func (u *unforwarded) drop(p peer.ID) {
	u.mu.Lock()
	delete(u.m, p)
	u.mu.Unlock()
}

// has reports whether p's entry at v was noted and not yet taken.
func (u *unforwarded) has(p peer.ID, v catalog.Version) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	w, ok := u.m[p]
	return ok && w == v
}

// take forgets p (at whatever version) and reports whether its record was
// v.
func (u *unforwarded) take(p peer.ID, v catalog.Version) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	w, ok := u.m[p]
	delete(u.m, p)
	return ok && w == v
}

func (u *unforwarded) len() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.m)
}

// firstGossipCopy reports whether data, a gossip announcement that the
// validator ignored, should be accepted all the same to be forwarded:
// every entry in it is byte for byte one the catalog holds (so authentic,
// and nothing to merge), and at least one of them has a version that came
// other than on gossip and is seen on gossip for the first time. It takes
// those records.
func (s *Service) firstGossipCopy(data []byte) bool {
	kind, bodies, err := parseAnnouncement(data)
	if err != nil || kind != announceEntry {
		return false
	}
	held := make([]*catalog.SignedEntry, 0, len(bodies))
	first := false
	for _, b := range bodies {
		e, ok := s.store.HeldCopyOf(b)
		if !ok {
			return false
		}
		held = append(held, e)
		first = first || s.unfwd.has(e.Entry.PeerID, e.Entry.Version)
	}
	if !first {
		return false
	}
	for _, e := range held {
		s.unfwd.take(e.Entry.PeerID, e.Entry.Version)
	}
	return true
}
