package harness

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
)

// newHost builds the libp2p host every libp2p system runs on: TCP only on
// 127.0.0.1 (random port), Noise, yamux, an ed25519 identity, and the
// resource limits a standalone mosaik node uses (node.newResourceManager),
// so that many streams per peer are allowed for every system alike;
// reachability pinned to private (see below). extra options come last
// (the groups catch-up row adds a bandwidth counter).
func newHost(extra ...libp2p.Option) (host.Host, error) {
	key, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		return nil, err
	}
	limits := rcmgr.DefaultLimits
	libp2p.SetDefaultServiceLimits(&limits)
	many := rcmgr.ResourceLimits{StreamsInbound: 4096, StreamsOutbound: 4096, Streams: 8192}
	partial := rcmgr.PartialLimitConfig{
		System:              rcmgr.ResourceLimits{Streams: rcmgr.Unlimited, StreamsInbound: rcmgr.Unlimited, StreamsOutbound: rcmgr.Unlimited, Conns: rcmgr.Unlimited, Memory: rcmgr.Unlimited64},
		Transient:           many,
		PeerDefault:         rcmgr.ResourceLimits{StreamsInbound: 2048, StreamsOutbound: 2048, Streams: 4096, Memory: 1 << 30},
		ProtocolPeerDefault: rcmgr.ResourceLimits{StreamsInbound: 2048, StreamsOutbound: 2048, Streams: 4096},
		ProtocolDefault:     many,
	}
	// Metrics off, as libp2p.DisableMetrics below and as node.New's
	// standalone host without a Prometheus registerer.
	rm, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(partial.Build(limits.AutoScale())), rcmgr.WithMetricsDisabled())
	if err != nil {
		return nil, err
	}
	cm, err := connmgr.NewConnManager(160, 512, connmgr.WithGracePeriod(time.Minute))
	if err != nil {
		_ = rm.Close()
		return nil, err
	}
	opts := []libp2p.Option{
		libp2p.Identity(key),
		libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Security(noise.ID, noise.New),
		libp2p.Muxer(yamux.ID, yamux.DefaultTransport),
		libp2p.ResourceManager(rm), libp2p.ConnectionManager(cm),
		libp2p.DisableRelay(), libp2p.DisableMetrics(),
		// Loopback hosts are never publicly reachable; pinning that turns
		// AutoNAT v1 into its static form. Its background client, whose
		// event subscription can deadlock BasicHost.Close in go-libp2p
		// v0.51 while peers push identify updates (the observed-address
		// manager stops reading before AutoNAT closes, and an identify
		// emitter blocked on it holds the lock AutoNAT needs), then never
		// runs.
		libp2p.ForceReachabilityPrivate(),
	}
	h, err := libp2p.New(append(opts, extra...)...)
	if err != nil {
		_ = rm.Close()
		return nil, err
	}
	return h, nil
}

// newHosts builds n hosts (concurrently: set-up time is not measured);
// on failure it closes those built.
func newHosts(n int) ([]host.Host, error) {
	hs := make([]host.Host, n)
	errs := make([]error, n)
	closeAll(n, func(i int) { hs[i], errs[i] = newHost() })
	if err := errors.Join(errs...); err != nil {
		_ = closeHosts(slices.DeleteFunc(hs, func(h host.Host) bool { return h == nil }))
		return nil, fmt.Errorf("libp2p host: %w", err)
	}
	return hs, nil
}

func closeHosts(hs []host.Host) error {
	var errs []error
	for i := len(hs) - 1; i >= 0; i-- {
		errs = append(errs, hs[i].Close())
	}
	return errors.Join(errs...)
}

func addrInfo(h host.Host) peer.AddrInfo { return peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()} }

// connectStar connects every host but the first to the first.
func connectStar(ctx context.Context, hs []host.Host) error {
	for _, h := range hs[1:] {
		if err := h.Connect(ctx, addrInfo(hs[0])); err != nil {
			return fmt.Errorf("connect: %w", err)
		}
	}
	return nil
}
