package cli

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	flag "github.com/spf13/pflag"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/cmd/mosaik-node/internal/colls"
	"github.com/mosaik-go/mosaik/node"
	"github.com/mosaik-go/mosaik/streams"
)

// nodeCmd is a command that runs a node: run, produce, consume, catalog
// and the map commands. name is the command ("run", "map put").
type nodeCmd struct {
	name                           string
	nf                             nodeFlags
	sf                             streamFlags
	rf                             replayFlags
	cf                             collFlags
	maxConsumers, onlineMin, count int
	maxRTT, wait                   time.Duration
	asJSON, init                   bool
	dataDir, positionFile          string
}

func (c *nodeCmd) isMap() bool { return strings.HasPrefix(c.name, "map ") }

func (c *nodeCmd) register(fs *flag.FlagSet) {
	c.nf.register(fs)
	if c.name == "run" || c.isMap() {
		c.cf.register(fs, c.name)
	}
	if c.isMap() {
		// A client command prints results on stdout; the node's
		// lifecycle lines would drown them on a terminal.
		c.nf.logLevel = "warn"
		fs.Lookup("log-level").DefValue = "warn"
	}
	switch c.name {
	case "run":
		fs.StringVar(&c.dataDir, "data-dir", "", "the node's data `dir`: its identity (DIR/node.key, unless --key) and the raft log, hard state and snapshots of its groups (DIR/groups/, so of its --replicate collections); default $XDG_DATA_HOME/mosaik or ~/.local/share/mosaik when neither --key nor --data-dir is given, else groups in memory")
		fs.BoolVar(&c.init, "init", false, "create the identity (--key FILE, or node.key in the data dir) when missing, print its peer ID and key file, and exit without starting the node")
		inGroup(fs, groupIdentity, "data-dir", "init")
	case "produce":
		c.sf.register(fs)
		fs.IntVar(&c.maxConsumers, "max-consumers", 0, "at most this many consumers (0: unlimited)")
		fs.IntVar(&c.onlineMin, "online-min", 1, "wait for this many consumers before sending")
		inGroup(fs, groupStream, "max-consumers", "online-min")
		c.rf.register(fs)
	case "consume":
		c.sf.register(fs)
		fs.DurationVar(&c.maxRTT, "max-rtt", 0, "use only producers with an RTT below this (0: any)")
		fs.IntVar(&c.count, "count", 0, "exit 0 after this many datums (0: run until interrupted)")
		fs.StringVar(&c.positionFile, "position-file", "", "resume from the positions saved in this `file` (when it exists) and save there, as datums are printed, the last one printed of each producer; see the command's description")
		inGroup(fs, groupStream, "max-rtt", "count", "position-file")
	case "catalog":
		fs.DurationVar(&c.wait, "wait", 3*time.Second, "how long to collect the catalog before printing it")
		fs.BoolVar(&c.asJSON, "json", false, "print one JSON document")
		inGroup(fs, groupNetwork, "wait", "json")
	}
}

// prepare checks the positional arguments and fills the unset flags from
// the environment and the config file.
func (c *nodeCmd) prepare(fs *flag.FlagSet, pos []string, env Env) (sources, error) {
	// The environment and the config file first: the checks below see
	// their values too (a --value-file from MOSAIK_VALUE_FILE).
	srcs, err := loadLayers(fs, env.Getenv)
	if err != nil {
		return nil, err
	}
	switch {
	case c.name == "produce" || c.name == "consume":
		if len(pos) != 1 {
			return nil, usagef("%s needs exactly one STREAM argument, got %q", c.name, pos)
		}
	case c.isMap():
		if err := checkMapArgs(c.name, pos, &c.cf); err != nil {
			return nil, err
		}
		if c.name == "map put" && c.cf.valueFile != "" {
			v, err := readValue(c.cf.valueFile, env.Stdin)
			if err != nil {
				return nil, err
			}
			c.cf.value = v
		}
	case len(pos) != 0:
		return nil, usagef("%s takes no arguments, got %q", c.name, pos)
	}
	// Counts and durations whose 0 means "off": a negative one is a typo,
	// not another way to say off (consume --count -1 exited at once).
	for name, v := range map[string]int64{"count": int64(c.count), "max-consumers": int64(c.maxConsumers),
		"max-rtt": int64(c.maxRTT), "wait": int64(c.wait), "online-min": int64(c.onlineMin)} {
		if v < 0 {
			return nil, usagef("--%s must not be negative", name)
		}
	}
	return srcs, nil
}

