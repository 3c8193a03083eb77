package discovery

import (
	"slices"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// linkRepairWindow and linkRepairMax bound the repairs of the gossip link
// with one peer: at most linkRepairMax within linkRepairWindow of the
// first. A repair makes both routers respawn their writer to each other,
// and go-libp2p-pubsub (v0.19) respawns a writer at most four times per
// peer within ten minutes of the previous respawn; past that it keeps no
// writer to the peer at all while connected. The break a repair answers
// used one respawn, the repair one more; two repairs leave the router a
// respawn of its own. The second repair is for a first one that did not
// take: each router forgets the other's topics when it sees its own
// writer die, and a busy router can see that only after the other's new
// writer has already announced its topics, which are then forgotten
// again.
const (
	linkRepairWindow = 10 * time.Minute
	linkRepairMax    = 2
)

// linkRepairs is the repairs of one peer's link in the current window.
type linkRepairs struct {
	first time.Time
	n     int
}

// linkLoop repairs gossip links that go-libp2p-pubsub has broken, every
// AnnounceInterval (±50 %).
//
// When a router's writer stream to a peer dies while the peer stays
// connected (a second connection outlives the first, a stream reset),
// pubsub (v0.19) forgets every topic the peer subscribes to and starts a
// new writer, but the peer never sends its subscriptions again: it sends
// them only at the start of its own writer stream or on a change. From
// then on the router treats the peer as outside the topic: it neither
// publishes nor forwards nor gossips to it, nor grafts it, while the peer
// still sends to us. Nodes that lose their topic peers this way stop
// hearing heartbeats of the peers they are not connected to, and purge
// them although they are alive.
//
// The service sees this as a connected peer of the network (it serves
// the network's sync protocol) that is not a peer of the catalog topic
// on two checks in a row (so a connection whose subscriptions are still
// on their way is left alone). It then resets the pubsub streams with the
// peer, both ways: each router respawns its writer, and a new writer
// starts with the router's subscriptions, so both sides learn each other's
// topics again. A link that is still (or again) broken two checks after a
// repair is repaired once more, within the bounds of linkRepairMax.
func (s *Service) linkLoop() {
	suspect := map[peer.ID]bool{}         // not a topic peer at the last check
	repaired := map[peer.ID]linkRepairs{} // repairs in the window, per peer
	t := time.NewTimer(jitter(s.params.AnnounceInterval, 0.5))
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		topicPeers := s.topic.ListPeers()
		next := map[peer.ID]bool{}
		for _, p := range s.h.Network().Peers() {
			if slices.Contains(topicPeers, p) || !s.gossipsNetwork(p) {
				continue
			}
			if !suspect[p] {
				next[p] = true
				continue
			}
			r := repaired[p]
			if r.n >= linkRepairMax {
				continue
			}
			if r.n == 0 {
				r.first = now
			}
			r.n++
			repaired[p] = r
			s.resetGossipStreams(p)
		}
		suspect = next
		for p, r := range repaired {
			if now.Sub(r.first) >= linkRepairWindow {
				delete(repaired, p)
			}
		}
		t.Reset(jitter(s.params.AnnounceInterval, 0.5))
	}
}

// gossipsNetwork reports whether p serves this network's sync protocol and
// speaks gossipsub, by what identify told us.
func (s *Service) gossipsNetwork(p peer.ID) bool {
	ps := s.h.Peerstore()
	if !s.speaksSync(p) {
		return false
	}
	ok, _ := ps.SupportsProtocols(p, pubsub.GossipSubDefaultProtocols...)
	return len(ok) > 0
}

// resetGossipStreams resets every pubsub stream with p, ours and its.
func (s *Service) resetGossipStreams(p peer.ID) {
	n := 0
	for _, c := range s.h.Network().ConnsToPeer(p) {
		for _, st := range c.GetStreams() {
			if isPubSubProtocol(st.Protocol()) {
				_ = st.Reset()
				n++
			}
		}
	}
	s.stats.linksRepaired.Add(1)
	s.log.Debug("gossip link repaired: the peer was connected but not a topic peer", "peer", p, "streams", n)
}

func isPubSubProtocol(id protocol.ID) bool {
	return slices.Contains(pubsub.GossipSubDefaultProtocols, id)
}
