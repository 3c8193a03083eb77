package cli

import (
	"log/slog"
	"slices"
	"strings"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	flag "github.com/spf13/pflag"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/cmd/mosaik-node/internal/keyfile"
	"github.com/mosaik-go/mosaik/node"
	"github.com/mosaik-go/mosaik/policy"
	"github.com/mosaik-go/mosaik/streams"
)

// The flag groups of the help output, in the order help prints them.
const (
	groupNetwork  = "Network"
	groupIdentity = "Identity and storage"
	groupStream   = "Stream"
	groupColls    = "Collections"
	groupStatus   = "Status page and metrics"
	groupLog      = "Logging and configuration"
)

var groupOrder = []string{groupNetwork, groupIdentity, groupStream, groupColls, groupStatus, groupLog}

// groupAnnotation is the pflag annotation key that names a flag's group.
const groupAnnotation = "mosaik_group"

// inGroup puts the named flags of fs in a help group.
func inGroup(fs *flag.FlagSet, group string, names ...string) {
	for _, n := range names {
		if fs.Lookup(n) != nil {
			_ = fs.SetAnnotation(n, groupAnnotation, []string{group})
		}
	}
}

// nodeFlags are shared by run, produce, consume, catalog and map.
type nodeFlags struct {
	network, tags, key, addrFile, http, logLevel, logFormat, config  string
	listen, bootstrap, tickets                                       listFlag
	admissionIssuers, admissionTickets, evictionIssuers              listFlag
	rendezvous, profile, gossipSigning, statusToken, statusTokenFile string
	mdns, strictPerms                                                bool
	allowDuplicateIdentity                                           bool         // identity.go
	inspected                                                        []ticketInfo // the --ticket files, for the startup check
	stablePort                                                       bool         // listen is run's default, not --listen
}

func (f *nodeFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.network, "network", "", "the `name` of the network to join (required)")
	fs.Var(&f.listen, "listen", "`multiaddr` to listen on (repeatable; default for run: TCP and QUIC on port 4801 of all IPv4 interfaces, for the other commands a random port); an explicit port that another socket holds is an error (exit 2)")
	fs.Var(&f.bootstrap, "bootstrap", "bootstrap `multiaddr` ending in /p2p/ID (repeatable)")
	fs.StringVar(&f.tags, "tags", "", "the node's tags, comma separated")
	fs.StringVar(&f.key, "key", "", "ed25519 key `file`; created with mode 0600 when missing, logged at INFO with its path and peer ID (default for run: DATA-DIR/node.key; for the other commands a new key each run); a file that is not a key is an error (exit 2)")
	registerStrictPerms(fs, &f.strictPerms)
	fs.Var(&f.tickets, "ticket", "ticket `file` to carry in the node's entry (repeatable)")
	fs.Var(&f.admissionIssuers, "admission-issuer", "close the network: every catalog entry must hold a libp2p-signed admission ticket from this issuer `peer-id` (repeatable: any of them); every node of the network must give the same")
	fs.Var(&f.evictionIssuers, "eviction-issuer", "in an open network, when the catalog is full, entries holding a libp2p-signed ticket from this issuer `peer-id` are evicted last (repeatable: any of them; typically the issuers your streams and collections require)")
	fs.Var(&f.admissionTickets, "admission-ticket", "the node's own admission ticket `file` (as for --ticket; repeatable); without a valid one a node of a closed network refuses to start")
	fs.StringVar(&f.addrFile, "addr-file", "", "once listening, write the node's full multiaddrs to this `file`, one per line")
	fs.StringVar(&f.http, "http", "", "serve the status page, metrics and API on this `host:port` (a bare :port binds to 127.0.0.1; name 0.0.0.0 or an interface address to expose it); a port in use is an error (exit 2)")
	fs.StringVar(&f.statusToken, "status-token", "", "require this bearer `token` on every --http endpoint but /healthz (prefer MOSAIK_STATUS_TOKEN or --status-token-file: arguments are visible to other local users)")
	fs.StringVar(&f.statusTokenFile, "status-token-file", "", "read the --http bearer token from this `file` (surrounding whitespace is ignored)")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: debug|info|warn|error")
	fs.StringVar(&f.logFormat, "log-format", "text", "log format of every stderr line, go-libp2p's included: text|json")
	fs.StringVar(&f.config, "config", "", "TOML or YAML `file` with the same keys as the flags (also MOSAIK_CONFIG)")
	fs.StringVar(&f.rendezvous, "rendezvous", "off", "find peers through a rendezvous DHT: public (the public Amino DHT), off, or comma-separated bootstrap multiaddrs ending in /p2p/ID")
	fs.BoolVar(&f.mdns, "mdns", true, "find peers on the local link with mDNS")
	fs.StringVar(&f.gossipSigning, "gossip-signing", "none", "gossipsub signatures on catalog messages: none (entries carry their own signatures) or strict (for a network whose plugin-mode routers sign); every node of a network must use the same one")
	fs.BoolVar(&f.allowDuplicateIdentity, "allow-duplicate-identity", false, allowDuplicateIdentityUsage)
	fs.StringVar(&f.profile, "profile", "default", "timing profile: default (entries purged after 300 s of silence), or fast (heartbeats every second, purged after 3 s, and fast consensus timings for the collections of --replicate and map: demos, tests, small LANs); every node of a network must use the same one")
	inGroup(fs, groupNetwork, "network", "listen", "bootstrap", "tags", "rendezvous", "mdns", "gossip-signing", "profile", "admission-issuer", "eviction-issuer")
	inGroup(fs, groupIdentity, "key", "strict-perms", "ticket", "admission-ticket", "allow-duplicate-identity")
	inGroup(fs, groupStatus, "http", "status-token", "status-token-file", "addr-file")
	inGroup(fs, groupLog, "log-level", "log-format", "config")
}

