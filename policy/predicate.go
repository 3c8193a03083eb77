package policy

import (
	"time"

	"github.com/mosaik-go/mosaik/catalog"
)

// Predicate judges a remote peer: its signed catalog entry and RTT.
// Predicates must be fast and must not block: they run on the accept path
// and on every catalog change. A nil Predicate accepts every peer.
type Predicate func(catalog.PeerInfo) bool

// All is true when every predicate is (true for none).
func All(ps ...Predicate) Predicate {
	return func(pi catalog.PeerInfo) bool {
		for _, p := range ps {
			if p != nil && !p(pi) {
				return false
			}
		}
		return true
	}
}

// Any is true when at least one predicate is (false for none).
func Any(ps ...Predicate) Predicate {
	return func(pi catalog.PeerInfo) bool {
		for _, p := range ps {
			if p == nil || p(pi) {
				return true
			}
		}
		return false
	}
}

// Not negates p.
func Not(p Predicate) Predicate {
	return func(pi catalog.PeerInfo) bool { return p != nil && !p(pi) }
}

// HasTags is true when the peer carries every tag (names or 64-hex IDs).
func HasTags(tags ...string) Predicate {
	ids := make([]catalog.Tag, len(tags))
	for i, t := range tags {
		ids[i] = catalog.IDFromString(t)
	}
	return func(pi catalog.PeerInfo) bool { return pi.Entry != nil && pi.Entry.Entry.HasTags(ids...) }
}

// RTTBelow is true when the peer's smoothed RTT is strictly below d, and
// (optimistically, as in mosaik) when no sample exists yet. Consumers probe
// a producer before judging it and producers sample at accept, so in
// practice a sample exists whenever streams evaluate this.
func RTTBelow(d time.Duration) Predicate {
	return func(pi catalog.PeerInfo) bool { return pi.RTTBelow(d) }
}
