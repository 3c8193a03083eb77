package groups

import (
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/internal/testutil"
)

// A learner that holds nothing of the log is not ready to vote. The
// leader of a young cluster (commit ≤ 16) used to count every learner as
// caught up (Match + 16 ≥ commit holds for Match 0), so it promoted two
// blank learners at once: the joint step {0,1,2}/{0} commits on n0 alone,
// and with n0 lost inside it n1 and n2, holding no state and no
// configuration, could never elect a leader or force an epoch
// (TestJoint_CutAnywhereInJointStep/0 failed that way about once in 60
// runs). Here the leader's raft frames to n1 and n2 are held: they stay
// learners however many ticks pass, and are promoted once the frames flow.
func TestPromote_BlankLearnersStayLearners(t *testing.T) {
	n := newMemNet()
	clk := newTickDriver(t)
	s0, s1, s2 := n.service(t, "0", false), n.service(t, "1", false), n.service(t, "2", false)
	g0 := joinCounter(t, s0, clk.option())
	if err := g0.When().IsLeader(tctx(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	leader := s0.self
	n.setDropFrame(func(from, to peer.ID, kind byte, _ []byte) bool {
		return from == leader && kind == kindRaft
	})
	joinCounter(t, s1, clk.option())
	joinCounter(t, s2, clk.option())
	conf := func() (voters, outgoing, learners []uint64) {
		onCore(t, g0, func(c *groupCore) {
			voters = slices.Clone(c.conf.GetVoters())
			outgoing = slices.Clone(c.conf.GetVotersOutgoing())
			learners = slices.Clone(c.conf.GetLearners())
		})
		return
	}
	testutil.Eventually(t, 20*time.Second, func() bool {
		v, _, l := conf()
		return len(v)+len(l) == 3
	}, "n1 and n2 never joined the configuration")
	from := clk.n.Load()
	p := TestParams()
	wait := int64(p.ticks(p.RemoveAfter))
	for clk.n.Load()-from < wait {
		if v, o, _ := conf(); len(v) != 1 || len(o) != 0 {
			t.Fatalf("blank learners promoted %d ticks after they were added: voters %v, outgoing %v", clk.n.Load()-from, v, o)
		}
		time.Sleep(time.Millisecond) // poll the injected clock's progress
	}
	n.setDropFrame(nil)
	testutil.Eventually(t, 20*time.Second, func() bool {
		v, o, _ := conf()
		return len(v) == 3 && len(o) == 0
	}, "n1 and n2 not promoted once they caught up")
}
