package groups

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/internal/testutil"
)

// keptStores are log stores that outlive their services, as a data dir
// does: a restarted node reopens its own.
type keptStores struct {
	mu sync.Mutex
	m  map[string]*memStore
}

func (k *keptStores) opener(node string) Option {
	return withLogStore(func(_ catalog.ID, fresh bool) (logStore, error) {
		k.mu.Lock()
		defer k.mu.Unlock()
		if k.m[node] == nil || fresh {
			k.m[node] = newMemStore()
		}
		return k.m[node], nil
	})
}

// Nodes restarted over the log stores they had resume their cluster: the
// same epoch, the state rebuilt from snapshot and log, and new commands
// commit.
func TestDurability_RestartAll(t *testing.T) {
	// 300 commands pass SnapshotEntries (resume from a snapshot), 20 do
	// not (resume from the log and its epoch entry).
	for _, count := range []int{300, 20} {
		t.Run(fmt.Sprint(count), func(t *testing.T) { restartAll(t, count) })
	}
}

func restartAll(t *testing.T, count int) {
	stores := &keptStores{m: map[string]*memStore{}}
	names := []string{"0", "1", "2"}
	start := func(n *memNet) []*Group[int64, struct{}, int64] {
		var gs []*Group[int64, struct{}, int64]
		for _, name := range names {
			gs = append(gs, joinCounter(t, n.service(t, name, false), stores.opener(name)))
		}
		for _, g := range gs {
			if err := g.When().Online(tctx(t, 10*time.Second)); err != nil {
				t.Fatal(err)
			}
		}
		return gs
	}
	n := newMemNet()
	gs := start(n)
	testutil.Eventually(t, 10*time.Second, func() bool { return voters(gs[0]) == 3 }, "three voters")
	cmds := make([]int64, count)
	for i := range cmds {
		cmds[i] = 1
	}
	r, err := gs[1].ExecuteMany(tctx(t, 10*time.Second), cmds)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range gs {
		if err := g.When().Committed(tctx(t, 10*time.Second), r.Last); err != nil {
			t.Fatal(err)
		}
	}
	for _, g := range gs {
		_ = g.s.Close()
	}
	n = newMemNet()
	gs = start(n)
	for i, g := range gs {
		testutil.Eventually(t, 10*time.Second, func() bool {
			v, _, err := g.Query(tctx(t, 2*time.Second), struct{}{}, Strong)
			return err == nil && v == int64(count)
		}, "n%d did not resume its state", i)
	}
	if _, err := gs[2].Execute(tctx(t, 5*time.Second), 5); err != nil {
		t.Fatal(err)
	}
	if v, _, _ := gs[0].Query(tctx(t, 5*time.Second), struct{}{}, Strong); v != int64(count)+5 {
		t.Fatalf("after restart: %d, want %d", v, count+5)
	}
}
