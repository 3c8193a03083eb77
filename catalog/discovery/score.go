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
//
// The refusals that depend on the receiver's own catalog are ignored,
// never rejected, and so never scored: address caps (address_cap), a
// full catalog (catalog_full, catalog_churn), the rate limit judged
// against the versions this node happened to see (rate_limited) and, in a
// closed network, an admission that starts or ended within the clock
// drift of our clock (admission_window). An
// honest relay forwards what its own catalog took; ours may refuse the
// same entry because our catalog is fuller, holds other peers on that
// address or took another version first. Scoring those would let an
// attacker that reaches one honest node get that node graylisted by the
// rest, and for the same reason a relay is not scored by how soon the
// entries it brought were evicted (its catalog may be larger than ours).
// What bounds a Sybil flood's cost instead is that every one of those
// checks runs before the signature is verified (catalog.Store.Open): a
// fresh identity refused for lack of room costs a decode and a few
// B-tree lookups, and Catalog.EvictMinAge keeps a full catalog from
// admitting more than one stranger per EvictMinAge. Each refusal is
// counted by its label (Stats.RejectedBy, the refused metric).
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
