// Command groupchat is a Go port of mosaik's group-chat example: a chat
// room with no server, built on two replicated collections that every
// participant opens as a writer: a Map of users (key: the participant's
// peer id) and a Vec of messages, in the one order the group commits them.
//
// Open a few terminals on one machine and join by name:
//
//	go run ./examples/groupchat -name alice
//	go run ./examples/groupchat -name bob
//
// They find each other through a directory in the user's cache dir (one
// file per participant, with its 127.0.0.1 addresses), so no address needs
// to be copied; -room picks another room, -peer adds a bootstrap address.
// Each participant waits until both collections are online, inserts
// itself, prints the participants and the history, sends every line typed,
// reports joins and leaves, and removes itself on Ctrl-C or Ctrl-D.
//
// With no -name it runs a short self-contained demo (three participants in
// this process) and exits:
//
//	go run ./examples/groupchat
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// peerFlags collects repeated -peer flags.
type peerFlags []string

func (p *peerFlags) String() string     { return strings.Join(*p, ",") }
func (p *peerFlags) Set(s string) error { *p = append(*p, s); return nil }

func main() {
	cfg := defaultConfig()
	var peers peerFlags
	var color uint
	var verbose bool
	demoTimeout := 90 * time.Second
	flag.StringVar(&cfg.Name, "name", "", "your nickname; without it, run the three-participant demo and exit")
	flag.UintVar(&color, "color", uint(cfg.Color), "ANSI colour of your name (31 red, 32 green, 33 yellow, 34 blue, 35 magenta, 36 cyan; 0 none)")
	flag.StringVar(&cfg.Room, "room", cfg.Room, "room name: everyone in the same room chats together")
	flag.StringVar(&cfg.Dir, "dir", "", "directory where participants on this machine find each other (default: per room, in the user's cache dir)")
	flag.Var(&peers, "peer", "bootstrap address /ip4/…/tcp/…/p2p/<peer id> (repeatable)")
	flag.StringVar(&cfg.Listen, "listen", cfg.Listen, "listen address")
	flag.BoolVar(&verbose, "v", false, "log the node's warnings to stderr")
	flag.DurationVar(&demoTimeout, "timeout", demoTimeout, "give the demo up after this long")
	flag.Parse()
	if color > 255 {
		fmt.Fprintln(os.Stderr, "groupchat: -color must be at most 255")
		os.Exit(2)
	}
	cfg.Color, cfg.Peers = uint8(color), peers
	if verbose {
		cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	if cfg.Name == "" {
		_, err = runDemo(ctx, demoTimeout, os.Stdout)
	} else {
		if fi, serr := os.Stdin.Stat(); serr == nil && fi.Mode()&os.ModeCharDevice != 0 {
			cfg.EraseEcho = true
		}
		err = runChat(ctx, cfg, os.Stdin, os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "groupchat:", err)
		os.Exit(1)
	}
}
