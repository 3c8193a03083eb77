package node

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	dht "github.com/libp2p/go-libp2p-kad-dht"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/catalog/discovery"
	"github.com/mosaik-go/mosaik/groups"
	"github.com/mosaik-go/mosaik/policy"
	"github.com/mosaik-go/mosaik/streams"
)

type config struct {
	tags       []string
	bootstrap  []peer.AddrInfo
	listen     []string
	key        crypto.PrivKey
	log        *slog.Logger
	meter      metric.MeterProvider
	tracer     trace.TracerProvider
	promReg    prometheus.Registerer
	params     discovery.Params
	gossip     *pubsub.GossipSubParams        // nil: pubsub's defaults
	signPolicy *pubsub.MessageSignaturePolicy // nil: discovery.GossipSubOptions' (StrictNoSign)
	entry      func(*catalog.Entry)
	streams    *streams.Params
	bonds      *groups.BondParams
	policy     *streams.Policy // WithDefaultStreamPolicy
	groupOpts  []groups.ServiceOption
	dataDir    string
	admission  policy.Requirement       // WithAdmission (empty: an open network)
	vouchers   []policy.TicketValidator // WithEvictionTickets

	host   host.Host
	ps     *pubsub.PubSub
	dht    *dht.IpfsDHT
	noDHT  bool
	dhtOpt []dht.Option

	rendezvous     []peer.AddrInfo // bootstrap peers of the rendezvous DHT (none: off)
	rendezvousFast time.Duration   // poll interval while the catalog is empty (0: default)
	mdns           bool
	noPeersWarning time.Duration // WithNoPeersWarning (0: off)
}

// defaultListen is used by a standalone node given no listen addresses: TCP and QUIC-v1 on every IPv4 interface, on ports the OS picks.
var defaultListen = []string{"/ip4/0.0.0.0/tcp/0", "/ip4/0.0.0.0/udp/0/quic-v1"}

// Option configures a [Node].
type Option func(*config) error

// WithTags sets the node's initial tags (names or 64-hex IDs).
func WithTags(tags ...string) Option {
	return func(c *config) error { c.tags = append(c.tags, tags...); return nil }
}

// WithBootstrap adds bootstrap peers as multiaddrs that end in /p2p/<id>.
// Several addresses of one peer are merged: it is dialed once, with all of
// them.
func WithBootstrap(addrs ...string) Option {
	return func(c *config) error {
		for _, a := range addrs {
			m, err := ma.NewMultiaddr(a)
			if err != nil {
				return fmt.Errorf("node: bootstrap address %q: %w", a, err)
			}
			pi, err := peer.AddrInfoFromP2pAddr(m)
			if err != nil {
				return fmt.Errorf("node: bootstrap address %q must end in /p2p/<peer id>: %w", a, err)
			}
			c.bootstrap = append(c.bootstrap, *pi)
		}
		return nil
	}
}

// mergeByPeer merges bootstrap peers given more than once (several
// addresses of one peer, each with its /p2p/ suffix) into one AddrInfo per
// peer, in order of first mention, addresses deduplicated: the node then
// dials each peer once, trying all its addresses, and backs off per peer.
func mergeByPeer(pis []peer.AddrInfo) []peer.AddrInfo {
	var out []peer.AddrInfo
	at := map[peer.ID]int{}
	for _, pi := range pis {
		i, ok := at[pi.ID]
		if !ok {
			at[pi.ID] = len(out)
			out = append(out, peer.AddrInfo{ID: pi.ID, Addrs: slices.Clone(pi.Addrs)})
			continue
		}
		for _, a := range pi.Addrs {
			if !slices.ContainsFunc(out[i].Addrs, a.Equal) {
				out[i].Addrs = append(out[i].Addrs, a)
			}
		}
	}
	return out
}

// WithBootstrapPeers adds bootstrap peers. A peer given several times (by
// this option or WithBootstrap) is dialed once, with all its addresses.
func WithBootstrapPeers(pis ...peer.AddrInfo) Option {
	return func(c *config) error { c.bootstrap = append(c.bootstrap, pis...); return nil }
}

