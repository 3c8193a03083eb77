// Package cli implements the mosaik-node command line: it turns flags, a
// config file and MOSAIK_* environment variables into library options and
// runs a command. cmd/mosaik-node only calls Main.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/cmd/mosaik-node/internal/colls"
	"github.com/mosaik-go/mosaik/cmd/mosaik-node/internal/demo"
	"github.com/mosaik-go/mosaik/cmd/mosaik-node/internal/keyfile"
	"github.com/mosaik-go/mosaik/node"
	"github.com/mosaik-go/mosaik/policy"
	"github.com/mosaik-go/mosaik/streams"
)

// Env is what a command sees of its process.
type Env struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	Getenv         func(string) string
}

const usage = `usage: mosaik-node <command> [flags]

commands:
  demo              run a local network on 127.0.0.1 and narrate it
  run               run a node until SIGINT or SIGTERM
  produce STREAM    send every stdin line as a datum
  consume STREAM    print every datum as a line
  catalog           join, wait, print the catalog
  map put NAME KEY VALUE   set a key of a replicated map; prints the version
  map get NAME KEY         print a key's value (linearizable)
  map del NAME KEY         remove a key; prints the version
  map list NAME [--json]   print the whole map
  map watch NAME           print one line per change until interrupted
  keygen            create an ed25519 key file (--out FILE)
  id                print the peer ID of a key file (--key FILE)
  ticket issue      issue a libp2p-signed ticket (--out FILE)
  ticket inspect FILE  print a ticket file's format, issuer, subject, network,
                    class and times, and whether it is valid now; exits 0
                    valid, 1 not valid (expired, not yet valid, bad
                    signature, malformed), 2 an unreadable file
  version           print the module, commit, Go and protocol versions (also --version)

'mosaik-node <command> -h' lists a command's flags. Node flags may also come
from --config FILE (TOML or YAML, same keys) and MOSAIK_<FLAG> variables;
flags override variables, which override the file.

Exit codes: 0 success, 1 failure, 2 bad flags, configuration, key file or a
--listen port in use. SIGINT or SIGTERM ends a command gracefully; a second
one exits at once with 128 + the signal number (130, 143).`

// Main runs the command in args (without the program name) and returns the
// process exit code: 0 success, 1 failure, 2 bad usage or configuration.
func Main(ctx context.Context, args []string, env Env) int {
	if env.Getenv == nil {
		env.Getenv = os.Getenv
	}
	err := run(ctx, args, env)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	}
	fmt.Fprintln(env.Stderr, "mosaik-node:", oneLine(err))
	var ue usageError
	if errors.As(err, &ue) {
		return 2
	}
	return 1
}

func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", "; ") }

func run(ctx context.Context, args []string, env Env) error {
	if len(args) == 0 {
		fmt.Fprintln(env.Stderr, usage)
		return usagef("no command given")
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case "-h", "--help", "help":
		fmt.Fprintln(env.Stdout, usage)
		return nil
	case "version", "--version", "-version":
		if len(args) != 0 {
			return usagef("version takes no arguments, got %q", args)
		}
		printVersion(env.Stdout)
		return nil
	case "demo":
		return cmdDemo(ctx, args, env)
	case "run", "produce", "consume", "catalog":
		return cmdNode(ctx, cmd, args, env)
	case "map":
		if len(args) == 0 || mapArgs[args[0]] == nil {
			return usagef("map: want put, get, del, list or watch")
		}
		return cmdNode(ctx, "map "+args[0], args[1:], env)
	case "keygen":
		return cmdKeygen(args, env)
	case "id":
		return cmdID(args, env)
	case "ticket":
		switch {
		case len(args) > 0 && args[0] == "issue":
			return cmdTicketIssue(args[1:], env)
		case len(args) > 0 && args[0] == "inspect":
			return cmdTicketInspect(args[1:], env)
		}
		return usagef("ticket: want issue or inspect")
	}
	fmt.Fprintln(env.Stderr, usage)
	return usagef("unknown command %q", cmd)
}