// options turns the node flags into node options.
func (f *nodeFlags) options(log *slog.Logger) ([]node.Option, error) {
	if f.network == "" {
		return nil, usagef("--network is required")
	}
	opts := []node.Option{node.WithLogger(log), node.WithTags(splitList(f.tags)...)}
	switch f.profile {
	case "", "default":
	case "fast":
		opts = append(opts, node.WithFastProfile())
	default:
		return nil, usagef("--profile %q: want default or fast", f.profile)
	}
	switch f.gossipSigning {
	case "", "none":
	case "strict":
		opts = append(opts, node.WithGossipSignaturePolicy(pubsub.StrictSign))
	default:
		return nil, usagef("--gossip-signing %q: want none or strict", f.gossipSigning)
	}
	addrs := make([]ma.Multiaddr, 0, len(f.listen))
	for _, a := range f.listen {
		m, err := ma.NewMultiaddr(a)
		if err != nil {
			return nil, usagef("--listen %q: %v", a, err)
		}
		addrs = append(addrs, m)
	}
	for _, a := range f.bootstrap {
		if _, err := peer.AddrInfoFromString(a); err != nil {
			return nil, usagef("--bootstrap %q must be a multiaddr ending in /p2p/<peer id>: %v", a, err)
		}
	}
	if len(f.listen) > 0 {
		opts = append(opts, node.WithListenAddrs(f.listen...))
	}
	if len(f.bootstrap) > 0 {
		opts = append(opts, node.WithBootstrap(f.bootstrap...))
	}
	rv, err := rendezvousOption(f.rendezvous)
	if err != nil {
		return nil, err
	}
	if rv != nil {
		opts = append(opts, rv)
	}
	if f.mdns {
		opts = append(opts, node.WithMDNS())
	}
	if f.key != "" {
		k, err := keyfile.LoadOrCreate(f.key, keyOptions(f.strictPerms, log)...)
		if err != nil {
			return nil, usageError{err}
		}
		opts = append(opts, node.WithIdentity(k))
	}
	if len(f.admissionIssuers) > 0 {
		ids, err := issuerIDs("--admission-issuer", f.admissionIssuers)
		if err != nil {
			return nil, err
		}
		opts = append(opts, node.WithAdmission(policy.NewSignedTicketValidator(catalog.IDFromString(f.network), ids...)))
	}
	if len(f.evictionIssuers) > 0 {
		ids, err := issuerIDs("--eviction-issuer", f.evictionIssuers)
		if err != nil {
			return nil, err
		}
		opts = append(opts, node.WithEvictionTickets(policy.NewSignedTicketValidator(catalog.IDFromString(f.network), ids...)))
	}
	var tickets []catalog.Ticket
	for _, path := range append(slices.Clone(f.tickets), f.admissionTickets...) {
		t, format, err := readTicketFile(path)
		if err != nil {
			return nil, usageError{err}
		}
		tickets = append(tickets, t)
		f.inspected = append(f.inspected, inspectTicket(path, format, t))
	}
	if len(tickets) > 0 {
		opts = append(opts, node.WithEntry(func(e *catalog.Entry) { e.Tickets = append(e.Tickets, tickets...) }))
	}
	// Last, so that a bad key or ticket is reported before a port probe.
	for _, m := range addrs {
		if err := checkPortFree(m); err != nil {
			if f.stablePort {
				return nil, usagef("%v (the default port of run: give another node on this host its own --listen)", err)
			}
			return nil, err
		}
	}
	return opts, nil
}