// WithListenAddrs sets the multiaddrs a standalone node listens on (default
// TCP and QUIC-v1 on 0.0.0.0, random ports). Ignored with WithHost.
func WithListenAddrs(addrs ...string) Option {
	return func(c *config) error { c.listen = append(c.listen, addrs...); return nil }
}

// WithIdentity sets the node's ed25519 private key (default: a new random
// key). Ignored with WithHost, whose key is used.
func WithIdentity(k crypto.PrivKey) Option {
	return func(c *config) error {
		if k == nil || k.Type() != crypto.Ed25519 {
			return errors.New("node: WithIdentity needs an ed25519 private key")
		}
		c.key = k
		return nil
	}
}

// WithLogger sets the structured logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return errors.New("node: WithLogger(nil)")
		}
		c.log = l
		return nil
	}
}

// WithMeterProvider sets the OpenTelemetry meter provider (default the
// global one, a no-op unless an SDK is installed). kad-dht records on the
// global provider only; unless the application has set a global provider,
// the node forwards kad-dht's instruments to mp, named libp2p.kad_dht.*,
// while it runs (see dhtmetrics.go for the process-wide details).
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(c *config) error { c.meter = mp; return nil }
}

// WithPrometheusRegisterer turns on go-libp2p's own Prometheus metrics
// (swarm, identify, eventbus, resource manager, ...) and registers them on
// reg; without it a standalone node disables them. Several nodes may share
// one registerer. Ignored with WithHost, whose owner chose its metrics.
func WithPrometheusRegisterer(reg prometheus.Registerer) Option {
	return func(c *config) error {
		if reg == nil {
			return errors.New("node: WithPrometheusRegisterer(nil)")
		}
		c.promReg = reg
		return nil
	}
}

// WithTracerProvider sets the OpenTelemetry tracer provider for sync and
// subscribe spans (default the global one, a no-op unless an SDK is
// installed).
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(c *config) error { c.tracer = tp; return nil }
}

// WithDiscoveryParams replaces the discovery parameters (default
// discovery.DefaultParams()).
func WithDiscoveryParams(p discovery.Params) Option {
	return func(c *config) error {
		if err := p.Validate(); err != nil {
			return err
		}
		c.params = p
		return nil
	}
}

// WithBondParams sets the groups service's bond parameters (default
// groups.DefaultBondParams()).
func WithBondParams(p groups.BondParams) Option {
	return func(c *config) error {
		if err := p.Validate(); err != nil {
			return err
		}
		c.bonds = &p
		return nil
	}
}

// WithGroupsOptions adds options to the groups service the node creates,
// after the node's own (logger, meter provider, bond parameters), so they
// override those. For tests, groups.WithFaultHook goes here. Repeatable.
func WithGroupsOptions(opts ...groups.ServiceOption) Option {
	return func(c *config) error {
		c.groupOpts = append(c.groupOpts, opts...)
		return nil
	}
}

// WithDataDir keeps the raft log, hard state and snapshots of every group
// joined on the node under dir (see groups.WithDataDir for the layout and
// the lock), so that the node restarted with the same identity
// (WithIdentity) and dir rejoins its groups with their state. A Join can
// still opt out with groups.WithDataDir(""). The default keeps groups in
// memory: a restarted node is then a new member.
func WithDataDir(dir string) Option {
	return func(c *config) error {
		if dir == "" {
			return errors.New("node: WithDataDir needs a directory")
		}
		c.dataDir = dir
		return nil
	}
}

// WithStreamsParams sets the streams service parameters (default
// streams.DefaultParams()).
func WithStreamsParams(p streams.Params) Option {
	return func(c *config) error {
		if err := p.Validate(); err != nil {
			return err
		}
		c.streams = &p
		return nil
	}
}

