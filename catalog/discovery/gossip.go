package discovery

import (
	"encoding/binary"
	"time"

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

// SeenMessagesTTL is how long the router of [GossipSubOptions] remembers
// a message ID as seen (gossipsub's default is 2 minutes), and how long
// its peer scoring keeps a message's delivery record ([PeerScoreParams]).
// Copies of a message arrive within a few of gossipsub's 1 s heartbeats:
// forwarded by mesh peers at once, or asked for with IWANT while the
// sender's message cache holds it (HistoryLength, 5 heartbeats). 30 s
// covers that six times over. A catalog copy that still arrives after it
// is refused by the store before any signature check (a known version),
// so the window only has to stop duplicate work, not replays. Both caches
// hold one record per message, and with full replication a node sees a
// message per heartbeat of every peer (333/s at 10 000 peers): at 2
// minutes they held about 550 B per catalog entry, a quarter of the
// node's memory beyond the entries themselves.
const SeenMessagesTTL = 30 * time.Second

// routerMessageID is the router-wide message ID of [GossipSubOptions]: the
// BLAKE3 hash of the topic (length-prefixed) and the data. Without authors
// and sequence numbers gossipsub's default ID would be empty; the topic is
// included so that equal payloads on an application's other topics are
// not taken for one message. The catalog topic uses [MessageID].
func routerMessageID(m *pubsubpb.Message) string {
	topic, data := m.GetTopic(), m.GetData()
	b := make([]byte, 0, binary.MaxVarintLen64+len(topic)+len(data))
	b = binary.AppendUvarint(b, uint64(len(topic)))
	b = append(append(b, topic...), data...)
	id := catalog.HashID(b)
	return string(id[:])
}

// GossipSubOptions are the go-libp2p-pubsub options of the router that
// package node builds, and the ones a plugin-mode router should start from:
//
//   - anonymous messages: the StrictNoSign signature policy and no author
//     (messages carry no from, seqno, signature or key). Catalog entries
//     and departures carry their author's signature, so gossipsub's own
//     signature (a second ed25519 signature per message, verified by every
//     receiver) adds nothing but cost; without it a heartbeat costs one
//     signature check instead of two. Every router of a network must do
//     the same (PROTOCOL.md §9.3): such a router drops messages that carry
//     any of those fields, and a signing router drops unsigned ones;
//   - a content-based message ID for the whole router: the hash of topic
//     and data. The catalog topic sets its own, [MessageID]. On an
//     application's own topics it means that equal payloads published to
//     one topic within the seen window ([SeenMessagesTTL]) are delivered
//     once: add a nonce to them, or set a topic message-ID function;
//   - a seen-messages window of [SeenMessagesTTL] instead of gossipsub's
//     2 minutes: it bounds the router's memory per message;
//   - flood publishing: a node's own announcements reach every topic peer
//     at once, even before the mesh forms;
//   - no peer exchange (go-libp2p-pubsub's default): the catalog already
//     names every peer and the service keeps Params.CascadeBelow of them
//     connected, while peer exchange makes every pruned peer dial up to 16
//     more, which under churn costs a handshake storm for nothing;
//   - validation and per-peer outbound queues sized for bursts of catalog
//     traffic.
//
// Options given after these override them. A network whose routers all
// sign adds pubsub.WithMessageSignaturePolicy(pubsub.StrictSign) and
// pubsub.WithMessageAuthor("") (what node.WithGossipSignaturePolicy does).
func GossipSubOptions() []pubsub.Option {
	return []pubsub.Option{
		pubsub.WithMessageSignaturePolicy(pubsub.StrictNoSign),
		pubsub.WithNoAuthor(),
		pubsub.WithMessageIdFn(routerMessageID),
		pubsub.WithFloodPublish(true),
		pubsub.WithSeenMessagesTTL(SeenMessagesTTL),
		pubsub.WithValidateQueueSize(ValidateQueueSize),
		pubsub.WithPeerOutboundQueueSize(PeerOutboundQueueSize),
	}
}
