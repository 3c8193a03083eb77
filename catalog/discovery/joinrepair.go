package discovery

import (
	"sync"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
)

// maxJoinGaps bounds the peers a node remembers as served before their
// subscription reached it (see joinGaps). Only syncs served while the
// initiator was not a topic peer are recorded, and each record lives at
// most SyncTimeout: at the bound, a further newcomer is not recorded and
// its own repair sync at SettleDelay covers it instead.
const maxJoinGaps = 256

// joinGaps tracks the catalog topic's peers, as pubsub reports them, and
// the peers whose catalog sync this node served before their subscription
// to the topic had reached it.
//
// Why: a newcomer's join sync gives it our catalog as it was when we took
// the snapshot. From then on, the entries we merge reach it only on
// gossip, as our relays (flood-published to our topic peers), and only
// once its subscription has reached us. Those merged in between, in a
// network starting together the entries of the other newcomers' hellos,
// reach it neither way: before this, they waited for its repair sync at
// SettleDelay (1 s), and in a benchmark of 50 nodes joining that wait was
// the last percent of pairs. The responder is the one node that knows
// when the gap closes (its pubsub reports the newcomer's subscription, and
// every later relay goes to it), so it runs the repair, one delta sync,
// right then, and only when the gap was open and the catalog changed
// while it was: a newcomer whose subscription came first, or who joined a
// quiet network, costs nothing more.
//
// joinGaps is safe for concurrent use; its mutex is never held with
// another.
type joinGaps struct {
	mu    sync.Mutex
	peers map[peer.ID]struct{}      // subscribed to the topic (PeerJoin, not yet PeerLeave)
	gaps  map[peer.ID]gap           // served while not subscribed
	await map[peer.ID]chan struct{} // connect syncs waiting for the subscription
}

// gap is a sync served before the initiator's subscription reached us:
// when, and the Changed channel of the snapshot served (closed once the
// catalog changed after it; nothing else of the snapshot is kept).
type gap struct {
	at      time.Time
	changed <-chan struct{}
}

// stale reports whether the catalog changed after the snapshot served.
func (g gap) stale() bool {
	select {
	case <-g.changed:
		return true
	default:
		return false
	}
}

func newJoinGaps() *joinGaps {
	return &joinGaps{peers: map[peer.ID]struct{}{}, gaps: map[peer.ID]gap{}, await: map[peer.ID]chan struct{}{}}
}

// subscribed reports whether p's subscription has reached us. Events
// reach us after pubsub registered the subscription, so a peer that is
// subscribed when we take a snapshot gets every relay of what we merge
// after it.
func (g *joinGaps) subscribed(p peer.ID) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	_, ok := g.peers[p]
	return ok
}

// served records that we served p, a joining node that was not subscribed
// then (see subscribed), a sync from a snapshot taken at "at" whose
// Changed channel is changed, so that its subscription triggers the
// repair (joined). It reports true when the subscription has come
// meanwhile and the catalog changed since the snapshot: the caller
// repairs at once.
func (g *joinGaps) served(p peer.ID, at time.Time, changed <-chan struct{}, ttl time.Duration) (repairNow bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	gp := gap{at: at, changed: changed}
	if _, ok := g.peers[p]; ok {
		return gp.stale()
	}
	if len(g.gaps) >= maxJoinGaps {
		for q, old := range g.gaps {
			if at.Sub(old.at) > ttl {
				delete(g.gaps, q)
			}
		}
		if len(g.gaps) >= maxJoinGaps {
			return false
		}
	}
	g.gaps[p] = gp
	return false
}

// joined records p's subscription and reports whether a sync served to it
// within ttl left a gap to repair: the catalog changed after the snapshot
// served (an unchanged catalog has nothing the newcomer lacks).
func (g *joinGaps) joined(p peer.ID, now time.Time, ttl time.Duration) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.peers[p] = struct{}{}
	if c, ok := g.await[p]; ok {
		close(c)
		delete(g.await, p)
	}
	gp, ok := g.gaps[p]
	delete(g.gaps, p)
	return ok && now.Sub(gp.at) <= ttl && gp.stale()
}

