package discovery

import (
	"math/rand/v2"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// antiEntropyLoop syncs with one random connected peer of the network
// every Params.AntiEntropyInterval (±50 %).
//
// Gossip alone can leave a live peer out of some catalogs for longer than
// PurgeAfter: a node hears a peer that is not one of its own topic peers
// only through the gossipsub mesh and IHAVE gossip, and under churn a mesh
// has holes and lost heartbeats are not resent. Sync-on-connect does not
// repair that, since it syncs only with peers not in the catalog. A
// periodic sync with one peer does, whatever the cause: each sync merges
// both catalogs, and an entry new to either side is relayed on gossip
// from there. Its cost is a digest of the catalog (24 bytes a peer) plus
// the entries that differ, per node per interval;
// per-peer pacing (SyncMinInterval) and the responder's limits apply as
// to every automatic sync.
func (s *Service) antiEntropyLoop() {
	t := time.NewTimer(jitter(s.params.AntiEntropyInterval, 0.5))
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		if p, ok := s.syncPeer(); ok {
			s.startSync(p)
		}
		t.Reset(jitter(s.params.AntiEntropyInterval, 0.5))
	}
}

// syncPeer picks a random connected peer that serves the network's sync
// protocol; in a closed network, once the catalog holds anyone, one it
// holds: a sync with an outsider is refused both ways (section 7.1), so
// anti-entropy and the settle sync spent on one would repair nothing.
func (s *Service) syncPeer() (peer.ID, bool) {
	peers := s.h.Network().Peers()
	rand.Shuffle(len(peers), func(i, j int) { peers[i], peers[j] = peers[j], peers[i] })
	snap := s.store.Snapshot()
	closed := s.store.Admission() != nil && snap.Len() > 0
	for _, p := range peers {
		if !s.speaksSync(p) {
			continue
		}
		if _, member := snap.Get(p); closed && !member {
			continue
		}
		return p, true
	}
	return "", false
}
