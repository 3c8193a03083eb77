package node_test

import (
	"testing"
	"time"

	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/node"
)

func TestConvergence_BootstrapAndTenNodes(t *testing.T) {
	boot := startNode(t, "conv")
	nodes := []*node.Node{boot}
	for range 10 {
		nodes = append(nodes, startNode(t, "conv", bootstrapOf(boot)))
	}
	took := testutil.Eventually(t, 5*time.Second, func() bool { return allKnowAll(nodes) },
		"not every catalog holds all 11 entries")
	t.Logf("11 nodes converged in %v", took)
	for _, n := range nodes {
		if got := n.Catalog().Len(); got != 10 {
			t.Errorf("node %s holds %d remote entries, want 10", n.ID(), got)
		}
	}
}
