package catalog

import (
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// RTTTable keeps a smoothed round-trip time per peer, by RFC 6298
// (alpha = 1/8, beta = 1/4): the first sample R sets SRTT = R and
// RTTVAR = R/2; later ones set RTTVAR = 3/4 RTTVAR + 1/4 |SRTT - R| and
// SRTT = 7/8 SRTT + 1/8 R. It is safe for concurrent use.
//
// mosaik keeps its own table because the peerstore's latency EWMA also
// absorbs kad-dht request times.
type RTTTable struct {
	mu    sync.RWMutex
	peers map[peer.ID]rttState
}

type rttState struct {
	srtt, rttvar time.Duration
	samples      uint64
	last         time.Time
}

// RTTStats is the smoothed state of one peer.
type RTTStats struct {
	SRTT    time.Duration // smoothed RTT
	RTTVar  time.Duration // RTT variation
	Samples uint64
	Last    time.Time // when the last sample was recorded
}

// NewRTTTable returns an empty table.
func NewRTTTable() *RTTTable { return &RTTTable{peers: map[peer.ID]rttState{}} }

// Record adds a sample taken at now. Non-positive samples are ignored.
func (t *RTTTable) Record(p peer.ID, r time.Duration, now time.Time) {
	if r <= 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	st, ok := t.peers[p]
	if !ok {
		st = rttState{srtt: r, rttvar: r / 2}
	} else {
		st.rttvar = (3*st.rttvar + (st.srtt - r).Abs()) / 4
		st.srtt = (7*st.srtt + r) / 8
	}
	st.samples++
	st.last = now
	t.peers[p] = st
}

// Get returns the smoothed RTT of p, and false when there is no sample.
func (t *RTTTable) Get(p peer.ID) (time.Duration, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	st, ok := t.peers[p]
	return st.srtt, ok
}

// Stats returns the full smoothed state of p.
func (t *RTTTable) Stats(p peer.ID) (RTTStats, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	st, ok := t.peers[p]
	return RTTStats{SRTT: st.srtt, RTTVar: st.rttvar, Samples: st.samples, Last: st.last}, ok
}

// Remove forgets p.
func (t *RTTTable) Remove(p peer.ID) {
	t.mu.Lock()
	delete(t.peers, p)
	t.mu.Unlock()
}

// Info combines an entry with its RTT.
func (t *RTTTable) Info(e *SignedEntry) PeerInfo {
	rtt, ok := t.Get(e.Entry.PeerID)
	return PeerInfo{Entry: e, RTT: rtt, RTTKnown: ok}
}

// PeerInfo is what eligibility predicates judge: a peer's signed entry and
// its smoothed RTT, if any sample exists.
type PeerInfo struct {
	Entry    *SignedEntry
	RTT      time.Duration
	RTTKnown bool
}

// RTTBelow reports whether the RTT is strictly below d. It is optimistic:
// true when no sample exists yet, as in mosaik.
func (p PeerInfo) RTTBelow(d time.Duration) bool { return !p.RTTKnown || p.RTT < d }
