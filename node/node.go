package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"

	dht "github.com/libp2p/go-libp2p-kad-dht"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/catalog/discovery"
	"github.com/mosaik-go/mosaik/groups"
	"github.com/mosaik-go/mosaik/internal/dialer"
	"github.com/mosaik-go/mosaik/streams"
)

// Node is a mosaik node: a libp2p host with gossipsub, the mosaik DHT and
// catalog discovery for one network. It is safe for concurrent use.
//
// A node owns what it creates and closes it in reverse order; what it was
// given (WithHost, WithPubSub, WithDHT) it never closes.
type Node struct {
	network catalog.NetworkID
	name    string
	log     *slog.Logger

	h    host.Host
	ps   *pubsub.PubSub
	dht  *dht.IpfsDHT
	disc *discovery.Service
	// bumpScorer is disc once it exists: the router, built before it,
	// scores peers by their bump penalty through it.
	bumpScorer atomic.Pointer[discovery.Service]
	streamSvc  *streams.Service
	groupSvc   *groups.Service

	bootstrap []peer.AddrInfo
	// dialing is set when New is done and the bootstrap loop starts; the
	// DHT sees no bootstrap peers before (see New).
	dialing atomic.Bool

	protectMu sync.Mutex
	protected map[peer.ID]int // live subscriptions per peer (Protect)

	closers []func() error // what we own, in creation order
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	once    sync.Once
	err     error
}

