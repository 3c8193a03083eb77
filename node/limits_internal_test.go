package node

import (
	"testing"

	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/catalog/discovery"
	"github.com/mosaik-go/mosaik/groups"
	"github.com/mosaik-go/mosaik/streams"
)

// TestResourceLimits_EveryInboundProtocol pins that each protocol a node
// serves has resource-manager limits of its own, so that no peer can open
// unbounded streams of it (the service's own refusals come after the
// stream exists).
func TestResourceLimits_EveryInboundProtocol(t *testing.T) {
	nw := catalog.IDFromString("limits")
	p := discovery.DefaultParams()
	limits := resourceLimits(nw, p)
	cfg := limits.AutoScale().ToPartialLimitConfig()

	type want struct{ allIn, peerIn int }
	cases := map[protocol.ID]want{
		groups.ProtocolID(nw):                 {allIn: 1024, peerIn: 256},
		groups.SnapshotProtocolID(nw):         {allIn: 256, peerIn: 64},
		groups.SnapshotPipelineProtocolID(nw): {allIn: 256, peerIn: 64},
		streams.ProtocolID:                    {allIn: 1024, peerIn: 256},
	}
	for _, id := range discovery.SyncProtocols(nw) {
		cases[id] = want{allIn: 2 * p.MaxConcurrentSyncs, peerIn: 2 * p.SyncBurst}
	}
	cases[discovery.BumpProtocol(nw)] = want{allIn: 64, peerIn: 4}
	for id, w := range cases {
		all, ok := cfg.Protocol[id]
		if !ok {
			t.Errorf("%s: no protocol limit", id)
			continue
		}
		// AutoScale adds per-GiB increases to some protocols: the base is a floor.
		if got := int(all.StreamsInbound); got < w.allIn || got > 8*w.allIn {
			t.Errorf("%s: %d inbound streams in all, want %d (plus the memory increase)", id, got, w.allIn)
		}
		peerLim, ok := cfg.ProtocolPeer[id]
		if !ok {
			t.Errorf("%s: no per-peer protocol limit", id)
			continue
		}
		if got := int(peerLim.StreamsInbound); got < w.peerIn || got > 2*w.peerIn {
			t.Errorf("%s: %d inbound streams per peer, want %d (plus the memory increase)", id, got, w.peerIn)
		}
	}
}
