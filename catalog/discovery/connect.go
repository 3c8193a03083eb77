package discovery

import (
	"context"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/internal/dialer"
)

// cascade connects to a newly learned peer while this node has few
// connections; identify then triggers a sync with it, so a new node
// converges without waiting for gossip.
func (s *Service) cascade(p peer.ID) {
	if s.params.DisableSync || len(s.h.Network().Peers()) >= s.params.CascadeBelow ||
		s.h.Network().Connectedness(p) == network.Connected {
		return
	}
	s.dial(p)
}

// dial connects to p in the background, unless CascadeBelow dials are in
// flight already: a sync full of entries with unreachable addresses cannot
// make us start thousands of dials. It reports whether a dial started.
func (s *Service) dial(p peer.ID) bool {
	select {
	case s.dialing <- struct{}{}:
	default:
		return false
	}
	if !s.spawn(func() {
		defer func() { <-s.dialing }()
		ctx, cancel := context.WithTimeout(s.ctx, s.params.SyncTimeout)
		defer cancel()
		if err := dialer.Connect(ctx, s.h, s.dialInfo(p)); err != nil {
			s.log.Debug("connect to catalog peer failed", "peer", p, "err", err)
		}
	}) {
		<-s.dialing
		return false
	}
	return true
}

// dialInfo is what to dial p at: the addresses of its catalog entry and
// those the peerstore holds (a DHT lookup, identify). The catalog's are not
// copied into the peerstore on every merge (see merged); host.Connect
// keeps the ones it is given for a while, for the dial and its retries.
func (s *Service) dialInfo(p peer.ID) peer.AddrInfo {
	pi := s.h.Peerstore().PeerInfo(p)
	if e, ok := s.store.Snapshot().Get(p); ok {
		for _, a := range e.Entry.Addrs {
			if !slices.ContainsFunc(pi.Addrs, a.Equal) {
				pi.Addrs = append(pi.Addrs, a)
			}
		}
	}
	return pi
}

// connectLoop keeps this node connected to at least CascadeBelow peers of
// its catalog. When peers leave, a node keeps only the connections it has
// left, and with one or two it hears the network through them alone: its
// own heartbeats and departures reach others late or not at all. So
// whenever a connection closes, and every AnnounceInterval, it dials
// random recently heard catalog peers it is not connected to until
// CascadeBelow are connected (dials in flight count).
func (s *Service) connectLoop() {
	t := time.NewTimer(jitter(s.params.AnnounceInterval, 0.5))
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.connectNow:
		case <-t.C:
			t.Reset(jitter(s.params.AnnounceInterval, 0.5))
		}
		if wait := s.topUp(); wait > 0 {
			// A peer left to redial us: look again when its turn ends,
			// in case it did not (the periodic check resumes after).
			t.Reset(wait)
		}
	}
}

// redialGrace is how long, after a connection closes, the end with the
// larger peer ID leaves the redial to the other. Both ends see the close
// at once and top up, and libp2p keeps a connection per direction, so
// without a turn a pair that both redial gets two connections back (two
// handshakes, and one connection too many until the connection manager
// trims). It is long enough for a dial on a loaded machine and short
// next to the heartbeat interval.
const redialGrace = 2 * time.Second

// droppedPeers remembers when connections to peers closed (hostEventLoop
// notes them, topUp reads them).
type droppedPeers struct {
	mu sync.Mutex
	at map[peer.ID]time.Time
}

// note records that p's connection closed at now, and forgets closes
// past the grace (peers that left the catalog are never asked about
// again), so the map holds only the last redialGrace of closes.
func (d *droppedPeers) note(p peer.ID, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.at == nil {
		d.at = make(map[peer.ID]time.Time)
	}
	for q, at := range d.at {
		if now.Sub(at) >= redialGrace {
			delete(d.at, q)
		}
	}
	d.at[p] = now
}

// turnOf reports how long self still leaves the redial of p to p: p's
// connection closed less than redialGrace ago and p has the smaller peer
// ID. Zero: self may dial p. It forgets closes older than the grace.
func (d *droppedPeers) turnOf(self, p peer.ID, now time.Time) time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	at, ok := d.at[p]
	if !ok {
		return 0
	}
	left := redialGrace - now.Sub(at)
	if left <= 0 {
		delete(d.at, p)
		return 0
	}
	if p < self {
		return left
	}
	return 0
}