// New starts a node of the network named network (a name, or a 64-hex
// network ID). Without WithHost it builds a standalone host: TCP and
// QUIC-v1, Noise and TLS, yamux, an ed25519 identity, and resource limits
// sized for many streams. It then starts gossipsub and the DHT unless they
// are given or disabled, starts discovery and dials the bootstrap peers in
// the background. New does not block on the network.
func New(network string, opts ...Option) (_ *Node, err error) {
	if network == "" {
		return nil, errors.New("node: the network name must not be empty")
	}
	cfg := config{params: discovery.DefaultParams(), log: slog.Default(), noPeersWarning: defaultNoPeersWarning}
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	if err := cfg.checkOptions(); err != nil {
		return nil, err
	}
	cfg.bootstrap = mergeByPeer(cfg.bootstrap)
	explicitMeter := cfg.meter != nil
	if cfg.meter == nil {
		cfg.meter = otel.GetMeterProvider()
		if _, ok := cfg.meter.(*fanout); ok {
			// Set by another node for kad-dht only: it forwards no mosaik scope.
			cfg.meter = noop.NewMeterProvider()
		}
	}
	if cfg.tracer == nil {
		cfg.tracer = otel.GetTracerProvider()
	}
	n := &Node{network: catalog.IDFromString(network), name: network, bootstrap: cfg.bootstrap, protected: map[peer.ID]int{}}
	n.log = cfg.log.With("network", n.network.Short())
	n.ctx, n.cancel = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			n.cancel()
			n.wg.Wait() // loops started before the failure
			n.closeOwned()
		}
	}()

	if n.h = cfg.host; n.h == nil {
		if n.h, err = newHost(&cfg, n.network); err != nil {
			return nil, err
		}
		n.own(n.h.Close)
		if missing := unbound(cfg.listen, n.h.Network().ListenAddresses()); len(missing) > 0 {
			// libp2p fails only when no address can be bound.
			n.log.Warn("listen addresses could not be bound; the node runs without them", "addrs", missing,
				"listening", n.h.Network().ListenAddresses(), "hint", "is another process using the port?")
		}
	}
	// One bootstrap list for every node of a network names each node too:
	// dialing itself, a node would warn that it is unreachable, for good.
	if i := slices.IndexFunc(cfg.bootstrap, func(ai peer.AddrInfo) bool { return ai.ID == n.h.ID() }); i >= 0 {
		cfg.bootstrap = slices.Delete(slices.Clone(cfg.bootstrap), i, i+1)
		n.bootstrap = cfg.bootstrap
		n.log.Debug("the bootstrap list names this node: skipped")
	}
	// On a borrowed host, the handlers that the gossipsub router and the
	// DHT built here register stay on the host after Close (neither
	// removes them): the host would go on advertising, and serving to
	// nothing, /meshsub/ and /mosaik/kad/. They are removed on Close.
	var before map[protocol.ID]bool
	// ownHandlers removes, on Close, the handlers registered on a borrowed
	// host since the last call: called after each service that registers
	// some, so a failure of the next one still removes them.
	ownHandlers := func() {}
	if cfg.host != nil {
		before = map[protocol.ID]bool{}
		for _, p := range n.h.Mux().Protocols() {
			before[p] = true
		}
		ownHandlers = func() {
			var added []protocol.ID
			for _, p := range n.h.Mux().Protocols() {
				if !before[p] {
					added = append(added, p)
					before[p] = true
				}
			}
			if len(added) > 0 {
				n.own(func() error {
					for _, p := range added {
						n.h.RemoveStreamHandler(p)
					}
					return nil
				})
			}
		}
	}
	if n.ps = cfg.ps; n.ps == nil && !cfg.params.DisableGossip {
		gp := pubsub.DefaultGossipSubParams()
		if cfg.gossip != nil {
			gp = *cfg.gossip
		}
		psCtx, psCancel := context.WithCancel(context.Background())
		// Senders of rejected catalog messages lose score (P4 only), and
		// so do senders of bad bumps by push (the application score).
		sp, st := discovery.PeerScoreParams(n.network)
		sp.AppSpecificScore, sp.AppSpecificWeight = func(p peer.ID) float64 {
			if d := n.bumpScorer.Load(); d != nil {
				return discovery.BumpPenaltyScore(d.BumpPenalty(p))
			}
			return 0
		}, 1
		opts := append(discovery.GossipSubOptions(),
			pubsub.WithGossipSubParams(gp),
			pubsub.WithLogger(n.log.With("component", "pubsub")),
			pubsub.WithPeerScore(sp, st),
		)
		if cfg.signPolicy != nil && *cfg.signPolicy == pubsub.StrictSign {
			// Signing needs an author again: the host.
			opts = append(opts, pubsub.WithMessageSignaturePolicy(pubsub.StrictSign), pubsub.WithMessageAuthor(""))
		}
		n.ps, err = pubsub.NewGossipSub(psCtx, n.h, opts...)
		if err != nil {
			psCancel()
			return nil, fmt.Errorf("node: gossipsub: %w", err)
		}
		n.own(func() error { psCancel(); return nil })
		ownHandlers()
	}
	if n.dht = cfg.dht; n.dht == nil && !cfg.noDHT {
		if kad := protocol.ID(discovery.DHTProtocolPrefix + "/kad/1.0.0"); before[kad] {
			// Another node's DHT on this host: ours would take its handler
			// over, and whichever closed first would remove it from both.
			return nil, fmt.Errorf("node: the host already serves %s (another node's DHT?): lend that DHT with WithDHT, or use WithoutDHT", kad)
		}
		// The DHT dials its bootstrap peers when it starts, if they are
		// given at once: here, before discovery, streams and groups have
		// registered their protocols. Every handler registered after that
		// connection changes the identify record the peer got, and
		// identify pushes it again (a stream and a signed peer record to
		// verify each time, at the bootstrap peer for every joining node).
		// The bootstrap loop dials them when the node is complete, and the
		// DHT takes them from that connection; later, when its routing
		// table runs empty, it dials them itself.
		bootstrap := cfg.bootstrap
		dopts := append(discovery.DHTOptions(), dht.BootstrapPeersFunc(func() []peer.AddrInfo {
			if !n.dialing.Load() {
				return nil
			}
			return bootstrap
		}))
		if len(cfg.admission) > 0 {
			dopts = append(dopts, discovery.AdmissionDHTOption(n.network, cfg.admission))
		}
		if n.dht, err = dht.New(n.h, append(dopts, cfg.dhtOpt...)...); err != nil {
			return nil, fmt.Errorf("node: kad-dht: %w", err)
		}
		n.own(n.dht.Close)
		ownHandlers()
	}
	if explicitMeter && n.dht != nil {
		detach := attachMeters(cfg.meter)
		n.own(func() error { detach(); return nil })
	}
	tags := make([]catalog.Tag, len(cfg.tags))
	for i, t := range cfg.tags {
		tags[i] = catalog.IDFromString(t)
	}
	userEntry := cfg.entry
	cfg.entry = func(e *catalog.Entry) {
		e.Names = append(e.Names, cfg.tags...)
		if userEntry != nil {
			userEntry(e)
		}
	}
	dopts := []discovery.Option{
		discovery.WithParams(cfg.params), discovery.WithTags(tags...), discovery.WithLogger(cfg.log),
		discovery.WithMeterProvider(cfg.meter), discovery.WithTracerProvider(cfg.tracer), discovery.WithEntry(cfg.entry),
	}
	if n.dht != nil {
		dopts = append(dopts, discovery.WithDHT(n.dht))
	}
	if len(cfg.admission) > 0 {
		dopts = append(dopts, discovery.WithAdmission(cfg.admission))
	}
	if n.disc, err = discovery.New(n.h, n.ps, n.network, dopts...); err != nil {
		return nil, err
	}
	n.own(n.disc.Close)
	n.bumpScorer.Store(n.disc)
	if len(cfg.vouchers) > 0 {
		n.disc.Store().SetTicketCheck(ticketCheck(cfg.vouchers))
	}
	sopts := []streams.ServiceOption{streams.WithLogger(cfg.log), streams.WithMeterProvider(cfg.meter), streams.WithTracerProvider(cfg.tracer),
		streams.WithConnProtector(n)}
	if cfg.streams != nil {
		sopts = append(sopts, streams.WithParams(*cfg.streams))
	}
	if cfg.policy != nil {
		sopts = append(sopts, streams.WithDefaultPolicy(*cfg.policy))
	}
	if n.streamSvc, err = streams.New(n.h, n.disc, sopts...); err != nil {
		return nil, err
	}
	n.own(n.streamSvc.Close)
	gopts := []groups.ServiceOption{groups.WithLogger(cfg.log), groups.WithMeterProvider(cfg.meter)}
	if cfg.bonds != nil {
		gopts = append(gopts, groups.WithBondParams(*cfg.bonds))
	}
	if cfg.dataDir != "" {
		gopts = append(gopts, groups.WithJoinDefaults(groups.WithDataDir(cfg.dataDir)))
	}
	gopts = append(gopts, cfg.groupOpts...)
	if n.groupSvc, err = groups.NewService(n.h, n.disc, gopts...); err != nil {
		return nil, err
	}
	n.own(n.groupSvc.Close) // closed before streams and discovery
	if len(cfg.rendezvous) > 0 {
		if err = n.startRendezvous(&cfg); err != nil {
			return nil, err
		}
	}
	if cfg.mdns {
		if err = n.startMDNS(); err != nil {
			return nil, err
		}
	}
	n.dialing.Store(true)
	if len(n.bootstrap) > 0 {
		n.wg.Add(1)
		go n.bootstrapLoop()
	}
	if cfg.noPeersWarning > 0 {
		n.wg.Add(1)
		go n.warnIfAlone(cfg.noPeersWarning)
	}
	n.log.Info("node started", "peer", n.h.ID(), "addrs", n.h.Addrs())
	return n, nil
}

