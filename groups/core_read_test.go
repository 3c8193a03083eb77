package groups

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/mosaik-go/mosaik/internal/testutil"
)

// A follower's strong read whose read-index request to the leader is lost
// (raft sends it once and never again) is asked again while the query's
// timeout runs, and succeeds; it used to fail with "read index timed
// out" after Params.QueryTimeout.
func TestStrongRead_RetriesLostReadIndex(t *testing.T) {
	n := newMemNet()
	g0 := joinCounter(t, n.service(t, "0", false))
	if err := g0.When().IsLeader(tctx(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	g1 := joinCounter(t, n.service(t, "1", false))
	joinCounter(t, n.service(t, "2", false))
	testutil.Eventually(t, 20*time.Second, func() bool { return voters(g0) == 3 }, "3 voters")
	if _, err := g0.Execute(tctx(t, 5*time.Second), 7); err != nil {
		t.Fatal(err)
	}
	if err := g1.When().Online(tctx(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	follower := g1.c.self
	var dropped atomic.Int32
	n.setDropFrame(func(from, _ peer.ID, kind byte, body []byte) bool {
		if from != follower || dropped.Load() > 0 {
			return false
		}
		m, ok := raftOf(kind, body)
		if ok && m.GetType() == raftpb.MessageType_MsgReadIndex {
			dropped.Add(1)
			return true
		}
		return false
	})
	v, _, err := g1.Query(tctx(t, 5*time.Second), struct{}{}, Strong)
	if err != nil || v != 7 {
		t.Fatalf("strong read on the follower: %d (%v), want 7", v, err)
	}
	if dropped.Load() != 1 {
		t.Fatalf("%d read-index requests dropped, want 1: the test did not lose the first", dropped.Load())
	}
}

// A node that has just joined knows its leader (from a heartbeat or its
// first append) before it has applied the entries that put the leader in
// its configuration, and raft drops a read-index answer from a peer
// outside it. A strong read made then used to lose its first answer and
// wait for the retry, two heartbeats (a second with the default
// parameters: most `mosaik-node map get` calls took 1.5 s instead of
// 0.5). It now asks once the leader is in its configuration, so one
// request serves it. The newcomer's appends are held back while three
// heartbeats reach it, so the read is made in that state.
func TestStrongRead_NewMemberAsksOnceTheLeaderIsInItsConfiguration(t *testing.T) {
	n := newMemNet()
	g0 := joinCounter(t, n.service(t, "0", false))
	if err := g0.When().IsLeader(tctx(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := g0.Execute(tctx(t, 5*time.Second), 7); err != nil {
		t.Fatal(err)
	}
	s1 := n.service(t, "1", false)
	newcomer := s1.self
	var holdAppends atomic.Bool
	holdAppends.Store(true)
	var heartbeats, readIndexes atomic.Int32
	n.setDropFrame(func(from, to peer.ID, kind byte, body []byte) bool {
		m, ok := raftOf(kind, body)
		if !ok || (from != newcomer && to != newcomer) {
			return false
		}
		switch {
		case to == newcomer && m.GetType() == raftpb.MessageType_MsgApp:
			return holdAppends.Load()
		case to == newcomer && m.GetType() == raftpb.MessageType_MsgHeartbeat:
			heartbeats.Add(1)
		case from == newcomer && m.GetType() == raftpb.MessageType_MsgReadIndex:
			readIndexes.Add(1)
		}
		return false
	})
	g1 := joinCounter(t, s1, WithRole(RoleReader))
	if err := g1.When().Online(tctx(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	type result struct {
		v   int64
		err error
	}
	read := make(chan result, 1)
	go func() {
		v, _, err := g1.Query(tctx(t, 5*time.Second), struct{}{}, Strong)
		read <- result{v, err}
	}()
	seen := heartbeats.Load()
	testutil.Eventually(t, 5*time.Second, func() bool { return heartbeats.Load() >= seen+3 },
		"three heartbeats to the newcomer while its appends are held (%d)", testutil.Lazy(heartbeats.Load))
	holdAppends.Store(false)
	r := <-read
	if r.err != nil || r.v != 7 {
		t.Fatalf("strong read on the newcomer: %d (%v), want 7", r.v, r.err)
	}
	if got := readIndexes.Load(); got != 1 {
		t.Fatalf("the newcomer sent %d read-index requests for one read, want 1", got)
	}
}

// A follower that has its read index but is cut off before it has applied
// up to it fails the strong read once QueryTimeout has passed without a
// leader, rather than waiting for the caller's ctx alone (it used to wait
// for good with a ctx without deadline).
func TestStrongRead_CutOffAfterTheReadIndexFailsOffline(t *testing.T) {
	n := newMemNet()
	g0 := joinCounter(t, n.service(t, "0", false))
	if err := g0.When().IsLeader(tctx(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	g1 := joinCounter(t, n.service(t, "1", false))
	g2 := joinCounter(t, n.service(t, "2", false))
	testutil.Eventually(t, 20*time.Second, func() bool { return voters(g0) == 3 }, "3 voters")
	if err := g1.When().Online(tctx(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	follower := g1.c.self
	// Appends to the follower are lost from now on: it confirms reads but
	// cannot apply what the others commit.
	n.setDropFrame(func(_, to peer.ID, kind byte, body []byte) bool {
		m, ok := raftOf(kind, body)
		return ok && to == follower && m.GetType() == raftpb.MessageType_MsgApp
	})
	if _, err := g0.Execute(tctx(t, 5*time.Second), 7); err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		_, _, err := g1.Query(context.Background(), struct{}{}, Strong) // no deadline of its own
		got <- err
	}()
	// Once the read waits to apply, cut the follower off.
	testutil.Eventually(t, 5*time.Second, func() bool {
		var have bool
		done := make(chan struct{})
		if g1.c.do(context.Background(), func() {
			for _, rc := range g1.c.reads {
				have = have || rc.have
			}
			close(done)
		}) != nil {
			return false
		}
		<-done
		return have
	}, "the read never got its read index")
	n.partition([]peer.ID{follower}, []peer.ID{g0.c.self, g2.c.self})
	select {
	case err := <-got:
		if !errors.Is(err, ErrOffline) {
			t.Fatalf("strong read on the cut-off follower: %v, want an offline error", err)
		}
	case <-time.After(testutil.Scale(20 * time.Second)):
		t.Fatal("the strong read on the cut-off follower is still waiting")
	}
}
