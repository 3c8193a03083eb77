package groups

import (
	"math"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/mosaik-go/mosaik/groups/pb"
	"github.com/mosaik-go/mosaik/internal/testutil"
)

// A leader deposed after proposing a forwarded batch, before its Ready
// gave the batch an index, must not answer NotLeader for it: the origin
// reads NotLeader as "not applied", yet the batch is in the deposed
// leader's log and a later leader may commit it. A batch still queued (never
// proposed) does get NotLeader. The deposition here is a heartbeat of a
// higher term stepped in the same loop turn as the proposal, as when a
// mid-turn flush (maxProposalBytes) is followed by such a frame.
func TestDeposed_ProposedForwardGetsNoNotLeader(t *testing.T) {
	n := newMemNet()
	clk := newTickDriver(t)
	s0, s1 := n.service(t, "0", false), n.service(t, "1", false)
	g0 := joinCounter(t, s0, clk.option())
	if err := g0.When().IsLeader(tctx(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	g1 := joinCounter(t, s1, clk.option())
	var mu sync.Mutex
	notLeader := map[uint64]bool{}
	n.setDropFrame(func(from, to peer.ID, kind byte, body []byte) bool {
		if from == s0.self && to == s1.self && kind == kindNotLeader {
			var m pb.CoreNotLeader
			if proto.Unmarshal(body, &m) == nil {
				mu.Lock()
				notLeader[m.GetSeq()] = true
				mu.Unlock()
			}
		}
		return false
	})
	var id1 uint64
	onCore(t, g1, func(c *groupCore) { id1 = c.selfID })
	testutil.Eventually(t, 20*time.Second, func() bool {
		up := false
		onCore(t, g0, func(c *groupCore) { up = c.isUp(id1) })
		return up
	}, "n1 never bonded with the leader")

	const proposed, queued = math.MaxUint64 - 10, math.MaxUint64 - 5 // seqs n1 never used
	cmd, err := CBOR[int64]{}.Encode(5)
	if err != nil {
		t.Fatal(err)
	}
	onCore(t, g0, func(c *groupCore) {
		if c.state != raft.StateLeader {
			t.Fatal("n0 is not the leader")
		}
		c.onForward(s1.self, &pb.CoreForward{Origin: id1, Seq: proposed, Commands: [][]byte{cmd}})
		c.flushProposals()
		c.onForward(s1.self, &pb.CoreForward{Origin: id1, Seq: queued, Commands: [][]byte{cmd}})
		term := c.rn.BasicStatus().HardState.GetTerm()
		if err := c.rn.Step(&raftpb.Message{Type: raftpb.MessageType_MsgHeartbeat.Enum(), From: new(id1), To: new(c.selfID), Term: new(term + 1)}); err != nil {
			t.Fatal(err)
		}
	})
	testutil.Eventually(t, 10*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return notLeader[queued]
	}, "the queued batch got no NotLeader")
	onCore(t, g0, func(c *groupCore) {}) // the turn that handled the deposition is over
	mu.Lock()
	defer mu.Unlock()
	if notLeader[proposed] {
		t.Fatal("the deposed leader answered NotLeader for a batch it had proposed (it may still commit)")
	}
}
