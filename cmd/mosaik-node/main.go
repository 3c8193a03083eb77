// Command mosaik-node is the mosaik-go reference node: it runs a node,
// hosts and edits replicated collections, produces from stdin, consumes
// to stdout, prints the catalog, issues tickets, serves a status page and
// metrics, and runs a local demo.
//
//	mosaik-node demo
//	mosaik-node run --network NAME [--listen MA]... [--bootstrap MA]... [--tags a,b] [--key FILE] [--http ADDR]
//	                [--replicate map:NAME]... [--data-dir DIR] [--init]
//	mosaik-node produce STREAM ...   (stdin lines → datums)
//	mosaik-node consume STREAM ...   (datums → stdout lines)
//	mosaik-node catalog --wait 3s --json ...
//	mosaik-node map put NAME KEY VALUE | get NAME KEY | del NAME KEY | list NAME [--json] | watch NAME
//	mosaik-node keygen --out FILE | id --key FILE | ticket issue ... | ticket inspect FILE
//	mosaik-node config show | version | help [COMMAND] | completion bash|zsh|fish
//
// 'mosaik-node help COMMAND' shows a command's description, its flags by
// group with their defaults, and examples.
//
// Logs go to stderr; stdout carries only data. Exit codes: 0 success,
// 1 failure, 2 bad flags, configuration, key file or a --listen port in
// use.
//
// The first SIGINT or SIGTERM ends the command gracefully (the node
// announces its departure and closes; a producer delivers what it has
// queued), with exit code 0. A second one exits at once, without the
// departure, with 128 + the signal number (130 for SIGINT, 143 for
// SIGTERM), as a shell reports a process killed by that signal. All the
// work is in package internal/cli.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/mosaik-go/mosaik/cmd/mosaik-node/internal/cli"
)

func main() {
	// A closed stdout (consume | head) is an EPIPE error that consume
	// ends on cleanly, saving its positions, instead of a SIGPIPE that
	// kills the process before it departs.
	signal.Ignore(syscall.SIGPIPE)
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-sigs
		cli.Notice(os.Stderr, fmt.Sprintf("%v: shutting down (again to exit at once)", s))
		cancel()
		s = <-sigs
		cli.Notice(os.Stderr, fmt.Sprintf("second %v: exiting at once", s))
		code := 130
		if sn, ok := s.(syscall.Signal); ok {
			code = 128 + int(sn)
		}
		os.Exit(code)
	}()
	code := cli.Main(ctx, os.Args[1:], cli.Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv, Process: true})
	cancel()
	os.Exit(code)
}
