// Command mosaik-node is the mosaik-go reference node: it runs a node,
// hosts and edits replicated collections, produces from stdin, consumes
// to stdout, prints the catalog, issues tickets, serves a status page and
// metrics, and runs a local demo.
//
//	mosaik-node demo
//	mosaik-node run --network NAME [--listen MA]... [--bootstrap MA]... [--tags a,b] [--key FILE] [--http ADDR]
//	                [--replicate map:NAME]... [--data-dir DIR]
//	mosaik-node produce STREAM ...   (stdin lines → datums)
//	mosaik-node consume STREAM ...   (datums → stdout lines)
//	mosaik-node catalog --wait 3s --json ...
//	mosaik-node map put NAME KEY VALUE | get NAME KEY | del NAME KEY | list NAME [--json] | watch NAME
//	mosaik-node keygen --out FILE | id --key FILE | ticket issue ...
//
// Logs go to stderr; stdout carries only data. Exit codes: 0 success,
// 1 failure, 2 bad flags, configuration or key file. All the work is in
// package internal/cli.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/mosaik-go/mosaik/cmd/mosaik-node/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], cli.Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv})
	stop()
	os.Exit(code)
}