// topUp dials catalog peers while fewer than CascadeBelow are connected.
// It dials only peers heard from within two heartbeat gaps: a peer that
// crashed stays in the catalog until PurgeAfter, and dialing it on every
// tick would hold dial slots (until SyncTimeout for an address that
// drops packets) that live peers need.
//
// A peer whose connection to us just closed is left out while it is its
// turn to redial (see redialGrace); topUp then returns how long until the
// first such turn ends, else 0.
func (s *Service) topUp() (recheck time.Duration) {
	recent := s.now().Add(-2 * time.Duration(float64(s.params.AnnounceInterval)*(1+s.params.AnnounceJitter)))
	now := time.Now()
	connected := 0
	var idle []peer.ID
	for e := range s.store.Snapshot().All() {
		switch p := e.Entry.PeerID; {
		case s.h.Network().Connectedness(p) == network.Connected:
			connected++
		case len(e.Entry.Addrs) > 0 && e.Entry.Version.UpdatedAt().After(recent):
			if turn := s.dropped.turnOf(s.h.ID(), p, now); turn > 0 {
				if recheck == 0 || turn < recheck {
					recheck = turn
				}
				continue
			}
			idle = append(idle, p)
		}
	}
	need := s.params.CascadeBelow - connected - len(s.dialing)
	rand.Shuffle(len(idle), func(i, j int) { idle[i], idle[j] = idle[j], idle[i] })
	for _, p := range idle {
		if need <= 0 || !s.dial(p) {
			return recheck
		}
		need--
	}
	return recheck
}

// settle runs once, when the join settled (settleWait), the work a join
// puts off (see Params.SettleDelay): it releases the first DHT put
// (dhtLoop waits for it), dials catalog peers up to CascadeBelow, and runs
// one delta sync with a random connected peer. That sync repairs entries a
// new node missed while it joined: one relayed by its bootstrap peer after
// the join sync's snapshot was taken but before the new node's gossip
// subscription reached it. It costs a digest of the catalog (24 bytes a
// peer) and the entries missing on either side, once per start, as one
// anti-entropy round does.
func (s *Service) settle() {
	for {
		w := settleWait(s.params.SettleDelay, time.Since(s.born), time.Duration(s.lastAdded.Load()))
		if w <= 0 {
			break
		}
		select {
		case <-s.ctx.Done():
			return
		case <-time.After(w): // a handful of rounds; Go 1.23 timers need no Stop
		}
	}
	close(s.settled)
	if s.params.DisableSync {
		return
	}
	if s.params.CascadeBelow > 0 {
		s.topUp()
	}
	if p, ok := s.syncPeer(); ok {
		// Not startSync: the peer is most likely the bootstrap peer,
		// synced with less than SyncMinInterval ago, and its entry in
		// lastSync would skip this one.
		s.syncMu.Lock()
		s.lastSync[p] = time.Now()
		s.syncMu.Unlock()
		s.spawn(func() { s.syncRetrying(p, fromSettleSync) })
	}
}

// settleWait returns how much longer settle waits (0: the join settled)
// at elapsed after start, lastAdded being the time after start at which a
// peer new to the catalog last came (0 for none). A join has settled once
// SettleDelay d has passed and no new peer came for d/2, or at 4·d
// whatever comes. Its side work costs a few connections and a sync per
// node, nothing alone; but nodes that join together (a fleet started at
// once, a test on one machine) would all start it while the catalogs
// still grow, and with 100 nodes sharing one loaded core the dials of the
// early nodes kept the late ones from joining: 99 % of pairs knew each
// other after 5-10 s instead of 1.6-2 s (BENCHMARKS.md, "Convergence,
// session 23"). Half of d, not a quarter: a node starved of CPU for d/4
// read the wave as over (2 of 10 loaded repetitions collapsed with d/4,
// none of 10 with d/2). A node joining a quiet network settles at d, as
// before.
func settleWait(d, elapsed, lastAdded time.Duration) time.Duration {
	if elapsed < d {
		return d - elapsed
	}
	limit := 4 * d
	if elapsed >= limit {
		return 0
	}
	if q := elapsed - lastAdded; q < d/2 {
		return min(d/2-q, limit-elapsed)
	}
	return 0
}

// isSettled reports whether the join settled (settle).
func (s *Service) isSettled() bool {
	select {
	case <-s.settled:
		return true
	default:
		return false
	}
}
