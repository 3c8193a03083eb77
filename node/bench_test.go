package node_test

import (
	"flag"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mosaik-go/mosaik/catalog/discovery"
	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/node"
)

// convergenceSizes are the network sizes of BenchmarkConvergence. The
// default keeps the README's single pass over every benchmark short; the
// figures in BENCHMARKS.md add 25 and 50: -args -convergence.sizes 10,25,50.
var convergenceSizes = flag.String("convergence.sizes", "10", "comma-separated network sizes of BenchmarkConvergence")

// BenchmarkConvergence measures the time from starting N nodes (each given
// only the bootstrap node's address) until every catalog holds all N
// entries. Reported as ms-to-converge; ns/op also includes node start-up.
func BenchmarkConvergence(b *testing.B) {
	profiles := []struct {
		name string
		opts []node.Option
	}{
		// Production timings: 30 s heartbeats, 1 s gossipsub heartbeat.
		{"default", []node.Option{node.WithDiscoveryParams(discovery.DefaultParams())}},
		// The fast profile: 1 s heartbeats, gossipsub mesh degree 3.
		{"fast", []node.Option{node.WithFastProfile()}},
	}
	var sizes []int
	for f := range strings.SplitSeq(*convergenceSizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 2 {
			b.Fatalf("-convergence.sizes: %q is not a network size of at least 2", f)
		}
		sizes = append(sizes, n)
	}
	for _, prof := range profiles {
		for _, n := range sizes {
			b.Run(fmt.Sprintf("profile=%s/N=%d", prof.name, n), func(b *testing.B) { benchConvergence(b, n, prof.opts) })
		}
	}
}

func benchConvergence(b *testing.B, n int, profile []node.Option) {
	var total time.Duration
	for b.Loop() {
		total += convergeOnce(b, n, profile)
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms-to-converge")
}

// convergeOnce starts n nodes, waits until all know all and closes them,
// also when it fails: a failed size must not leave its nodes running under
// the next one.
func convergeOnce(b *testing.B, n int, profile []node.Option) time.Duration {
	b.StopTimer()
	boot := mustNode(b, "bench", profile...)
	nodes := []*node.Node{boot}
	defer func() {
		b.StopTimer()
		for _, x := range nodes {
			_ = x.Close()
		}
		b.StartTimer()
	}()
	b.StartTimer()
	start := time.Now()
	for range n - 1 {
		nodes = append(nodes, mustNode(b, "bench", append(profile, bootstrapOf(boot))...))
	}
	for !allKnowAll(nodes) {
		if time.Since(start) > testutil.Scale(60*time.Second) {
			b.Fatalf("N=%d did not converge in 60 s", n)
		}
		time.Sleep(time.Millisecond) // polling interval of the convergence check
	}
	return time.Since(start)
}

func mustNode(b *testing.B, network string, opts ...node.Option) *node.Node {
	b.Helper()
	n, err := node.New(network, append([]node.Option{loopback, node.WithLogger(testutil.Logger())}, opts...)...)
	if err != nil {
		b.Fatal(err)
	}
	return n
}
