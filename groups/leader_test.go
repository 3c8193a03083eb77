package groups

import (
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/internal/testutil"
)

func joinNoOp(t testing.TB, s *Service, opts ...Option) *Group[struct{}, struct{}, struct{}] {
	t.Helper()
	g, err := Join[struct{}, struct{}, struct{}](s, KeyFromSecret("noop"), NoOp{}, append([]Option{WithParams(TestParams())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Close() })
	return g
}

// Port of mosaik's leader is_elected: the first node leads alone, later
// joiners recognise it without a new election, and when it leaves the
// others agree on one new leader, which a later joiner recognises too.
func TestLeader_IsElected(t *testing.T) {
	n := newMemNet()
	s0 := n.service(t, "0", false)
	g0 := joinNoOp(t, s0)
	if _, ok := g0.Leader(); ok || g0.IsLeader() {
		t.Fatal("a leader right after join")
	}
	if l, err := g0.When().LeaderElected(tctx(t, 10*time.Second)); err != nil || l != s0.self {
		t.Fatalf("leader %v, %v; want n0", l, err)
	}
	v0, _ := g0.c.view.get()
	var gs []*Group[struct{}, struct{}, struct{}]
	for _, name := range []string{"1", "2"} {
		g := joinNoOp(t, n.service(t, name, false))
		if err := g.When().LeaderIs(tctx(t, 10*time.Second), s0.self); err != nil {
			t.Fatalf("n%s does not follow n0: %v", name, err)
		}
		if g.IsLeader() {
			t.Fatalf("n%s is leader", name)
		}
		gs = append(gs, g)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return voters(g0) == 3 }, "n0 did not promote both writers")
	if v, _ := g0.c.view.get(); v.term != v0.term || !v.isLeader {
		t.Fatalf("joiners caused an election: term %d -> %d", v0.term, v.term)
	}
	ch := make(chan peer.ID, 2)
	errs := make(chan error, 2)
	for _, g := range gs {
		go func() {
			l, err := g.When().LeaderOtherThan(tctx(t, 10*time.Second), s0.self)
			ch <- l
			errs <- err
		}()
	}
	_ = g0.Close()
	l1, l2 := <-ch, <-ch
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	if l1 != l2 || l1 == s0.self {
		t.Fatalf("new leaders %v and %v", l1, l2)
	}
	if gs[0].IsLeader() == gs[1].IsLeader() {
		testutil.Eventually(t, 5*time.Second, func() bool { return gs[0].IsLeader() != gs[1].IsLeader() }, "not exactly one leader")
	}
	g3 := joinNoOp(t, n.service(t, "3", false))
	if err := g3.When().LeaderIs(tctx(t, 10*time.Second), l1); err != nil {
		t.Fatal("n3 does not recognise the new leader:", err)
	}
}

// Port of mosaik's rivals_with_same_log_pos: three nodes that start apart
// each lead their own cluster; once linked they converge on one leader.
func TestLeader_RivalsSameLogPos(t *testing.T) {
	n := newMemNet()
	var gs []*Group[struct{}, struct{}, struct{}]
	for _, name := range []string{"0", "1", "2"} {
		gs = append(gs, joinNoOp(t, n.service(t, name, true)))
	}
	for i, g := range gs {
		if err := g.When().IsLeader(tctx(t, 10*time.Second)); err != nil {
			t.Fatalf("n%d did not lead its own cluster: %v", i, err)
		}
	}
	n.heal()
	testutil.Eventually(t, 15*time.Second, func() bool {
		l, ok := gs[0].Leader()
		if !ok {
			return false
		}
		leaders := 0
		for _, g := range gs {
			if gl, _ := g.Leader(); gl != l {
				return false
			}
			if g.IsLeader() {
				leaders++
			}
		}
		return leaders == 1
	}, "no single leader after linking")
	for _, g := range gs {
		l, _ := gs[0].Leader()
		if err := g.When().LeaderIs(tctx(t, 2*time.Second), l); err != nil {
			t.Fatal(err)
		}
	}
}

// Rivals with different logs: the cluster with the higher log wins, the
// loser's writes are discarded and reported.
func TestLeader_RivalsHighestLogWins(t *testing.T) {
	n := newMemNet()
	a := joinCounter(t, n.service(t, "a", true))
	b := joinCounter(t, n.service(t, "b", true))
	for _, g := range []*Group[int64, struct{}, int64]{a, b} {
		if err := g.When().IsLeader(tctx(t, 10*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.ExecuteMany(tctx(t, 5*time.Second), []int64{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Execute(tctx(t, 5*time.Second), 100); err != nil {
		t.Fatal(err)
	}
	disc := make(chan uint64, 1)
	go func() {
		d, _ := b.When().Discarded(tctx(t, 15*time.Second))
		disc <- d
	}()
	time.Sleep(20 * time.Millisecond) // let the Discarded waiter arm
	n.heal()
	if d := <-disc; d == 0 {
		t.Fatal("the losing side reported no discarded entries")
	}
	testutil.Eventually(t, 15*time.Second, func() bool {
		v, _, err := b.Query(tctx(t, 2*time.Second), struct{}{}, Weak)
		return err == nil && v == 6
	}, "the loser did not take the winner's state")
	if l, _ := b.Leader(); l != a.s.self {
		t.Fatalf("leader %v, want a", l)
	}
}
