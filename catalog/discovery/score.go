package discovery

import (
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/catalog"
)

// Peer scoring of the catalog topic. Only invalid messages count (P4):
// the validator rejects forged, tampered, oversize, malformed,
// other-network, far-dated and, in a closed network, unadmitted entries,
// and an honest router never forwards one (it validates before relaying),
// so a negative score marks the peer that originated them. Every other
// score component stays off: mesh-delivery and time-in-mesh terms need
// tuning per traffic pattern and would punish quiet honest peers, and IP
// colocation would punish every peer behind one NAT (the catalog's
// per-address caps bound those instead).
const (
	// InvalidMessageWeight is P4's weight: the score is the weight times
	// the square of the decayed count of invalid messages: one invalid
	// message costs 10, and (before decay) the score falls below
	// GossipScoreThreshold after four, PublishScoreThreshold after eleven
	// and GraylistScoreThreshold after sixteen.
	InvalidMessageWeight = -10
	// InvalidMessageDecay is how long the invalid-message count takes to
	// decay to nothing: an hour.
	InvalidMessageDecay = time.Hour
	// GossipScoreThreshold: below it, no gossip (IHAVE/IWANT) is
	// exchanged with the peer.
	GossipScoreThreshold = -100
	// PublishScoreThreshold: below it, our own publications skip the peer.
	PublishScoreThreshold = -1000
	// GraylistScoreThreshold: below it, every RPC from the peer is
	// ignored, before validation.
	GraylistScoreThreshold = -2500
)

// PeerScoreParams returns the gossipsub peer-score parameters and
// thresholds package node gives its router (pubsub.WithPeerScore): they
// score the catalog topic of network only, by invalid messages alone (see
// the constants above), and leave every other topic unscored. A
// plugin-mode router adds network's topic to its own parameters with
// [CatalogTopicScoreParams].
func PeerScoreParams(network catalog.NetworkID) (*pubsub.PeerScoreParams, *pubsub.PeerScoreThresholds) {
	p := &pubsub.PeerScoreParams{
		Topics:           map[string]*pubsub.TopicScoreParams{TopicName(network): CatalogTopicScoreParams()},
		AppSpecificScore: func(peer.ID) float64 { return 0 },
		DecayInterval:    time.Second,
		DecayToZero:      0.01,
		// Remember a misbehaving peer's score for a while after it
		// disconnects, so that reconnecting does not wash it.
		RetainScore: 10 * time.Minute,
		// A delivery record lives as long as the router's seen window.
		SeenMsgTTL: SeenMessagesTTL,
	}
	t := &pubsub.PeerScoreThresholds{
		GossipThreshold:   GossipScoreThreshold,
		PublishThreshold:  PublishScoreThreshold,
		GraylistThreshold: GraylistScoreThreshold,
	}
	return p, t
}

// CatalogTopicScoreParams are the score parameters of a catalog topic:
// P4 (invalid messages) alone. TimeInMeshQuantum is set only because
// gossipsub requires it; its weight is zero.
func CatalogTopicScoreParams() *pubsub.TopicScoreParams {
	return &pubsub.TopicScoreParams{
		TopicWeight:                    1,
		TimeInMeshQuantum:              time.Second,
		InvalidMessageDeliveriesWeight: InvalidMessageWeight,
		InvalidMessageDeliveriesDecay:  pubsub.ScoreParameterDecayWithBase(InvalidMessageDecay, time.Second, 0.01),
	}
}
