package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mosaik-go/mosaik/cmd/mosaik-node/internal/demo"
)

const rootLong = `mosaik-node is the mosaik-go reference node: it runs a node, hosts and
edits replicated collections, produces from stdin, consumes to stdout,
prints the catalog, issues tickets, serves a status page and metrics, and
runs a local demo.

Node flags may also come from a config file (--config FILE or
MOSAIK_CONFIG; TOML or YAML, the flags' names as keys) and from MOSAIK_<FLAG>
variables (MOSAIK_LOG_LEVEL for --log-level; lists comma separated). Flags
override variables, which override the file, which overrides the defaults;
'mosaik-node config show' prints the result and where each value came from.

Logs go to stderr; stdout carries only data. Exit codes: 0 success,
1 failure, 2 bad flags, configuration, key file or a port in use.
SIGINT or SIGTERM ends a command gracefully; a second one exits at once
with 128 + the signal number (130, 143).`

// newRoot builds the command tree of one Main call.
func newRoot(st *state) *cobra.Command {
	env := st.env
	root := &cobra.Command{
		Use:     "mosaik-node",
		Short:   "The mosaik-go reference node",
		Long:    rootLong,
		Version: versionText(),
		Example: `  mosaik-node demo
  mosaik-node run --network orders-net
  mosaik-node help run
  mosaik-node completion bash > /etc/bash_completion.d/mosaik-node`,
		SilenceErrors:     true,
		SilenceUsage:      true,
		PersistentPreRun:  func(*cobra.Command, []string) { st.ran = true },
		CompletionOptions: cobra.CompletionOptions{HiddenDefaultCmd: false},
		RunE: func(c *cobra.Command, args []string) error {
			c.SetOut(env.Stderr)
			_ = c.Help()
			return usagef("no command given")
		},
	}
	root.SetVersionTemplate("{{.Version}}")
	root.SetIn(env.Stdin)
	root.SetOut(env.Stdout)
	root.SetErr(env.Stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.SetHelpFunc(writeHelp)
	root.SetUsageFunc(func(c *cobra.Command) error { writeHelp(c, nil); return nil })
	root.AddGroup(&cobra.Group{ID: "node", Title: "Node commands:"}, &cobra.Group{ID: "tools", Title: "Tools:"})
	root.SetHelpCommandGroupID("tools")
	root.SetCompletionCommandGroupID("tools")

	for _, spec := range nodeCommands {
		root.AddCommand(spec.command(st))
	}
	mapCmd := &cobra.Command{
		Use:     "map",
		Short:   "Edit and read a replicated map (put, get, del, list, watch)",
		GroupID: "node",
		Long: `Join a replicated map as a client, do one operation, and leave. The map's
writer replicas are nodes that run with --replicate map:NAME.`,
		Example: `  mosaik-node run --network demo --replicate map:orders &
  mosaik-node map put orders eth 3124 --network demo --bootstrap ADDR`,
		RunE: func(*cobra.Command, []string) error { return usagef("map: want put, get, del, list or watch") },
	}
	for _, spec := range mapCommands {
		mapCmd.AddCommand(spec.command(st))
	}
	root.AddCommand(mapCmd)

	ticket := &cobra.Command{
		Use:     "ticket",
		Short:   "Issue and inspect tickets",
		GroupID: "tools",
		RunE:    func(*cobra.Command, []string) error { return usagef("ticket: want issue or inspect") },
	}
	ticket.AddCommand(ticketIssueCmd(env), ticketInspectCmd(env))
	for _, c := range []*cobra.Command{keygenCmd(env), idCmd(env), ticket, configCmd(st), versionCmd(env)} {
		c.GroupID = "tools"
		root.AddCommand(c)
	}
	d := demoCmd(env)
	d.GroupID = "node"
	root.AddCommand(d)
	return root
}

// nodeSpec describes a command that runs a node.
type nodeSpec struct {
	name, use, short, long, example string
}

func (s nodeSpec) command(st *state) *cobra.Command {
	nc := &nodeCmd{name: s.name}
	c := &cobra.Command{
		Use:     s.use,
		Short:   s.short,
		Long:    s.long,
		Example: s.example,
		RunE: func(c *cobra.Command, pos []string) error {
			return nc.exec(c.Context(), c.Flags(), pos, st)
		},
	}
	if !strings.HasPrefix(s.name, "map ") {
		c.GroupID = "node"
	}
	nc.register(c.Flags())
	registerCompletions(c)
	return c
}

var nodeCommands = []nodeSpec{
	{
		name: "run", use: "run --network NAME",
		short: "Run a node until SIGINT or SIGTERM",
		long: `Run a node: join the network, announce the node in the catalog, serve
its streams and collections, until SIGINT or SIGTERM (the node announces
its departure first).

Without --key and --data-dir the node keeps its identity in the user's
data directory ($XDG_DATA_HOME/mosaik, else ~/.local/share/mosaik), and
without --listen it listens on port 4801 (TCP and QUIC), so a restarted
node has the same peer ID and addresses; the first start says so in one
line. 'run --init' creates the identity and exits.

Once listening it logs one "node running" line with the peer ID and the
full multiaddrs, each pasteable as another node's --bootstrap.`,
		example: `  mosaik-node run --network orders-net
  mosaik-node run --network orders-net --bootstrap /ip4/10.0.0.5/tcp/4801/p2p/12D3KooW...
  mosaik-node run --network orders-net --data-dir /var/lib/mosaik --http 127.0.0.1:8080
  mosaik-node run --network demo --replicate map:orders --profile fast
  mosaik-node run --init --data-dir /var/lib/mosaik     # create the identity, print its peer ID`,
	},
	{
		name: "produce", use: "produce STREAM --network NAME",
		short: "Send every stdin line as a datum of STREAM",
		long: `Send every stdin line (without its newline) as a datum of STREAM, once
--online-min consumers are subscribed, then deliver what is queued and
exit at EOF. A line may be up to 4 MiB less 16 bytes (the stream's frame
size less its header); a longer line ends the command with exit 1 and an
error naming the line, after delivering the lines before it.

With --replay N the producer keeps its last N datums (and at most
--replay-bytes of them, none older than --replay-age) in one window shared
by all its consumers: a consumer whose link broke, or that restarts with
consume --position-file, gets the datums it missed from the window, in
order, then the live stream. What had already left the window is reported
to it as a gap (cause expired). The window lives in this process: a
restart of produce starts an empty one.

On a terminal, stderr shows a progress line (lines sent, rate,
subscribers); piped or under --log-format json it shows none.`,
		example: `  seq 1000 | mosaik-node produce ticks --network demo --bootstrap ADDR
  tail -f app.log | mosaik-node produce logs --network ops --require-tags ops
  tail -f app.log | mosaik-node produce logs --network ops --replay 100000 --replay-bytes 256MiB`,
	},
	{
		name: "consume", use: "consume STREAM --network NAME",
		short: "Print every datum of STREAM as a stdout line",
		long: `Subscribe to STREAM and print every datum as a line on stdout, until
interrupted or --count datums. A gap (datums of a producer that never
arrived) is logged as a warning before the datum that follows it.

--position-file FILE keeps this consumer's place across its own restarts.
At start, when FILE exists, the consumer resumes each producer it names
right after the datum saved there, from the producer's replay window
(produce --replay); a file that is unreadable, corrupt or of another
stream or network is an error (exit 2). As it runs, it records each datum
once the datum is written and flushed to stdout, and saves the last one
of each producer to FILE at most every 100 ms and when it exits, replacing
the file atomically (a temp file, fsync, rename). A kill -9 therefore
prints again at most the datums printed after the last save (about the
last 100 ms) and loses none that are still in the window. FILE is JSON:
{"version":1,"network":"NAME","stream":"STREAM","positions":
[{"producer":"12D3KooW...","epoch":N,"seq":N}]}, one entry per producer,
the datum's run (epoch) and sequence number in it.`,
		example: `  mosaik-node consume ticks --network demo --bootstrap ADDR --count 10
  mosaik-node consume logs --network ops --require-ticket-issuer 12D3KooW...
  mosaik-node consume logs --network ops --bootstrap ADDR --position-file logs.pos >> logs.txt`,
	},
	{
		name: "catalog", use: "catalog --network NAME",
		short: "Join the network, wait, and print its catalog",
		long: `Join the network, collect the catalog for --wait, and print it: a table,
or one JSON document with --json. With --bootstrap, exits 1 with each
dial's error when no bootstrap peer is reachable.`,
		example: `  mosaik-node catalog --network demo --bootstrap ADDR
  mosaik-node catalog --network demo --bootstrap ADDR --json --wait 5s`,
	},
}

var mapCommands = []nodeSpec{
	{name: "map put", use: "put NAME KEY VALUE", short: "Set a key of a replicated map; prints the version",
		example: `  mosaik-node map put orders eth 3124 --network demo --bootstrap ADDR`},
	{name: "map get", use: "get NAME KEY", short: "Print a key's value (a linearizable read)",
		example: `  mosaik-node map get orders eth --network demo --bootstrap ADDR`},
	{name: "map del", use: "del NAME KEY", short: "Remove a key; prints the version",
		example: `  mosaik-node map del orders eth --network demo --bootstrap ADDR`},
	{name: "map list", use: "list NAME", short: "Print the whole map (KEY<TAB>VALUE lines; fields with tabs, newlines or control characters Go-quoted; --json exact)",
		example: `  mosaik-node map list orders --json --network demo --bootstrap ADDR`},
	{name: "map watch", use: "watch NAME", short: "Print one line per change until interrupted",
		example: `  mosaik-node map watch orders --network demo --bootstrap ADDR`},
}

// registerCompletions completes the values of the node flags that take
// one of a few words.
func registerCompletions(c *cobra.Command) {
	words := map[string][]string{
		"log-level":      {"debug", "info", "warn", "error"},
		"log-format":     {"text", "json"},
		"profile":        {"default", "fast"},
		"gossip-signing": {"none", "strict"},
		"rendezvous":     {"off", "public"},
	}
	for name, ws := range words {
		if c.Flags().Lookup(name) != nil {
			_ = c.RegisterFlagCompletionFunc(name, cobra.FixedCompletions(ws, cobra.ShellCompDirectiveNoFileComp))
		}
	}
}

func versionCmd(env Env) *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print the module, commit, Go and protocol versions (also --version)",
		Example: `  mosaik-node version`,
		Args:    noArgs,
		RunE: func(*cobra.Command, []string) error {
			printVersion(env.Stdout)
			return nil
		},
	}
}

