// Command orderbook is a Go port of mosaik's orderbook example: matcher
// nodes share a limit order book as a replicated state machine (a group),
// trader nodes send orders on a stream, and the leader reads new fills with
// a linearizable query and publishes them on another stream, which a tape
// node prints.
//
//	go run ./examples/orderbook
//
// Every node runs in this process on 127.0.0.1; they find each other from
// one bootstrap address, as separate machines would.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"time"
)

func main() {
	cfg := defaultConfig()
	flag.IntVar(&cfg.Matchers, "matchers", cfg.Matchers, "matcher nodes sharing the order book group")
	flag.IntVar(&cfg.Traders, "traders", cfg.Traders, "trader nodes sending orders")
	flag.IntVar(&cfg.Orders, "orders", cfg.Orders, "orders per trader")
	flag.DurationVar(&cfg.Timeout, "timeout", cfg.Timeout, "give up after this long")
	flag.BoolVar(&cfg.Failover, "failover", cfg.Failover, "close the leader matcher half-way through the orders")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if _, err := run(ctx, cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "orderbook:", err)
		os.Exit(1)
	}
}

// config sizes a run.
type config struct {
	Network  string
	Matchers int
	Traders  int
	Orders   int // per trader
	Timeout  time.Duration
	Failover bool
	Out      io.Writer
}

func defaultConfig() config {
	return config{Network: "orderbook-example", Matchers: 3, Traders: 2, Orders: 25, Timeout: 90 * time.Second, Failover: true}
}
