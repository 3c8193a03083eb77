package node

import (
	"testing"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

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

// TestResourceManager_MetricsOnlyWithRegisterer pins that a standalone
// host's resource manager reports to libp2p's (process-wide) Prometheus
// collectors only when the node has a registerer: without one it would
// pay for a timestamp and a labelled update on every stream and
// connection event, for metrics nobody reads. The collectors are shared by
// every resource manager of the process, so the test reads one gauge with
// a scope open and closed.
func TestResourceManager_MetricsOnlyWithRegisterer(t *testing.T) {
	reg := prometheus.NewRegistry()
	rcmgr.MustRegisterWith(reg)
	inbound := func() float64 {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != "libp2p_rcmgr_streams" {
				continue
			}
			for _, m := range mf.GetMetric() {
				if labels(m)["scope"] == "system" && labels(m)["dir"] == "inbound" {
					return m.GetGauge().GetValue()
				}
			}
		}
		return 0
	}
	nw := catalog.IDFromString("limits")
	for _, metrics := range []bool{true, false} {
		rm, err := newResourceManager(nw, discovery.DefaultParams(), metrics)
		if err != nil {
			t.Fatal(err)
		}
		before := inbound()
		s, err := rm.OpenStream("peer", network.DirInbound)
		if err != nil {
			t.Fatal(err)
		}
		open := inbound()
		s.Done()
		_ = rm.Close()
		if reported := open == before+1; reported != metrics {
			t.Errorf("metrics %v: system inbound streams %v with a stream open, %v before: reported %v", metrics, open, before, reported)
		}
	}
}

func labels(m *dto.Metric) map[string]string {
	l := map[string]string{}
	for _, p := range m.GetLabel() {
		l[p.GetName()] = p.GetValue()
	}
	return l
}
