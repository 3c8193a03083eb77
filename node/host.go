package node

import (
	"fmt"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	tls "github.com/libp2p/go-libp2p/p2p/security/tls"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"

	ma "github.com/multiformats/go-multiaddr"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/catalog/discovery"
	"github.com/mosaik-go/mosaik/groups"
	"github.com/mosaik-go/mosaik/streams"
)

// newHost builds the standalone host of a node made without WithHost: the
// given or a new ed25519 identity, TCP and QUIC, Noise and TLS, yamux, and
// the resource limits of the mosaik protocols (resourceLimits).
func newHost(cfg *config, nw catalog.NetworkID) (host.Host, error) {
	key := cfg.key
	if key == nil {
		var err error
		if key, _, err = crypto.GenerateEd25519Key(nil); err != nil {
			return nil, fmt.Errorf("node: generate identity: %w", err)
		}
	}
	listen := cfg.listen
	if len(listen) == 0 {
		listen = defaultListen
	}
	rm, err := newResourceManager(nw, cfg.params, cfg.promReg != nil)
	if err != nil {
		return nil, err
	}
	cm, err := connmgr.NewConnManager(160, 512, connmgr.WithGracePeriod(time.Minute))
	if err != nil {
		_ = rm.Close()
		return nil, fmt.Errorf("node: connection manager: %w", err)
	}
	// libp2p refuses a registerer together with DisableMetrics.
	metrics := libp2p.DisableMetrics()
	if cfg.promReg != nil {
		metrics = libp2p.PrometheusRegisterer(cfg.promReg)
	}
	h, err := libp2p.New(
		libp2p.Identity(key),
		libp2p.ListenAddrStrings(listen...),
		libp2p.Transport(tcp.NewTCPTransport), libp2p.Transport(quic.NewTransport),
		libp2p.Security(noise.ID, noise.New), libp2p.Security(tls.ID, tls.New),
		libp2p.Muxer(yamux.ID, yamux.DefaultTransport),
		libp2p.ResourceManager(rm), libp2p.ConnectionManager(cm),
		libp2p.DisableRelay(), metrics,
		libp2p.UserAgent(catalog.ProtocolVersion),
	)
	if err != nil {
		// The host owns them only once built.
		_ = cm.Close()
		_ = rm.Close()
		return nil, fmt.Errorf("node: libp2p host: %w", err)
	}
	return h, nil
}

// newResourceManager builds the resource manager of a standalone host:
// libp2p's default limits (rcmgr.DefaultLimits with the default service
// limits) scaled to the machine's memory and file descriptors by
// AutoScale, plus limits of our own protocols (see resourceLimits).
//
// Without metrics (no Prometheus registerer) its statistics reporter is
// off too: libp2p.DisableMetrics does not reach a resource manager built
// by the caller, and the reporter formats a timestamp and updates
// process-wide Prometheus vectors on every stream and connection event
// (4 % of the CPU of 100 nodes joining in one process, BENCHMARKS.md
// "Convergence, session 14"), for metrics nobody registered.
func newResourceManager(nw catalog.NetworkID, p discovery.Params, metrics bool) (network.ResourceManager, error) {
	limits := resourceLimits(nw, p)
	var opts []rcmgr.Option
	if !metrics {
		opts = append(opts, rcmgr.WithMetricsDisabled())
	}
	rm, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(limits.AutoScale()), opts...)
	if err != nil {
		return nil, fmt.Errorf("node: resource manager: %w", err)
	}
	return rm, nil
}

