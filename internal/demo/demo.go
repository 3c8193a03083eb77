// Package demo runs mosaik-go's local demonstration: a small network of
// nodes on 127.0.0.1 that find each other from one bootstrap address, then
// react to a tag change and a departure. cmd/mosaik-node's "demo" command
// calls it; it lives here so that it is tested.
package demo

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/node"
)

// Config tunes the demo.
type Config struct {
	Nodes   int           // nodes to start, the bootstrap included (default 8)
	Network string        // network name (default "mosaik-demo")
	Timeout time.Duration // bound for each phase (default 15 s)
	Logger  *slog.Logger  // library logs (default: discarded)
}

// Run starts the demo network, narrates each phase to w, and closes every
// node before returning. It fails if a phase does not complete in time.
func Run(ctx context.Context, w io.Writer, cfg Config) (err error) {
	if cfg.Nodes == 0 {
		cfg.Nodes = 8
	}
	if cfg.Nodes < 3 {
		return fmt.Errorf("demo: needs at least 3 nodes, got %d", cfg.Nodes)
	}
	if cfg.Network == "" {
		cfg.Network = "mosaik-demo"
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 15 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	start := time.Now()
	say := func(format string, args ...any) {
		fmt.Fprintf(w, "[%7.3fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
	}
	opts := []node.Option{
		node.WithListenAddrs("/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"),
		node.WithTestProfile(), node.WithLogger(cfg.Logger),
	}
	fmt.Fprintf(w, "mosaik-go discovery demo: %d nodes on 127.0.0.1, network %q (%s)\n", cfg.Nodes, cfg.Network, catalog.IDFromString(cfg.Network).Short())
	fmt.Fprintf(w, "every node is given only the bootstrap node's address; they find each other through catalog sync and gossip.\n\n")

	var nodes []*node.Node
	defer func() {
		for i := len(nodes) - 1; i >= 0; i-- {
			if cerr := nodes[i].Close(); cerr != nil && err == nil {
				err = cerr
			}
		}
	}()
	roles := []string{"validator", "indexer", "relay"}
	for i := range cfg.Nodes {
		o := append(slices.Clone(opts), node.WithTags(roles[i%len(roles)]))
		if i > 0 {
			o = append(o, node.WithBootstrapPeers(nodes[0].AddrInfo()))
		}
		n, err := node.New(cfg.Network, o...)
		if err != nil {
			return err
		}
		nodes = append(nodes, n)
		if i == 0 {
			say("bootstrap  %s  listening on %s", short(n.ID().String()), n.Addrs()[0])
		}
	}
	say("started %d more nodes with --bootstrap %s", cfg.Nodes-1, short(nodes[0].ID().String()))

	took, err := waitFor(ctx, cfg.Timeout, func() bool { return complete(nodes, nodes) })
	if err != nil {
		return fmt.Errorf("demo: catalogs did not converge: %w", err)
	}
	say("all %d catalogs complete (%d peers each) after %v", len(nodes), len(nodes)-1, took.Round(time.Millisecond))
	printCatalog(w, nodes[1])

	changer := nodes[2]
	if err := changer.AddTags("leader"); err != nil {
		return err
	}
	leader := catalog.IDFromString("leader")
	took, err = waitFor(ctx, cfg.Timeout, func() bool {
		for _, n := range nodes {
			if e, ok := n.Catalog().Get(changer.ID()); !ok || !e.Entry.HasTag(leader) {
				return false
			}
		}
		return true
	})
	if err != nil {
		return fmt.Errorf("demo: tag change did not spread: %w", err)
	}
	say("node %s added tag \"leader\": every catalog saw it after %v", short(changer.ID().String()), took.Round(time.Millisecond))

	leaver := nodes[len(nodes)-1]
	nodes = nodes[:len(nodes)-1]
	if err := leaver.Close(); err != nil {
		return err
	}
	took, err = waitFor(ctx, cfg.Timeout, func() bool {
		for _, n := range nodes {
			if _, ok := n.Catalog().Get(leaver.ID()); ok {
				return false
			}
		}
		return true
	})
	if err != nil {
		return fmt.Errorf("demo: departure did not spread: %w", err)
	}
	say("node %s closed: its signed departure removed it from every catalog after %v", short(leaver.ID().String()), took.Round(time.Millisecond))
	st := nodes[0].Discovery().Stats()
	say("bootstrap stats: %d peers added, %d updates, %d syncs served, %d redundant copies ignored, %d invalid inputs rejected",
		st.Added, st.Updated, st.SyncsServed, st.Ignored, st.Rejected)
	fmt.Fprintln(w, "\ndone. Next: `go test -race ./...`, or read README.md for the Go API.")
	return nil
}

func complete(have, want []*node.Node) bool {
	for _, a := range have {
		for _, b := range want {
			if a != b {
				if _, ok := a.Catalog().Get(b.ID()); !ok {
					return false
				}
			}
		}
	}
	return true
}

// waitFor polls cond until it holds, ctx ends or timeout passes.
func waitFor(ctx context.Context, timeout time.Duration, cond func() bool) (time.Duration, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return time.Since(start), ctx.Err()
		case <-tick.C:
		}
	}
	return time.Since(start), nil
}

func printCatalog(w io.Writer, n *node.Node) {
	names := map[catalog.Tag]string{}
	for _, t := range []string{"validator", "indexer", "relay", "leader"} {
		names[catalog.IDFromString(t)] = t
	}
	fmt.Fprintf(w, "\ncatalog of node %s:\n", short(n.ID().String()))
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  PEER\tTAGS\tADDRS\tVERSION AGE")
	for e := range n.Catalog().All() {
		var tags []string
		for _, t := range e.Entry.Tags {
			if s, ok := names[t]; ok {
				tags = append(tags, s)
			} else {
				tags = append(tags, t.Short())
			}
		}
		fmt.Fprintf(tw, "  %s\t%s\t%d\t%v\n", short(e.Entry.PeerID.String()), strings.Join(tags, ","), len(e.Entry.Addrs),
			time.Since(e.Entry.Version.UpdatedAt()).Round(time.Millisecond))
	}
	_ = tw.Flush()
	fmt.Fprintln(w)
}

func short(s string) string {
	if len(s) <= 10 {
		return s
	}
	return "…" + s[len(s)-8:]
}
