// Command mosaik-node is the mosaik-go reference node.
//
//	mosaik-node demo [--nodes N]     run the local discovery demo
//	mosaik-node run --network NAME [--listen MA]... [--bootstrap MA]... [--tags a,b] [--key FILE]
//	mosaik-node keygen --out FILE    create an ed25519 identity
//	mosaik-node id --key FILE        print the peer ID of an identity
//
// Logs go to stderr; stdout carries only data.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/mosaik-go/mosaik/internal/demo"
	"github.com/mosaik-go/mosaik/internal/keyfile"
	"github.com/mosaik-go/mosaik/node"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "mosaik-node:", err)
		os.Exit(1)
	}
}

const usage = `usage: mosaik-node <command> [flags]

commands:
  demo     run a local network of nodes on 127.0.0.1 and narrate discovery
  run      run a node until SIGINT or SIGTERM
  keygen   create an ed25519 key file (--out FILE)
  id       print the peer ID of a key file (--key FILE)

run 'mosaik-node <command> -h' for the flags of a command.`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return errors.New("no command given")
	}
	cmd, args := args[0], args[1:]
	fs := flag.NewFlagSet("mosaik-node "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	logLevel := fs.String("log-level", "warn", "log level: debug|info|warn|error")
	switch cmd {
	case "demo":
		nodes := fs.Int("nodes", 8, "number of nodes, the bootstrap included (>= 3)")
		if err := fs.Parse(args); err != nil {
			return err
		}
		return demo.Run(ctx, stdout, demo.Config{Nodes: *nodes, Logger: logger(stderr, *logLevel)})
	case "run":
		network := fs.String("network", "", "network to join (required)")
		var listen, boot multiFlag
		fs.Var(&listen, "listen", "multiaddr to listen on (repeatable)")
		fs.Var(&boot, "bootstrap", "bootstrap multiaddr ending in /p2p/ID (repeatable)")
		tags := fs.String("tags", "", "comma-separated tags")
		keyPath := fs.String("key", "", "ed25519 key file (created with mode 0600 when missing)")
		if err := fs.Parse(args); err != nil {
			return err
		}
		if *network == "" {
			return errors.New("run: --network is required")
		}
		opts := []node.Option{node.WithLogger(logger(stderr, *logLevel)), node.WithBootstrap(boot...)}
		if len(listen) > 0 {
			opts = append(opts, node.WithListenAddrs(listen...))
		}
		if *tags != "" {
			opts = append(opts, node.WithTags(strings.Split(*tags, ",")...))
		}
		if *keyPath != "" {
			k, err := keyfile.LoadOrCreate(*keyPath)
			if err != nil {
				return err
			}
			opts = append(opts, node.WithIdentity(k))
		}
		n, err := node.New(*network, opts...)
		if err != nil {
			return err
		}
		for _, a := range n.Addrs() {
			fmt.Fprintln(stderr, "listening on", a)
		}
		<-ctx.Done()
		return n.Close()
	case "keygen":
		out := fs.String("out", "", "key file to create")
		if err := fs.Parse(args); err != nil {
			return err
		}
		if *out == "" {
			return errors.New("keygen: --out is required")
		}
		id, err := keyfile.Create(*out)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, id)
		return nil
	case "id":
		keyPath := fs.String("key", "", "key file")
		if err := fs.Parse(args); err != nil {
			return err
		}
		id, err := keyfile.PeerID(*keyPath)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, id)
		return nil
	case "-h", "--help", "help":
		fmt.Fprintln(stdout, usage)
		return nil
	}
	fmt.Fprintln(stderr, usage)
	return fmt.Errorf("unknown command %q", cmd)
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(s string) error { *m = append(*m, s); return nil }

func logger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelWarn
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l}))
}
