package groups

import (
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
)

// A wipe (or force) starts a new raft node: a conf change proposed
// before it, and members noticed absent from the old configuration, are
// forgotten with it.
func TestCore_WipeForgetsConfChangeAndAbsentMembers(t *testing.T) {
	n := newMemNet()
	g := joinCounter(t, n.service(t, "0", false))
	if err := g.When().IsLeader(tctx(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	type left struct {
		ccAt   int64
		absent int
	}
	got := make(chan left, 1)
	err := g.c.do(tctx(t, 5*time.Second), func() {
		g.c.ccAt = g.c.now
		g.c.absent[42] = 1
		g.c.wipe("test", 0)
		got <- left{g.c.ccAt, len(g.c.absent)}
	})
	if err != nil {
		t.Fatal(err)
	}
	if l := <-got; l.ccAt != 0 || l.absent != 0 {
		t.Fatalf("after a wipe: conf change proposed at tick %d, %d absent members remembered", l.ccAt, l.absent)
	}
}

// A snapshot that moves the applied index far ahead drops the recently
// applied entries its window no longer covers.
func TestCore_SnapshotJumpTrimsRecent(t *testing.T) {
	c := handCore(t, "a")
	data, err := c.buildSnapshotData()
	if err != nil {
		t.Fatal(err)
	}
	for i := uint64(1); i <= 5000; i++ {
		c.recent[i] = [2]uint64{1, i}
	}
	const at = 10000
	c.recent[at-10] = [2]uint64{1, 1} // inside the window after the jump
	snap := &raftpb.Snapshot{Data: data, Metadata: &raftpb.SnapshotMetadata{
		Index: new(uint64(at)), Term: new(uint64(1)), ConfState: &raftpb.ConfState{Voters: []uint64{c.selfID}},
	}}
	if err := c.installSnapshot(snap); err != nil {
		t.Fatal(err)
	}
	if len(c.recent) != 1 {
		t.Fatalf("%d recently applied entries kept after a snapshot at %d, want the 1 inside the window", len(c.recent), at)
	}
	if _, ok := c.recent[at-10]; !ok {
		t.Fatal("an entry inside the window was dropped")
	}
}