// wait returns a channel closed when p's subscription reaches us, or nil
// when it has already, or when maxJoinGaps connect syncs wait already.
// The caller calls unwait when done waiting.
func (g *joinGaps) wait(p peer.ID) <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, ok := g.peers[p]; ok {
		return nil
	}
	if c, ok := g.await[p]; ok {
		return c
	}
	if len(g.await) >= maxJoinGaps {
		return nil
	}
	c := make(chan struct{})
	g.await[p] = c
	return c
}

// unwait ends a wait for p's subscription that timed out.
func (g *joinGaps) unwait(p peer.ID) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.await, p)
}

// left forgets p's subscription.
func (g *joinGaps) left(p peer.ID) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.peers, p)
}

// peerEventLoop follows the catalog topic's peers: a join schedules the
// join announcement (announceLoop) and, after a sync served to the peer
// before its subscription reached us, the repair of that gap.
func (s *Service) peerEventLoop() {
	for {
		ev, err := s.evh.NextPeerEvent(s.ctx)
		if err != nil {
			return
		}
		switch ev.Type {
		case pubsub.PeerJoin:
			s.log.Debug("topic peer joined", "peer", ev.Peer)
			if s.gaps.joined(ev.Peer, time.Now(), s.params.SyncTimeout) && !s.params.DisableSync {
				s.repairJoin(ev.Peer)
			}
			signal(s.peerJoined)
		case pubsub.PeerLeave:
			s.gaps.left(ev.Peer)
		}
	}
}

// repairJoin runs a delta sync with p, which we served a sync before its
// subscription reached us: it moves a digest of our catalog (24 bytes a
// peer) and the entries p lacks, those we merged meanwhile. It bypasses
// SyncMinInterval, like the repair at SettleDelay: we may have started a
// sync with p on connect moments ago, from a snapshot just as early.
func (s *Service) repairJoin(p peer.ID) {
	s.stats.joinRepairs.Add(1)
	s.syncMu.Lock()
	s.lastSync[p] = time.Now()
	s.syncMu.Unlock()
	s.spawn(func() { s.syncRetrying(p, fromJoinRepair) })
}

// connectSyncWait bounds how long the sync on connect with a peer we do not
// know waits for the peer's subscription to the catalog topic (see
// connectSync). It arrives about one round trip after identify; a peer
// without gossip never sends one, and is synced with after this wait.
const connectSyncWait = time.Second

// connectSync is the sync on connect with p, a peer our catalog lacks, run
// once p's subscription to the catalog topic reached us (or after
// connectSyncWait), and only if p is still unknown then.
//
// Why wait: when p is a newcomer, it syncs with us at once (its catalog is
// empty), and that sync brings us its entry. Ours, started at the same
// moment, only sent p the catalog its own sync sent it, and its snapshot
// was as early: it could not repair the gap joinGaps describes. Waiting
// for the subscription lets us skip it when p's sync made p known, and
// otherwise (a known node of another partition, which does not sync with
// us because it knows us) sync from a snapshot whose later changes reach
// p as relays. In a network of 50 nodes starting together, the bootstrap
// peer started a sync with most newcomers besides serving theirs.
func (s *Service) connectSync(p peer.ID) {
	wait := s.gaps.wait(p)
	if wait == nil || s.store.Snapshot().Len() == 0 {
		// Subscribed already, too many waiting, or we are joining: our
		// join sync is what brings us the catalog, at once.
		if wait != nil {
			s.gaps.unwait(p)
		}
		s.startSync(p)
		return
	}
	if !s.spawn(func() {
		t := time.NewTimer(connectSyncWait)
		defer t.Stop()
		select {
		case <-s.ctx.Done():
			s.gaps.unwait(p)
			return
		case <-wait:
		case <-t.C:
			s.gaps.unwait(p)
		}
		if s.shouldSync(p) {
			s.startSync(p)
		}
	}) {
		s.gaps.unwait(p)
	}
}
