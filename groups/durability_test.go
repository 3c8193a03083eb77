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

// A voter restarted over its log while the others keep their leader skips
// most of its first election timeout (maybeResume) and still leaves that
// leader alone: the others heard from it within an election timeout and
// refuse the restarted voter's pre-vote (PreVote with CheckQuorum), so
// the leader and its term stay. Five restarts of a follower.
func TestDurability_RestartedVoterKeepsTheLeader(t *testing.T) {
	stores := &keptStores{m: map[string]*memStore{}}
	n := newMemNet()
	names := []string{"0", "1", "2"}
	var gs []*Group[int64, struct{}, int64]
	var svcs []*Service
	for _, name := range names {
		s := n.service(t, name, false)
		svcs = append(svcs, s)
		gs = append(gs, joinCounter(t, s, stores.opener(name)))
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return voters(gs[0]) == 3 }, "three voters")
	lead := -1
	testutil.Eventually(t, 10*time.Second, func() bool {
		for i, g := range gs {
			if g.IsLeader() {
				lead = i
				return true
			}
		}
		return false
	}, "a leader")
	term := func() uint64 { return svcs[lead].Status()[0].Term }
	t0 := term()
	f := (lead + 1) % len(names)
	for r := range 5 {
		_ = svcs[f].Close() // a log store keeps its membership
		svcs[f] = n.service(t, names[f], false)
		gs[f] = joinCounter(t, svcs[f], stores.opener(names[f]))
		if err := gs[f].When().LeaderIs(tctx(t, 10*time.Second), svcs[lead].self); err != nil {
			t.Fatalf("restart %d: the restarted voter does not follow the leader: %v", r, err)
		}
		if _, err := gs[f].Execute(tctx(t, 5*time.Second), 1); err != nil {
			t.Fatalf("restart %d: %v", r, err)
		}
		if !gs[lead].IsLeader() || term() != t0 {
			t.Fatalf("restart %d: the leader lost its lead or its term moved (%d, was %d)", r, term(), t0)
		}
	}
}
