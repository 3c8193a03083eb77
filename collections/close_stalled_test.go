package collections_test

import (
	"errors"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/collections"
	"github.com/mosaik-go/mosaik/groups"
	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/node"
)

// TestMap_CloseEndsAStalledMutation: a mutation whose commit is stalled
// (its replica, a follower, cannot reach the leader: a one-way cut, so the
// follower still hears the leader and stays a follower) ends as soon as
// its handle closes, with ErrTerminated and MayApply, while a second
// handle on the same node keeps the replica and works once the cut heals.
// The handle-level check (bind) is unit-tested in bind_internal_test.go;
// this is the same path through a real group and its bonds.
func TestMap_CloseEndsAStalledMutation(t *testing.T) {
	c := newCuts()
	name := freshName(t)
	mc := startMapCluster[int64](t, 3, name, node.WithGroupsOptions(groups.WithFaultHook(c.hook)))
	l := -1
	testutil.Eventually(t, 20*time.Second, func() bool { l = mc.leader(); return l >= 0 }, "a leader")
	f := (l + 1) % len(mc.nodes)
	keep, err := collections.NewMap[string, int64](mc.nodes[f], name, fastGroup)
	if err != nil {
		t.Fatal(err)
	}
	defer keep.Close()
	if err := keep.When().Online(tctx(t, 20*time.Second)); err != nil {
		t.Fatal(err)
	}

	c.mu.Lock()
	c.cut[[2]peer.ID{mc.nodes[f].ID(), mc.nodes[l].ID()}] = true
	c.mu.Unlock()
	done := make(chan error, 1)
	go func() {
		_, err := mc.maps[f].Insert(tctx(t, 60*time.Second), "k", 1)
		done <- err
	}()
	// The mutation is stalled, not refused: it is still under way after a
	// while (a bounded look, not a wait for a condition).
	select {
	case err := <-done:
		t.Fatalf("the mutation ended under the cut, before its handle closed: %v", err)
	case <-time.After(testutil.Scale(500 * time.Millisecond)):
	}

	closed := time.Now()
	if err := mc.maps[f].Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		var me *collections.MutationError[collections.KV[string, int64]]
		if !errors.Is(err, collections.ErrTerminated) || !errors.As(err, &me) || !me.MayApply {
			t.Fatalf("the stalled mutation ended with %v, want ErrTerminated with MayApply", err)
		}
		t.Logf("ended %v after its handle closed", time.Since(closed))
	case <-time.After(testutil.Scale(5 * time.Second)):
		t.Fatal("the stalled mutation outlived its handle's close")
	}

	c.heal()
	if _, err := keep.Insert(tctx(t, 30*time.Second), "k2", 2); err != nil {
		t.Fatalf("the handle kept open: %v", err)
	}
}