func demoCmd(env Env) *cobra.Command {
	var duration time.Duration
	var nodes int
	var logLevel string
	c := &cobra.Command{
		Use:   "demo",
		Short: "Run a local network on 127.0.0.1 and narrate it",
		Long: `Run a small network of nodes on 127.0.0.1, narrate what happens
(discovery, streaming, a failover), then print a summary.`,
		Example: `  mosaik-node demo
  mosaik-node demo --duration 30s --nodes 3`,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			var lvl slog.Level
			if err := lvl.UnmarshalText([]byte(logLevel)); err != nil {
				return usagef("--log-level %q: want debug, info, warn or error", logLevel)
			}
			if duration < 2*time.Second || nodes < 0 || nodes > demo.MaxExtra {
				return usagef("demo: --duration must be at least 2s and --nodes within [0, %d]", demo.MaxExtra)
			}
			log := slog.New(slog.NewTextHandler(env.Stderr, &slog.HandlerOptions{Level: lvl}))
			err := demo.Run(c.Context(), env.Stdout, demo.Config{Nodes: nodes, Duration: duration, Logger: log})
			if errors.Is(err, context.Canceled) {
				return nil // interrupted: the summary so far was printed
			}
			return err
		},
	}
	fs := c.Flags()
	fs.DurationVar(&duration, "duration", 10*time.Second, "how long the demo streams data")
	fs.IntVar(&nodes, "nodes", 0, fmt.Sprintf("extra nodes to add to the demo network, at most %d (0: the fixed layout only)", demo.MaxExtra))
	fs.StringVar(&logLevel, "log-level", "warn", "library log level")
	inGroup(fs, groupLog, "log-level")
	registerCompletions(c)
	return c
}