func (n *Node) own(f func() error) { n.closers = append(n.closers, f) }

// SubscriptionTag prefixes the connection manager's protection tag of the
// peers of live subscriptions: the tag is [Node.ProtectTag], one per
// network, so that nodes of several networks on one host do not lift each
// other's protection.
const SubscriptionTag = "mosaik-subscriptions"

// ProtectTag is the connection manager's protection tag of this node's
// [Node.Protect]: "mosaik-subscriptions/<network short hex>", as the
// catalog's "mosaik-catalog/<network short hex>".
func (n *Node) ProtectTag() string { return SubscriptionTag + "/" + n.network.Short() }

// Protect keeps the host's connection manager from trimming the
// connection to p until a matching Unprotect: the streams service calls
// it for each live subscription (either direction), and other services
// of the node may too. Calls are counted per peer: p stays protected
// (tag [Node.ProtectTag]) until every Protect has had its Unprotect. It
// never blocks.
func (n *Node) Protect(p peer.ID) {
	n.protectMu.Lock()
	defer n.protectMu.Unlock()
	if n.protected[p]++; n.protected[p] == 1 {
		n.h.ConnManager().Protect(p, n.ProtectTag())
	}
}

// Unprotect ends one Protect of p.
func (n *Node) Unprotect(p peer.ID) {
	n.protectMu.Lock()
	defer n.protectMu.Unlock()
	c, ok := n.protected[p]
	switch {
	case !ok:
		return
	case c > 1:
		n.protected[p] = c - 1
		return
	}
	delete(n.protected, p)
	n.h.ConnManager().Unprotect(p, n.ProtectTag())
}

