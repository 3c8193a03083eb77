package node_test

import (
	"context"
	"testing"
	"time"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/catalog/discovery"
	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/node"
)

func TestDHT_FindProducerWithoutGossipOrSync(t *testing.T) {
	stream := catalog.IDFromString("prices")
	boot := startNode(t, "dht")
	producer := startNode(t, "dht", bootstrapOf(boot), node.WithEntry(func(e *catalog.Entry) {
		e.Streams = append(e.Streams, stream)
	}))
	// The seeker hears neither gossip nor catalog syncs: only the DHT.
	p := discovery.TestParams()
	p.DisableGossip, p.DisableSync = true, true
	seeker := startNode(t, "dht", bootstrapOf(boot), node.WithDiscoveryParams(p))

	if seeker.Catalog().Len() != 0 {
		t.Fatalf("seeker catalog not empty before lookup: %d", seeker.Catalog().Len())
	}
	var found []*catalog.SignedEntry
	testutil.Eventually(t, 10*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		found, _ = seeker.FindProducers(ctx, "prices")
		return len(found) == 1
	}, "producer not found through the DHT")
	e := found[0]
	if e.Entry.PeerID != producer.ID() || !e.Entry.Produces(stream) {
		t.Fatalf("found %s producing %v, want %s", e.Entry.PeerID, e.Entry.Streams, producer.ID())
	}
	// The entry is the producer's own signed entry, verifiable by anyone.
	if _, err := catalog.OpenEntry(e.Bytes(), 0); err != nil {
		t.Fatalf("entry from the DHT does not verify: %v", err)
	}
	if _, ok := seeker.Catalog().Get(producer.ID()); !ok {
		t.Error("DHT-found producer not merged into the catalog")
	}
	if _, ok := seeker.Catalog().Get(boot.ID()); ok {
		t.Error("seeker learned the bootstrap node, but it has no gossip or sync")
	}
}