// WithDefaultStreamPolicy sets the admission policy of every producer
// created on the node's streams service: with it, a deployment requires,
// say, tickets of every consumer with one option. Without it, producers
// admit every consumer in their catalog (streams are open by default). A
// producer that passes streams.WithPolicy uses its own policy instead;
// streams.WithRequire and streams.WithTickets on a producer add to the
// policy in force. Consumers are not affected.
func WithDefaultStreamPolicy(p streams.Policy) Option {
	return func(c *config) error { c.policy = &p; return nil }
}

// WithFastProfile selects the fast profile, mosaik-node's --profile fast:
// timings for tests, demos and small LANs, and for many nodes on one
// machine. It sets discovery.TestParams() (entries purged after 3 s of
// silence), a gossipsub router sized for many nodes in one process (see
// [FastGossipSubParams]), a 1 s rendezvous poll while the catalog is empty
// and 2 s streams handshake and close timeouts. Heartbeats stay on gossip
// (bump push off, discovery.Params.BumpInterval 0): a 3 s purge leaves no
// room for push's wait of up to a push interval at every hop (30 nodes
// under churn purged live peers with it on). Every node of a network
// must use the same profile.
func WithFastProfile() Option {
	return func(c *config) error {
		c.params = discovery.TestParams()
		c.params.BumpInterval = 0
		gp := FastGossipSubParams()
		c.gossip = &gp
		c.rendezvousFast = rendezvousFastProfile
		c.noPeersWarning = fastNoPeersWarning
		if c.streams == nil {
			sp := streams.DefaultParams()
			sp.HandshakeTimeout, sp.CloseTimeout = 2*time.Second, 2*time.Second
			c.streams = &sp
		}
		if c.bonds == nil {
			bp := groups.TestBondParams()
			c.bonds = &bp
		}
		return nil
	}
}

// FastGossipSubParams are the gossipsub parameters of the fast profile:
// pubsub's defaults (1 s heartbeat) with a mesh of degree 3 instead of 6.
// Every node floods its own announcements to all its topic peers, so the
// mesh only carries them on to peers not connected to their author; with
// the default degree each node receives every heartbeat about seven times,
// and 30 nodes in one process under the race detector need more than two
// cores for that. Degree 2 was cheaper still, but a mesh of degree 2 can
// be a ring that one departure cuts; with 3 the churn test measured the
// same within this machine's noise. The fast profile is for many nodes on
// one machine; a real network keeps the defaults.
func FastGossipSubParams() pubsub.GossipSubParams {
	gp := pubsub.DefaultGossipSubParams()
	gp.HeartbeatInitialDelay = 50 * time.Millisecond
	gp.D, gp.Dlo, gp.Dhi, gp.Dlazy = 3, 2, 6, 3
	gp.Dscore, gp.Dout = 2, 0 // Dout must stay below Dlo and D/2
	return gp
}

// WithGossipSubParams sets the parameters of the gossipsub router the node
// creates (default pubsub.DefaultGossipSubParams(); the fast profile sets
// [FastGossipSubParams]). Apply it after WithFastProfile to override the
// profile's. It has no effect with [WithPubSub].
func WithGossipSubParams(gp pubsub.GossipSubParams) Option {
	return func(c *config) error { c.gossip = &gp; return nil }
}

// WithGossipSignaturePolicy sets the signature policy of the gossipsub
// router the node creates. The default is pubsub.StrictNoSign (catalog
// messages carry their author's own signature; see
// discovery.GossipSubOptions). Every router of a network must use the same
// policy (PROTOCOL.md §9.3): choose pubsub.StrictSign for a network that
// includes plugin-mode nodes whose routers sign. It has no effect with
// [WithPubSub].
func WithGossipSignaturePolicy(p pubsub.MessageSignaturePolicy) Option {
	return func(c *config) error {
		switch p {
		case pubsub.StrictSign, pubsub.StrictNoSign:
			c.signPolicy = &p
			return nil
		}
		return fmt.Errorf("node: gossip signature policy must be pubsub.StrictSign or pubsub.StrictNoSign (the lax policies accept messages of either kind), got %v", p)
	}
}

