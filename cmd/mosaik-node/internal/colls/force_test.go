package colls

import (
	"crypto/rand"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/mosaik-go/mosaik/collections"
	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/node"
)

// Three durable replicas; two are lost for good. The third, restarted
// with its data dir, finds no leader (a minority never commits), and
// ForceWhenLeaderless restores the map from its state as a new epoch.
func TestReplicas_ForceWhenLeaderless(t *testing.T) {
	dir := t.TempDir()
	keys := make([]crypto.PrivKey, 3)
	for i := range keys {
		k, _, err := crypto.GenerateEd25519Key(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		keys[i] = k
	}
	start := func(i int, opts ...node.Option) (*node.Node, *Replicas) {
		n := startNode(t, append(opts, node.WithIdentity(keys[i]), node.WithDataDir(filepath.Join(dir, fmt.Sprint(i))))...)
		reps, err := Replicate(n, []Spec{{"map", "orders"}}, fast)
		if err != nil {
			t.Fatal(err)
		}
		return n, reps
	}
	n0, r0 := start(0)
	var nodes []*node.Node
	var reps []*Replicas
	for i := 1; i < 3; i++ {
		n, r := start(i, node.WithBootstrapPeers(n0.AddrInfo()))
		nodes, reps = append(nodes, n), append(reps, r)
	}
	testutil.Eventually(t, 30*time.Second, func() bool {
		for _, n := range append([]*node.Node{n0}, nodes...) {
			st := n.Groups().Status()
			if len(st) != 1 || st[0].Voters != 3 || st[0].Leader == "" {
				return false
			}
		}
		return true
	}, "three voters and a leader on every replica")
	m := r0.cs[0].(*collections.Map[string, string])
	if _, err := m.Insert(tctx(t, 10*time.Second), "eth", "3124"); err != nil {
		t.Fatal(err)
	}
	// Lose two replicas for good, then restart the third. The nodes close
	// first: with a data dir a node's Close keeps its groups' membership
	// (no graceful leave), so the survivor sees a crash. (Closing the
	// replica first would leave the group gracefully.)
	for i := range nodes {
		_ = nodes[i].Close()
		_ = reps[i].Close()
	}
	_ = n0.Close()
	_ = r0.Close()
	_, r0 = start(0)
	defer r0.Close()
	m = r0.cs[0].(*collections.Map[string, string])
	if err := m.When().Online(tctx(t, 3*time.Second)); err == nil {
		t.Fatal("the survivor of a lost majority found a leader by itself")
	}
	r0.ForceWhenLeaderless(500*time.Millisecond, slog.New(slog.DiscardHandler))
	if err := m.When().Online(tctx(t, 15*time.Second)); err != nil {
		t.Fatal("no new epoch forced:", err)
	}
	if v, ok := m.Get("eth"); !ok || v != "3124" {
		t.Fatalf("the forced epoch lost the map: eth = %q, %v", v, ok)
	}
	if _, err := m.Insert(tctx(t, 10*time.Second), "btc", "1"); err != nil {
		t.Fatal("the forced epoch does not commit:", err)
	}
}