// Close publishes a departure notice, stops discovery and closes what the
// node created (DHT, gossipsub, host), in reverse order. Borrowed
// components stay open. Close is idempotent and safe to call concurrently.
// It returns within about three discovery DepartureGrace periods plus the
// time libp2p takes to close the DHT and the host (see the package doc).
func (n *Node) Close() error {
	n.once.Do(func() {
		n.cancel()
		n.wg.Wait()
		// Depart first: closing groups and streams removes their protocol
		// handlers, and identify pushes that change to every peer; done
		// before the departure, it cost the departure most of its holders
		// in the churn test (they purged the node instead).
		// Groups hand their voters' roles over first: the departure ends
		// every bond, which the graceful leave needs.
		if n.groupSvc != nil {
			n.groupSvc.Leave()
		}
		if n.disc != nil {
			n.disc.Leave()
		}
		n.err = n.closeOwned()
	})
	return n.err
}

func (n *Node) closeOwned() error {
	n.cancel()
	var errs []error
	for i := len(n.closers) - 1; i >= 0; i-- {
		errs = append(errs, n.closers[i]())
	}
	n.closers = nil
	return errors.Join(errs...)
}

// Done is closed when Close begins: the node is leaving (its departure
// and its groups' graceful leave may take a few seconds more), and serves
// nothing new. A health check answers from it.
func (n *Node) Done() <-chan struct{} { return n.ctx.Done() }

// ID is the node's peer ID.
func (n *Node) ID() peer.ID { return n.h.ID() }

// Network is the network's ID.
func (n *Node) Network() catalog.NetworkID { return n.network }

// NetworkName is the name the node was started with.
func (n *Node) NetworkName() string { return n.name }

// Host is the libp2p host.
func (n *Node) Host() host.Host { return n.h }

// PubSub is the gossipsub router (nil when gossip is disabled).
func (n *Node) PubSub() *pubsub.PubSub { return n.ps }

// DHT is the mosaik DHT (nil with WithoutDHT).
func (n *Node) DHT() *dht.IpfsDHT { return n.dht }

// Streams is the streams service, on which producers and consumers are
// created: streams.NewProducer[T](n.Streams(), "name").
func (n *Node) Streams() *streams.Service { return n.streamSvc }

// Groups is the groups service, on which groups are joined.
func (n *Node) Groups() *groups.Service { return n.groupSvc }

// DuplicateIdentity returns a channel closed when the node finds another
// process using its identity (its key) on the network; see
// [discovery.Service.DuplicateIdentity]. The node logs it once at Error
// level and keeps running: the peers now ignore its entry, so an
// application should usually stop, or at least alert. A library never
// exits the process; mosaik-node exits 1 unless --allow-duplicate-identity.
func (n *Node) DuplicateIdentity() <-chan struct{} { return n.disc.DuplicateIdentity() }

// DuplicateIdentityErr returns the *catalog.DuplicateIdentityError once
// DuplicateIdentity is closed (errors.Is(err, catalog.ErrDuplicateIdentity)),
// and nil before.
func (n *Node) DuplicateIdentityErr() error { return n.disc.DuplicateIdentityErr() }

// Discovery is the catalog discovery service.
func (n *Node) Discovery() *discovery.Service { return n.disc }

