package discovery

import (
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pubsubpb "github.com/libp2p/go-libp2p-pubsub/pb"

	"github.com/mosaik-go/mosaik/catalog"
)

// MessageID is the gossip message ID of the catalog topic: the BLAKE3
// hash of the message data (PROTOCOL.md §9). Republishing the same signed
// bytes (a relay of an entry its owner also published) is deduplicated,
// and every heartbeat (a new version) is a new message. The service sets
// it on its topic, whatever the router's own message-ID function is.
func MessageID(m *pubsubpb.Message) string {
	id := catalog.HashID(m.GetData())
	return string(id[:])
}

// Gossip router queue sizes of [GossipSubOptions]. go-libp2p-pubsub's
// defaults (32 each) drop messages silently in bursts: when a node joins,
// syncs and relays arrive together with the heartbeats of every peer, and a
// dropped heartbeat can get a live peer purged.
const (
	ValidateQueueSize     = 1024
	PeerOutboundQueueSize = 256
)

// GossipSubOptions are the go-libp2p-pubsub options of the router that
// package node builds, and the ones a plugin-mode router should start from:
//
//   - the StrictNoSign signature policy with [MessageID] as the router's
//     message-ID function. Catalog entries and departures carry their
//     author's signature, so gossipsub's own signature (a second ed25519
//     signature per message, verified by every receiver) adds nothing but
//     cost; without it a heartbeat costs one signature check instead of
//     two. Every router of a network must use the same policy (PROTOCOL.md
//     §9.3): a StrictNoSign router drops signed messages and a StrictSign
//     router drops unsigned ones;
//   - flood publishing: a node's own announcements reach every topic peer
//     at once, even before the mesh forms;
//   - no peer exchange (go-libp2p-pubsub's default): the catalog already
//     names every peer and the service keeps Params.CascadeBelow of them
//     connected, while peer exchange makes every pruned peer dial up to 16
//     more, which under churn costs a handshake storm for nothing;
//   - validation and per-peer outbound queues sized for bursts of catalog
//     traffic.
//
// Options given after these override them (for instance
// pubsub.WithMessageSignaturePolicy(pubsub.StrictSign) for a network whose
// routers all sign).
func GossipSubOptions() []pubsub.Option {
	return []pubsub.Option{
		pubsub.WithMessageSignaturePolicy(pubsub.StrictNoSign),
		pubsub.WithMessageIdFn(MessageID),
		pubsub.WithFloodPublish(true),
		pubsub.WithValidateQueueSize(ValidateQueueSize),
		pubsub.WithPeerOutboundQueueSize(PeerOutboundQueueSize),
	}
}
