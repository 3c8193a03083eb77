package discovery

import (
	"fmt"
	"strings"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	mh "github.com/multiformats/go-multihash"

	"github.com/mosaik-go/mosaik/catalog"
)

// Names on the wire. All are derived from the network ID so that several
// networks can share one host without crossing. See PROTOCOL.md.

// TopicName is the gossipsub topic of network n:
// "/mosaik/catalog/1.0.0/<network hex>".
func TopicName(n catalog.NetworkID) string { return "/mosaik/catalog/1.0.0/" + n.String() }

// SyncProtocol is the catalog sync protocol of network n, the paged
// delta sync with bumps: "/mosaik/catalog/sync/2.1.0/<network hex>".
func SyncProtocol(n catalog.NetworkID) protocol.ID {
	return protocol.ID(syncProtocolPrefix + n.String())
}

// SyncProtocolV2 is the paged delta sync of network n without bumps that
// nodes before 2.1.0 speak: "/mosaik/catalog/sync/2.0.0/<network hex>". A
// service serves it and falls back to it with responders that do not
// serve [SyncProtocol].
func SyncProtocolV2(n catalog.NetworkID) protocol.ID {
	return protocol.ID(syncProtocolV2Prefix + n.String())
}

// SyncProtocolV1 is the whole-catalog sync of network n that nodes before
// 2.0.0 speak: "/mosaik/catalog/sync/1.0.0/<network hex>". A service
// serves it for old initiators and falls back to it with responders that
// serve neither [SyncProtocol] nor [SyncProtocolV2].
func SyncProtocolV1(n catalog.NetworkID) protocol.ID {
	return protocol.ID(syncProtocolV1Prefix + n.String())
}

// SyncProtocols are the sync protocols of network n a service serves, in
// order of preference.
func SyncProtocols(n catalog.NetworkID) []protocol.ID {
	return []protocol.ID{SyncProtocol(n), SyncProtocolV2(n), SyncProtocolV1(n)}
}

// BumpProtocol is the bump push protocol of network n, which carries
// heartbeats in batches (PROTOCOL.md section 10.9):
// "/mosaik/catalog/bumps/1.0.0/<network hex>".
func BumpProtocol(n catalog.NetworkID) protocol.ID {
	return protocol.ID(bumpProtocolPrefix + n.String())
}

const bumpProtocolPrefix = "/mosaik/catalog/bumps/1.0.0/"

const (
	syncProtocolPrefix   = "/mosaik/catalog/sync/2.1.0/"
	syncProtocolV2Prefix = "/mosaik/catalog/sync/2.0.0/"
	syncProtocolV1Prefix = "/mosaik/catalog/sync/1.0.0/"
)

// DHTNamespace is the kad-dht record namespace of catalog entries.
const DHTNamespace = "mosaik"

// DHTProtocolPrefix is the kad-dht protocol prefix of the mosaik DHT
// ("/mosaik/kad/1.0.0"), which keeps it apart from the public Amino DHT.
const DHTProtocolPrefix = "/mosaik"

// DHTKey is the DHT key under which p stores its entry for network n:
// "/mosaik/<network hex>/<peer ID base58>".
func DHTKey(n catalog.NetworkID, p peer.ID) string {
	return "/" + DHTNamespace + "/" + n.String() + "/" + p.String()
}

func parseDHTKey(key string) (catalog.NetworkID, peer.ID, error) {
	rest, ok := strings.CutPrefix(key, "/"+DHTNamespace+"/")
	if !ok {
		return catalog.NetworkID{}, "", fmt.Errorf("discovery: DHT key %q is not in the %s namespace", key, DHTNamespace)
	}
	nw, pid, ok := strings.Cut(rest, "/")
	if !ok || len(nw) != 64 {
		return catalog.NetworkID{}, "", fmt.Errorf("discovery: malformed DHT key %q", key)
	}
	p, err := peer.Decode(pid)
	if err != nil {
		return catalog.NetworkID{}, "", fmt.Errorf("discovery: DHT key %q: %w", key, err)
	}
	return catalog.IDFromString(nw), p, nil
}

// NetworkCID is the content ID every node of network n provides in the DHT:
// a CIDv1 (raw codec) of the SHA2-256 of "mosaik/network/<network hex>".
func NetworkCID(n catalog.NetworkID) cid.Cid { return hashCID("mosaik/network/" + n.String()) }

// StreamCID is the content ID a producer of stream s in network n provides:
// a CIDv1 (raw) of SHA2-256 of "mosaik/stream/<network hex>/<stream hex>".
func StreamCID(n catalog.NetworkID, s catalog.StreamID) cid.Cid {
	return hashCID("mosaik/stream/" + n.String() + "/" + s.String())
}

func hashCID(s string) cid.Cid {
	h, err := mh.Sum([]byte(s), mh.SHA2_256, -1)
	if err != nil {
		panic(err) // SHA2-256 is always available
	}
	return cid.NewCidV1(cid.Raw, h)
}