func newFlagSet(name string, env Env) *flag.FlagSet {
	fs := flag.NewFlagSet("mosaik-node "+name, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	return fs
}

func parse(fs *flag.FlagSet, args []string) error {
	_, err := parseInterleaved(fs, args)
	return err
}

// parseInterleaved parses flags that may come before, between or after
// positional arguments ("produce STREAM --network x" and "produce
// --network x STREAM" both work) and returns the positional ones.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usageError{err}
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// nodeFlags are shared by run, produce, consume and catalog.
type nodeFlags struct {
	network, tags, key, addrFile, http, logLevel, logFormat, config  string
	listen, bootstrap, tickets                                       listFlag
	rendezvous, profile, gossipSigning, statusToken, statusTokenFile string
	mdns, strictPerms                                                bool
	allowDuplicateIdentity                                           bool         // identity.go
	inspected                                                        []ticketInfo // the --ticket files, for the startup check
}

func (f *nodeFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.network, "network", "", "the network to join (required)")
	fs.Var(&f.listen, "listen", "multiaddr to listen on (repeatable; default TCP and QUIC on all IPv4 interfaces); an explicit port that another socket holds is an error (exit 2)")
	fs.Var(&f.bootstrap, "bootstrap", "bootstrap multiaddr ending in /p2p/ID (repeatable)")
	fs.StringVar(&f.tags, "tags", "", "the node's tags, comma separated")
	fs.StringVar(&f.key, "key", "", "ed25519 key file; created with mode 0600 when missing, logged at INFO with its path and peer ID (default: a new key each run); a file that is not a key is an error (exit 2)")
	registerStrictPerms(fs, &f.strictPerms)
	fs.Var(&f.tickets, "ticket", "ticket file to carry in the node's entry (repeatable)")
	fs.StringVar(&f.addrFile, "addr-file", "", "once listening, write the node's full multiaddrs here, one per line")
	fs.StringVar(&f.http, "http", "", "serve the status page, metrics and API on this host:port (a bare :port binds to 127.0.0.1; name 0.0.0.0 or an interface address to expose it)")
	fs.StringVar(&f.statusToken, "status-token", "", "require this bearer token on every --http endpoint but /healthz (prefer MOSAIK_STATUS_TOKEN or --status-token-file: arguments are visible to other local users)")
	fs.StringVar(&f.statusTokenFile, "status-token-file", "", "read the --http bearer token from this file (surrounding whitespace is ignored)")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: debug|info|warn|error")
	fs.StringVar(&f.logFormat, "log-format", "text", "log format: text|json")
	fs.StringVar(&f.config, "config", "", "TOML or YAML file with the same keys as the flags")
	fs.StringVar(&f.rendezvous, "rendezvous", "off", "find peers through a rendezvous DHT: public (the public Amino DHT), off, or comma-separated bootstrap multiaddrs ending in /p2p/ID")
	fs.BoolVar(&f.mdns, "mdns", true, "find peers on the local link with mDNS")
	fs.StringVar(&f.gossipSigning, "gossip-signing", "none", "gossipsub signatures on catalog messages: none (the default; entries carry their own signatures) or strict (for a network whose plugin-mode routers sign); every node of a network must use the same one")
	fs.BoolVar(&f.allowDuplicateIdentity, "allow-duplicate-identity", false, allowDuplicateIdentityUsage)
	fs.StringVar(&f.profile, "profile", "default", "timing profile: default (entries purged after 300 s of silence), or fast (heartbeats every second, purged after 3 s, and fast consensus timings for the collections of --replicate and map: demos, tests, small LANs); every node of a network must use the same one")
}

