package node_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/mosaik-go/mosaik/catalog/discovery"
	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/node"
)

// BenchmarkConvergence measures the time from starting N nodes (each given
// only the bootstrap node's address) until every catalog holds all N
// entries, with the test profile. Reported as ms-to-converge; ns/op also
// includes node start-up.
func BenchmarkConvergence(b *testing.B) {
	profiles := []struct {
		name string
		opts []node.Option
	}{
		// Production timings: 30 s heartbeats, 1 s gossipsub heartbeat.
		{"default", []node.Option{node.WithDiscoveryParams(discovery.DefaultParams())}},
		// The test profile: 1 s heartbeats, gossipsub mesh degree 3.
		{"fast", []node.Option{node.WithTestProfile()}},
	}
	for _, prof := range profiles {
		for _, n := range []int{10, 25, 50} {
			b.Run(fmt.Sprintf("profile=%s/N=%d", prof.name, n), func(b *testing.B) { benchConvergence(b, n, prof.opts) })
		}
	}
}

func benchConvergence(b *testing.B, n int, profile []node.Option) {
	{
		{
			var total time.Duration
			for b.Loop() {
				b.StopTimer()
				boot := mustNode(b, "bench", profile...)
				nodes := []*node.Node{boot}
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
				total += time.Since(start)
				b.StopTimer()
				for _, x := range nodes {
					_ = x.Close()
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms-to-converge")
		}
	}
}

func mustNode(b *testing.B, network string, opts ...node.Option) *node.Node {
	b.Helper()
	n, err := node.New(network, append([]node.Option{loopback, node.WithLogger(testutil.Logger())}, opts...)...)
	if err != nil {
		b.Fatal(err)
	}
	return n
}