// Catalog returns the current catalog snapshot.
func (n *Node) Catalog() *catalog.Snapshot { return n.disc.Catalog() }

// Addrs returns the node's full multiaddrs, each ending in /p2p/<id>, for
// use as bootstrap addresses by other nodes.
func (n *Node) Addrs() []ma.Multiaddr {
	out, _ := peer.AddrInfoToP2pAddrs(&peer.AddrInfo{ID: n.h.ID(), Addrs: n.h.Addrs()})
	return out
}

// AddrInfo returns the node's ID and addresses.
func (n *Node) AddrInfo() peer.AddrInfo { return peer.AddrInfo{ID: n.h.ID(), Addrs: n.h.Addrs()} }

// SetTags replaces the node's tags and announces the change.
func (n *Node) SetTags(tags ...string) error {
	ids := make([]catalog.Tag, len(tags))
	for i, t := range tags {
		ids[i] = catalog.IDFromString(t)
	}
	_, err := n.disc.UpdateLocal(func(e *catalog.Entry) {
		e.Tags = ids
		e.Names = append(e.Names, tags...) // names of dropped tags are pruned on sealing
	})
	return err
}

// AddTags adds tags and announces the change.
func (n *Node) AddTags(tags ...string) error {
	_, err := n.disc.UpdateLocal(func(e *catalog.Entry) {
		for _, t := range tags {
			e.Tags = append(e.Tags, catalog.IDFromString(t))
		}
		e.Names = append(e.Names, tags...)
	})
	return err
}

// RemoveTags removes tags and announces the change.
func (n *Node) RemoveTags(tags ...string) error {
	_, err := n.disc.UpdateLocal(func(e *catalog.Entry) {
		e.Tags = slices.DeleteFunc(e.Tags, func(x catalog.Tag) bool {
			for _, t := range tags {
				if x == catalog.IDFromString(t) {
					return true
				}
			}
			return false
		})
	})
	return err
}

// FindProducers returns the producers of stream (a name or 64-hex ID),
// asking the DHT for producers gossip has not reached.
func (n *Node) FindProducers(ctx context.Context, stream string) ([]*catalog.SignedEntry, error) {
	return n.disc.FindProducers(ctx, catalog.IDFromString(stream))
}

// Connect dials a peer; discovery syncs catalogs once identify completes.
// A dial that crossed the peer's own dial to this node (a TCP simultaneous
// open, which fails the security handshake on both ends) is tried again
// after a short random pause.
func (n *Node) Connect(ctx context.Context, pi peer.AddrInfo) error {
	return dialer.Connect(ctx, n.h, pi)
}

// AddTicket adds t to the node's entry and announces the change.
func (n *Node) AddTicket(t catalog.Ticket) error {
	_, err := n.disc.UpdateLocal(func(e *catalog.Entry) { e.Tickets = append(e.Tickets, t) })
	return err
}

// RemoveTicket removes t (same class and bytes) from the node's entry.
func (n *Node) RemoveTicket(t catalog.Ticket) error {
	_, err := n.disc.UpdateLocal(func(e *catalog.Entry) {
		e.Tickets = slices.DeleteFunc(e.Tickets, func(x catalog.Ticket) bool {
			return x.Class == t.Class && string(x.Data) == string(t.Data)
		})
	})
	return err
}

// RemoveTicketsOf removes every ticket of class c.
func (n *Node) RemoveTicketsOf(c catalog.TicketClass) error {
	_, err := n.disc.UpdateLocal(func(e *catalog.Entry) {
		e.Tickets = slices.DeleteFunc(e.Tickets, func(x catalog.Ticket) bool { return x.Class == c })
	})
	return err
}

// ReplaceTicket replaces every ticket of t's class with t, in one signed
// change (a renewal: peers see the new ticket and the old one gone at once).
func (n *Node) ReplaceTicket(t catalog.Ticket) error {
	_, err := n.disc.UpdateLocal(func(e *catalog.Entry) {
		e.Tickets = append(slices.DeleteFunc(e.Tickets, func(x catalog.Ticket) bool { return x.Class == t.Class }), t)
	})
	return err
}