// WithEntry lets the caller fill in the initial local entry before it is
// first signed (used by higher layers to declare streams and tickets).
// Repeated calls add up: the functions run in the order given.
func WithEntry(f func(*catalog.Entry)) Option {
	return func(c *config) error {
		if f == nil {
			return errors.New("node: WithEntry(nil)")
		}
		if prev := c.entry; prev != nil {
			c.entry = func(e *catalog.Entry) { prev(e); f(e) }
		} else {
			c.entry = f
		}
		return nil
	}
}

// WithAdmission closes the network: every catalog entry must hold a valid
// ticket of each validator (policy.SignedTicketValidator, policy.JWT, or
// any policy.TicketValidator; repeated calls add validators). Entries
// without one are rejected by the gossip validator (their sender's
// gossipsub score drops), dropped from catalog syncs, refused by the DHT
// validator of a DHT the node builds, and purged when their tickets
// expire; a peer that is not admitted is refused catalog syncs. The
// node's own entry must hold its admission ticket from the start (give it
// with WithEntry): otherwise New fails with an error matching
// discovery.ErrNotAdmitted. Every node of a network must use the same
// validators. A borrowed DHT (WithDHT) needs discovery.AdmissionDHTOption
// itself.
func WithAdmission(vs ...policy.TicketValidator) Option {
	return func(c *config) error {
		if len(vs) == 0 {
			// The network would stay open, against the caller's intent.
			return errors.New("node: WithAdmission() without a ticket validator: it would admit every entry; give the network's admission validators")
		}
		for _, v := range vs {
			if v == nil {
				return errors.New("node: WithAdmission(nil)")
			}
		}
		c.admission = append(c.admission, vs...)
		return nil
	}
}

// WithEvictionTickets names the ticket validators whose tickets make a
// catalog entry worth keeping when the catalog is full (see
// catalog.Params.MaxPeers): an entry holding a ticket that one of them
// accepts is evicted only after every entry that holds none. Typically
// the validators of the node's streams and groups. Without it, in an open
// network, no ticket counts at eviction: the catalog cannot tell a ticket
// an issuer signed from one an attacker made up, and the peers we
// subscribe to, serve or share a group with are kept anyway. In a closed
// network (WithAdmission) every admitted entry counts. The check runs
// once per peer and set of tickets, when its entry is merged.
func WithEvictionTickets(vs ...policy.TicketValidator) Option {
	return func(c *config) error {
		for _, v := range vs {
			if v == nil {
				return errors.New("node: WithEvictionTickets(nil)")
			}
		}
		c.vouchers = append(c.vouchers, vs...)
		return nil
	}
}

// ticketCheck returns the catalog's eviction ticket check over vs: an
// entry is vouched for when one of its tickets validates, until the last
// such ticket expires.
func ticketCheck(vs []policy.TicketValidator) catalog.TicketCheck { return evictionTickets(vs) }

type evictionTickets []policy.TicketValidator

func (vs evictionTickets) Vouches(e *catalog.Entry, now time.Time) bool {
	_, ok := vs.VouchesUntil(e, now)
	return ok
}

// VouchesUntil implements catalog.TicketCheckUntil: the latest expiry of
// the entry's valid tickets (the zero time when one never expires).
func (vs evictionTickets) VouchesUntil(e *catalog.Entry, now time.Time) (time.Time, bool) {
	var until time.Time
	ok := false
	for _, t := range e.Tickets {
		for _, v := range vs {
			if v.Class() != t.Class {
				continue
			}
			exp, err := v.Validate(t.Data, e.PeerID, now)
			if err != nil {
				continue
			}
			if exp.IsZero() {
				return time.Time{}, true
			}
			if !ok || exp.After(until) {
				until = exp
			}
			ok = true
		}
	}
	return until, ok
}

// WithHost runs mosaik on an existing host (plugin mode). The node never
// closes a borrowed host. Nodes of several networks may share one host;
// they then share one DHT, lent to each with WithDHT (a second node that
// would build its own is refused), and best one gossipsub router
// (WithPubSub).
func WithHost(h host.Host) Option {
	return func(c *config) error { c.host = h; return nil }
}