func (c *nodeCmd) exec(ctx context.Context, fs *flag.FlagSet, pos []string, st *state) (err error) {
	env := st.env
	srcs, err := c.prepare(fs, pos, env)
	if err != nil {
		return err
	}
	nf := &c.nf
	log, err := nf.logger(env, st)
	if err != nil {
		return err
	}
	if c.name == "run" {
		if c.init {
			return c.initIdentity(env, log)
		}
		if err := c.persistentDefaults(env.Getenv, log); err != nil {
			return err
		}
	}
	opts, err := nf.options(log)
	if err != nil {
		return err
	}
	if c.dataDir != "" {
		if nf.key == "" {
			return usagef("--data-dir needs an identity: give --key")
		}
		if err := os.MkdirAll(c.dataDir, 0o700); err != nil {
			return usagef("--data-dir: %v", err)
		}
		opts = append(opts, node.WithDataDir(c.dataDir))
	}
	network := catalog.IDFromString(nf.network)
	sopts, err := c.sf.options(network)
	if err != nil {
		return err
	}
	copts, err := c.cf.options(network, nf.profile)
	if err != nil {
		return err
	}
	specs, err := c.cf.specs()
	if err != nil {
		return err
	}
	if c.isMap() && c.cf.timeout <= 0 {
		return usagef("--timeout must be positive")
	}
	if c.cf.forceAfter < 0 || (c.cf.forceAfter > 0 && len(specs) == 0) {
		return usagef("--force-new-epoch-after needs a positive duration and --replicate")
	}
	// A status token from the environment or the config file (which serve
	// every command) is for the server, run --http: the short-lived
	// commands without --http ignore it. Given on their command line, or to
	// run, without --http, it is an error (startHTTP).
	var token string
	if nf.http != "" || c.name == "run" || srcs["status-token"] == srcFlag || srcs["status-token-file"] == srcFlag {
		if token, err = nf.token(); err != nil {
			return err
		}
	}
	replay, err := c.rf.options(fs) // produce's window; nil for the other commands
	if err != nil {
		return err
	}
	var start []streams.Position // consume --position-file, read before the node starts
	if c.positionFile != "" {
		if start, err = readPositions(c.positionFile, nf.network, pos[0]); err != nil {
			return usageError{err} // exit 2: a bad file does not fix itself on a restart
		}
	}
	release, err := lockIdentity(nf.key, nf.allowDuplicateIdentity, log)
	if err != nil {
		return err
	}
	defer release()
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
	warnTickets(log, nf.inspected, network, n.ID(), time.Now())
	if nf.addrFile != "" {
		if err := writeAddrs(nf.addrFile, n); err != nil {
			return err
		}
	}
	log.Info("node running", "peer", n.ID(), "network", nf.network, "addrs", readyAddrs(n))
	if c.isMap() {
		return runMap(ctx, n, c.name, pos, &c.cf, copts, env.Stdout, log)
	}
	switch c.name {
	case "run":
		reps, err := colls.Replicate(n, specs, copts...)
		if err != nil {
			return err
		}
		defer reps.Close()
		for _, s := range specs {
			log.Info("replicating", "collection", s.String())
		}
		if c.cf.forceAfter > 0 {
			reps.ForceWhenLeaderless(c.cf.forceAfter, log)
		}
		<-ctx.Done()
		if c.dataDir != "" {
			// A durable replica keeps its membership, to resume it on
			// restart (groups' Service.Close). Closing the handles first
			// (reps.Close, deferred) would leave the groups gracefully:
			// three voters would shrink to one while this node restarts.
			_ = n.Groups().Close()
		}
		return nil
	case "produce":
		popts := []streams.ProducerOption{streams.WithCodec[[]byte](streams.Bytes{})}
		for _, o := range sopts {
			popts = append(popts, o)
		}
		if c.maxConsumers > 0 {
			popts = append(popts, streams.WithMaxConsumers(c.maxConsumers))
		}
		if min := c.onlineMin; min != 1 {
			popts = append(popts, streams.WithOnlineCondition(func(c *streams.Condition) *streams.Condition { return c.MinimumOf(min) }))
		}
		if replay != nil {
			popts = append(popts, replay)
			log.Info("replay window", "datums", c.rf.datums, "bytes", c.rf.bytes.String(), "age", c.rf.age)
		}
		return produce(ctx, n, pos[0], popts, env.Stdin, progressWriter(env, nf.logFormat), log)
	case "consume":
		copts := []streams.ConsumerOption{streams.WithCodec[[]byte](streams.Bytes{})}
		for _, o := range sopts {
			copts = append(copts, o)
		}
		if c.maxRTT > 0 {
			copts = append(copts, streams.WithMaxRTT(c.maxRTT))
		}
		var saver *positionSaver
		if c.positionFile != "" {
			if len(start) > 0 {
				copts = append(copts, streams.WithResumeFrom(start...))
			}
			log.Info("position file", "file", c.positionFile, "resume", formatPositions(start))
			saver = newPositionSaver(c.positionFile, nf.network, pos[0], start, log)
		}
		return consume(ctx, n, pos[0], copts, c.count, env.Stdout, saver, log)
	case "catalog":
		t := time.NewTimer(c.wait)
		defer t.Stop()
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		if err := bootstrapReached(ctx, n, nf.bootstrap); err != nil {
			return err
		}
		return printCatalog(n, c.asJSON, env.Stdout)
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
