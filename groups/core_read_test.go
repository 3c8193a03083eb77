package groups

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/mosaik-go/mosaik/groups/pb"
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
		if from != follower || kind != kindRaft || dropped.Load() > 0 {
			return false
		}
		var env pb.CoreRaft
		var m raftpb.Message
		if proto.Unmarshal(body, &env) != nil || proto.Unmarshal(env.GetMessage(), &m) != nil {
			return false
		}
		if m.GetType() == raftpb.MessageType_MsgReadIndex {
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