// WithPubSub announces on an existing gossipsub router (plugin mode). The
// node never closes a borrowed router. Without it the node creates its own
// router on the host.
func WithPubSub(ps *pubsub.PubSub) Option {
	return func(c *config) error { c.ps = ps; return nil }
}

// WithDHT uses an existing kad-dht (plugin mode); it must have been built
// with discovery.DHTOptions() (at least the mosaik protocol prefix and
// validator). The node never closes a borrowed DHT.
func WithDHT(d *dht.IpfsDHT) Option {
	return func(c *config) error { c.dht = d; return nil }
}

// WithoutDHT runs without a DHT: the catalog is then fed by gossip and
// syncs only, and FindProducers looks only at the catalog.
func WithoutDHT() Option {
	return func(c *config) error { c.noDHT = true; return nil }
}

// checkOptions refuses options that contradict each other, instead of
// letting one of them silently win.
func (c *config) checkOptions() error {
	switch {
	case c.dht != nil && c.noDHT:
		return errors.New("node: WithDHT and WithoutDHT contradict each other")
	case c.dht != nil && len(c.dhtOpt) > 0:
		return errors.New("node: WithDHTOptions configures the DHT the node creates, and WithDHT gives it one: build the borrowed DHT with those options instead")
	case c.noDHT && len(c.dhtOpt) > 0:
		return errors.New("node: WithDHTOptions with WithoutDHT: there is no DHT to configure")
	}
	return nil
}

// WithDHTOptions adds kad-dht options for the DHT the node creates (after
// discovery.DHTOptions()). It is an error with WithDHT or WithoutDHT.
func WithDHTOptions(opts ...dht.Option) Option {
	return func(c *config) error { c.dhtOpt = append(c.dhtOpt, opts...); return nil }
}

// WithRendezvous finds other nodes of the network through a rendezvous
// kad-dht (the standard /ipfs/kad/1.0.0 protocol) reached through the given
// bootstrap peers. The node runs a second DHT on its host, as a client,
// advertises RendezvousNamespace(network) there and dials every node it
// finds; catalog sync then does the rest. Found peers enter the catalog
// only through their own signed entries. The rendezvous DHT learns the
// rendezvous key and the node's addresses (PROTOCOL.md §18).
func WithRendezvous(bootstrap ...peer.AddrInfo) Option {
	return func(c *config) error {
		if len(bootstrap) == 0 {
			return errors.New("node: WithRendezvous needs at least one bootstrap peer")
		}
		c.rendezvous = append(c.rendezvous, bootstrap...)
		return nil
	}
}

// WithPublicRendezvous is WithRendezvous on the public Amino DHT
// (dht.DefaultBootstrapPeers). Anyone who knows the network name can then
// find the node's addresses; prefer a random 64-hex network name.
func WithPublicRendezvous() Option {
	return func(c *config) error {
		pis, err := peer.AddrInfosFromP2pAddrs(dht.DefaultBootstrapPeers...)
		if err != nil {
			return fmt.Errorf("node: public rendezvous peers: %w", err)
		}
		c.rendezvous = append(c.rendezvous, pis...)
		return nil
	}
}

// WithMDNS finds other nodes of the network on the local link with mDNS
// (service MDNSServiceName(network)) and dials them like bootstrap peers.
// Off by default: it multicasts on every multicast-capable interface.
func WithMDNS() Option {
	return func(c *config) error { c.mdns = true; return nil }
}

// WithNoPeersWarning sets how long after start a node that has found no
// other peer of its network logs a warning saying what to check (the
// network name, the bootstrap addresses, reachability). The default is
// 30 s, 10 s in the fast profile (give this option after
// WithFastProfile to change that); 0 turns the warning off.
func WithNoPeersWarning(after time.Duration) Option {
	return func(c *config) error {
		if after < 0 {
			return errors.New("node: WithNoPeersWarning: negative duration")
		}
		c.noPeersWarning = after
		return nil
	}
}