// resourceLimits are libp2p's scaling defaults plus the limits of the
// mosaik protocols:
//
//   - catalog sync of the network, each version (2.1.0, 2.0.0 and 1.0.0): at most 2 × MaxConcurrentSyncs inbound
//     streams in all and 2 × SyncBurst per peer (the service refuses
//     beyond MaxConcurrentSyncs and SyncBurst itself, with reset codes
//     that say why; the resource manager only bounds what reaches it), and
//     64 outbound in all, 8 per peer (8 background syncs at once, plus
//     explicit SyncWith calls);
//   - streams (one libp2p stream per subscription): 1024 inbound and 1024
//     outbound streams plus 256 of each per GiB of memory, and per peer
//     256 each way (a consumer of many streams of one producer), with
//     libp2p's protocol memory defaults;
//   - departure hand-off: 32 inbound and 16 outbound streams in all, 2 and
//     1 per peer;
//   - group bonds (one libp2p stream per group and member pair): the same
//     as streams, so that a peer sharing up to 256 groups with us bonds in
//     all of them;
//   - group snapshot transfer (one stream per chunk request): 256 inbound
//     and 256 outbound in all, 64 each way per peer (16 collections
//     syncing at once from one holder, at 4 chunks in flight each).
//
// Everything else (system, transient, per-peer and per-connection scopes)
// keeps libp2p's defaults as AutoScale sizes them: a peer gets 256
// inbound and 512 outbound streams plus 128 and 256 per GiB.
func resourceLimits(nw catalog.NetworkID, p discovery.Params) rcmgr.ScalingLimitConfig {
	limits := rcmgr.DefaultLimits
	libp2p.SetDefaultServiceLimits(&limits)
	for _, id := range discovery.SyncProtocols(nw) { // 2.1.0 and the 2.0.0 and 1.0.0 still served
		addStreamLimits(&limits, id, [2]int{2 * p.MaxConcurrentSyncs, 64}, [2]int{2 * p.SyncBurst, 8})
	}
	// Bump push: one long-lived stream per push peer and direction
	// (frames on it until idle); the service holds at most 64 inbound
	// push streams.
	addStreamLimits(&limits, discovery.BumpProtocol(nw), [2]int{64, 64}, [2]int{4, 4})
	// Departure hand-off: one short stream per departing peer (the
	// service serves 16 at once, 2 a peer, and resets more).
	addStreamLimits(&limits, discovery.DepartProtocol(nw), [2]int{32, 16}, [2]int{2, 1})

	streamsAll := limits.ProtocolBaseLimit
	streamsAll.StreamsInbound, streamsAll.StreamsOutbound, streamsAll.Streams = 1024, 1024, 2048
	streamsInc := limits.ProtocolLimitIncrease
	streamsInc.StreamsInbound, streamsInc.StreamsOutbound, streamsInc.Streams = 256, 256, 512
	limits.AddProtocolLimit(streams.ProtocolID, streamsAll, streamsInc)
	streamsPeer := limits.ProtocolPeerBaseLimit
	streamsPeer.StreamsInbound, streamsPeer.StreamsOutbound, streamsPeer.Streams = 256, 256, 512
	limits.AddProtocolPeerLimit(streams.ProtocolID, streamsPeer, limits.ProtocolPeerLimitIncrease)

	for _, id := range []protocol.ID{groups.ProtocolID(nw), groups.ProtocolID10(nw)} {
		limits.AddProtocolLimit(id, streamsAll, streamsInc)
		limits.AddProtocolPeerLimit(id, streamsPeer, limits.ProtocolPeerLimitIncrease)
	}
	for _, id := range []protocol.ID{groups.SnapshotProtocolID(nw), groups.SnapshotPipelineProtocolID(nw)} {
		addStreamLimits(&limits, id, [2]int{256, 256}, [2]int{64, 64})
	}
	return limits
}

// addStreamLimits gives protocol id libp2p's protocol base limits with
// these stream counts (inbound, outbound) in all and per peer.
func addStreamLimits(limits *rcmgr.ScalingLimitConfig, id protocol.ID, all, perPeer [2]int) {
	a := limits.ProtocolBaseLimit
	a.StreamsInbound, a.StreamsOutbound, a.Streams = all[0], all[1], all[0]+all[1]
	p := limits.ProtocolPeerBaseLimit
	p.StreamsInbound, p.StreamsOutbound, p.Streams = perPeer[0], perPeer[1], perPeer[0]+perPeer[1]
	limits.AddProtocolLimit(id, a, rcmgr.BaseLimitIncrease{})
	limits.AddProtocolPeerLimit(id, p, rcmgr.BaseLimitIncrease{})
}

// unbound returns the addresses of want (multiaddr strings, as given to
// WithListenAddrs) that no address of have listens on: the same
// protocols and values, where a port 0 in want matches any port.
func unbound(want []string, have []ma.Multiaddr) []string {
	var out []string
	for _, w := range want {
		wa, err := ma.NewMultiaddr(w)
		if err != nil || !slices.ContainsFunc(have, func(h ma.Multiaddr) bool { return listensOn(wa, h) }) {
			out = append(out, w)
		}
	}
	return out
}

// listensOn reports whether have listens on want: have may carry more
// components (a WebTransport listener's certificate hashes).
func listensOn(want, have ma.Multiaddr) bool {
	if len(want) > len(have) {
		return false
	}
	for i, w := range want {
		h := have[i]
		if w.Code() != h.Code() {
			return false
		}
		port := w.Code() == ma.P_TCP || w.Code() == ma.P_UDP
		if w.Value() != h.Value() && !(port && w.Value() == "0") {
			return false
		}
	}
	return true
}