func (f *nodeFlags) logger(w io.Writer) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(f.logLevel)); err != nil {
		return nil, usagef("--log-level %q: want debug, info, warn or error", f.logLevel)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch f.logFormat {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, usagef("--log-format %q: want text or json", f.logFormat)
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
	for _, a := range f.listen {
		m, err := ma.NewMultiaddr(a)
		if err != nil {
			return nil, usagef("--listen %q: %v", a, err)
		}
		if err := checkPortFree(m); err != nil {
			return nil, err
		}
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
	var tickets []catalog.Ticket
	for _, path := range f.tickets {
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
	return opts, nil
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
	fs.Var(&s.issuers, "require-ticket-issuer", "require a libp2p-signed ticket from this issuer peer ID (repeatable: any of them)")
	fs.StringVar(&s.ticketClass, "ticket-class", "", "class of the required ticket (default the libp2p-signed ticket class)")
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

func cmdNode(ctx context.Context, cmd string, args []string, env Env) (err error) {
	fs := newFlagSet(cmd, env)
	var nf nodeFlags
	nf.register(fs)
	var sf streamFlags
	var maxConsumers, onlineMin, count int
	var maxRTT, wait time.Duration
	var asJSON bool
	var dataDir string
	var cf collFlags
	isMap := strings.HasPrefix(cmd, "map ")
	if cmd == "run" || isMap {
		cf.register(fs, cmd)
	}
	if isMap {
		// A client command prints results on stdout; the node's
		// lifecycle lines would drown them on a terminal.
		nf.logLevel = "warn"
		fs.Lookup("log-level").DefValue = "warn"
	}
	switch cmd {
	case "run":
		fs.StringVar(&dataDir, "data-dir", "", "keep the raft log, hard state and snapshots of the node's groups (and so of its --replicate collections) in DIR/groups/ (default: memory); needs --key, since a restarted node resumes its groups under the same identity")
	case "produce":
		sf.register(fs)
		fs.IntVar(&maxConsumers, "max-consumers", 0, "at most this many consumers (0: unlimited)")
		fs.IntVar(&onlineMin, "online-min", 1, "wait for this many consumers before sending")
	case "consume":
		sf.register(fs)
		fs.DurationVar(&maxRTT, "max-rtt", 0, "use only producers with an RTT below this (0: any)")
		fs.IntVar(&count, "count", 0, "exit 0 after this many datums (0: run until interrupted)")
	case "catalog":
		fs.DurationVar(&wait, "wait", 3*time.Second, "how long to collect the catalog before printing it")
		fs.BoolVar(&asJSON, "json", false, "print one JSON document")
	}
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	var stream string
	if cmd == "produce" || cmd == "consume" {
		if len(pos) != 1 {
			return usagef("%s needs exactly one STREAM argument, got %q", cmd, pos)
		}
		stream = pos[0]
	} else if isMap {
		if err := checkMapArgs(cmd, pos); err != nil {
			return err
		}
	} else if len(pos) != 0 {
		return usagef("%s takes no arguments, got %q", cmd, pos)
	}
	var cfg map[string]any
	if nf.config != "" {
		var err error
		if cfg, err = loadConfig(nf.config); err != nil {
			return err
		}
	}
	if err := applyLayers(fs, cfg, env.Getenv); err != nil {
		return err
	}
	log, err := nf.logger(env.Stderr)
	if err != nil {
		return err
	}
	opts, err := nf.options(log)
	if err != nil {
		return err
	}
	if dataDir != "" {
		if nf.key == "" {
			return usagef("--data-dir needs --key: a node with a new identity each run cannot resume its groups")
		}
		if err := os.MkdirAll(dataDir, 0o700); err != nil {
			return usagef("--data-dir: %v", err)
		}
		opts = append(opts, node.WithDataDir(dataDir))
	}
	sopts, err := sf.options(catalog.IDFromString(nf.network))
	if err != nil {
		return err
	}
	copts, err := cf.options(catalog.IDFromString(nf.network), nf.profile)
	if err != nil {
		return err
	}
	specs, err := cf.specs()
	if err != nil {
		return err
	}
	if isMap && cf.timeout <= 0 {
		return usagef("--timeout must be positive")
	}
	token, err := nf.token()
	if err != nil {
		return err
	}
	h, err := startHTTP(ctx, nf.http, token, &opts, log)
	if err != nil {
		return err
	}
	n, err := node.New(nf.network, opts...)
	if err != nil {
		h.close()
		return err
	}
	defer func() {
		_ = n.Close()
		h.close()
	}()
	ctx, identity, stopIdentity := watchIdentity(ctx, n, nf.allowDuplicateIdentity, log)
	defer func() { stopIdentity(); err = identity.result(err) }()
	if err := h.attach(ctx, n); err != nil {
		return err
	}
	warnTickets(log, nf.inspected, catalog.IDFromString(nf.network), n.ID(), time.Now())
	if nf.addrFile != "" {
		if err := writeAddrs(nf.addrFile, n); err != nil {
			return err
		}
	}
	log.Info("node running", "peer", n.ID(), "network", nf.network, "addrs", readyAddrs(n))
	if isMap {
		return runMap(ctx, n, cmd, pos, &cf, copts, env.Stdout, log)
	}
	switch cmd {
	case "run":
		reps, err := colls.Replicate(n, specs, copts...)
		if err != nil {
			return err
		}
		defer reps.Close()
		for _, s := range specs {
			log.Info("replicating", "collection", s.String())
		}
		<-ctx.Done()
		return nil
	case "produce":
		popts := []streams.ProducerOption{streams.WithCodec[[]byte](streams.Bytes{})}
		for _, o := range sopts {
			popts = append(popts, o)
		}
		if maxConsumers > 0 {
			popts = append(popts, streams.WithMaxConsumers(maxConsumers))
		}
		if onlineMin != 1 {
			popts = append(popts, streams.WithOnlineCondition(func(c *streams.Condition) *streams.Condition { return c.MinimumOf(onlineMin) }))
		}
		return produce(ctx, n, stream, popts, env.Stdin, log)
	case "consume":
		copts := []streams.ConsumerOption{streams.WithCodec[[]byte](streams.Bytes{})}
		for _, o := range sopts {
			copts = append(copts, o)
		}
		if maxRTT > 0 {
			copts = append(copts, streams.WithMaxRTT(maxRTT))
		}
		return consume(ctx, n, stream, copts, count, env.Stdout, log)
	case "catalog":
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		if err := bootstrapReached(ctx, n, nf.bootstrap); err != nil {
			return err
		}
		return printCatalog(n, asJSON, env.Stdout)
	}
	return nil
}

// readyAddrs is the addrs field of the "node running" line: the node's
// full multiaddrs, each ending in /p2p/<id> and so pasteable as another
// node's --bootstrap, separated by spaces.
func readyAddrs(n *node.Node) string {
	var out []string
	for _, a := range n.Addrs() {
		out = append(out, a.String())
	}
	return strings.Join(out, " ")
}

func writeAddrs(path string, n *node.Node) error {
	var b strings.Builder
	for _, a := range n.Addrs() {
		b.WriteString(a.String())
		b.WriteByte('\n')
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("--addr-file: %w", err)
	}
	return os.Rename(tmp, path) // readers never see a partial file
}

func cmdDemo(ctx context.Context, args []string, env Env) error {
	fs := newFlagSet("demo", env)
	duration := fs.Duration("duration", 10*time.Second, "how long the demo streams data")
	nodes := fs.Int("nodes", 0, "extra nodes to add to the demo network (0: the fixed layout only)")
	logLevel := fs.String("log-level", "warn", "library log level")
	if err := parse(fs, args); err != nil {
		return err
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*logLevel)); err != nil {
		return usagef("--log-level %q: want debug, info, warn or error", *logLevel)
	}
	if *duration < 2*time.Second || *nodes < 0 {
		return usagef("demo: --duration must be at least 2s and --nodes at least 0")
	}
	log := slog.New(slog.NewTextHandler(env.Stderr, &slog.HandlerOptions{Level: lvl}))
	err := demo.Run(ctx, env.Stdout, demo.Config{Nodes: *nodes, Duration: *duration, Logger: log})
	if errors.Is(err, context.Canceled) {
		return nil // interrupted: the summary so far was printed
	}
	return err
}