// issuerIDs decodes the peer IDs of a repeatable issuer flag.
func issuerIDs(flagName string, vals listFlag) ([]peer.ID, error) {
	ids := make([]peer.ID, 0, len(vals))
	for _, is := range vals {
		id, err := peer.Decode(is)
		if err != nil {
			return nil, usagef("%s %q: %v", flagName, is, err)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// rendezvousOption turns --rendezvous into a node option (nil for off).
func rendezvousOption(v string) (node.Option, error) {
	switch strings.TrimSpace(v) {
	case "", "off":
		return nil, nil
	case "public":
		return node.WithPublicRendezvous(), nil
	}
	var pis []peer.AddrInfo
	for _, a := range splitList(v) {
		pi, err := peer.AddrInfoFromString(a)
		if err != nil {
			return nil, usagef("--rendezvous %q: want public, off or multiaddrs ending in /p2p/<peer id>: %v", a, err)
		}
		pis = append(pis, *pi)
	}
	if len(pis) == 0 {
		return nil, usagef("--rendezvous %q: want public, off or multiaddrs", v)
	}
	return node.WithRendezvous(pis...), nil
}

// streamFlags are the policy flags of produce and consume.
type streamFlags struct {
	requireTags, ticketClass string
	issuers                  listFlag
}

func (s *streamFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&s.requireTags, "require-tags", "", "accept only peers carrying all these tags (comma separated)")
	fs.Var(&s.issuers, "require-ticket-issuer", "require a libp2p-signed ticket from this issuer `peer-id` (repeatable: any of them)")
	fs.StringVar(&s.ticketClass, "ticket-class", "", "class of the required ticket (default the libp2p-signed ticket class)")
	inGroup(fs, groupStream, "require-tags", "require-ticket-issuer", "ticket-class")
}

// options returns the eligibility options of the flags; they apply to a
// producer (which consumers it admits) and to a consumer (which producers
// it subscribes to) alike.
func (s *streamFlags) options(network catalog.NetworkID) ([]streams.HandleOption, error) {
	var opts []streams.HandleOption
	if tags := splitList(s.requireTags); len(tags) > 0 {
		opts = append(opts, streams.WithNamedRequire("tags "+strings.Join(tags, ","), policy.HasTags(tags...)))
	}
	if len(s.issuers) > 0 {
		ids := make([]peer.ID, 0, len(s.issuers))
		for _, is := range s.issuers {
			id, err := peer.Decode(is)
			if err != nil {
				return nil, usagef("--require-ticket-issuer %q: %v", is, err)
			}
			ids = append(ids, id)
		}
		v := policy.NewSignedTicketValidator(network, ids...)
		if s.ticketClass != "" {
			v = v.WithClass(catalog.IDFromString(s.ticketClass))
		}
		opts = append(opts, streams.WithTicketValidators(v))
	} else if s.ticketClass != "" {
		return nil, usagef("--ticket-class needs --require-ticket-issuer")
	}
	return opts, nil
}

// listFlag is a repeatable flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }
func (l *listFlag) Type() string       { return "list" }

// splitList splits "a,b" into its non-empty trimmed parts.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
