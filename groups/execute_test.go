package groups

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/internal/testutil"
)

// threeCounters starts n0, waits for it to lead, then adds n1 and n2 and
// waits for three voters.
func threeCounters(t *testing.T, n *memNet) []*Group[int64, struct{}, int64] {
	t.Helper()
	s0 := n.service(t, "0", false)
	g0 := joinCounter(t, s0)
	if err := g0.When().IsLeader(tctx(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	gs := []*Group[int64, struct{}, int64]{g0}
	for _, name := range []string{"1", "2"} {
		g := joinCounter(t, n.service(t, name, false))
		if err := g.When().Online(tctx(t, 10*time.Second)); err != nil {
			t.Fatal(err)
		}
		gs = append(gs, g)
	}
	// Every member has applied the configuration of three voters and left
	// the joint one (settledVoters): the tests cut the leader off next.
	testutil.Eventually(t, 10*time.Second, func() bool {
		return settledVoters(gs[0]) == 3 && settledVoters(gs[1]) == 3 && settledVoters(gs[2]) == 3
	}, "three voters on every member")
	return gs
}

// Port of mosaik's execute tests (no_catchup_weak_query and
// no_catchup_strong_query, plus the leader change): executes from leader
// and followers are applied everywhere; strong queries see them at once.
func TestExecute_WeakStrongLeaderChange(t *testing.T) {
	n := newMemNet()
	gs := threeCounters(t, n)
	g0, g1, g2 := gs[0], gs[1], gs[2]
	if _, err := g0.Execute(tctx(t, 5*time.Second), 3); err != nil {
		t.Fatal(err)
	}
	i, err := g0.Execute(tctx(t, 5*time.Second), 4)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range gs {
		v, at, err := g.Query(tctx(t, 5*time.Second), struct{}{}, Strong)
		if err != nil || v != 7 || at < i {
			t.Fatalf("strong query = %d at %d (%v), want 7 at >= %d", v, at, err, i)
		}
	}
	for _, g := range gs {
		if err := g.When().Committed(tctx(t, 5*time.Second), i); err != nil {
			t.Fatal(err)
		}
		if v := weak(t, g); v != 7 {
			t.Fatalf("weak = %d", v)
		}
	}
	if _, err := g1.Execute(tctx(t, 5*time.Second), -2); err != nil {
		t.Fatal(err)
	}
	if v, _, _ := g2.Query(tctx(t, 5*time.Second), struct{}{}, Strong); v != 5 {
		t.Fatalf("strong on n2 = %d, want 5", v)
	}
	before, _ := g1.Leader()
	_ = g0.Close()
	l, err := g1.When().LeaderOtherThan(tctx(t, 10*time.Second), before)
	if err != nil {
		t.Fatal("no new leader after the leader closed:", err)
	}
	if err := g2.When().LeaderIs(tctx(t, 10*time.Second), l); err != nil {
		t.Fatal(err)
	}
	exec := func(g *Group[int64, struct{}, int64], cmds []int64) IndexRange {
		for {
			r, err := g.ExecuteMany(tctx(t, 5*time.Second), cmds)
			if errors.Is(err, ErrOffline) {
				var oe *OfflineError[int64]
				if !errors.As(err, &oe) || len(oe.Commands) != len(cmds) {
					t.Fatalf("offline error without the commands: %v", err)
				}
				if oe.MayApply {
					t.Fatalf("ambiguous failure in a quiet group: %v", err)
				}
				time.Sleep(20 * time.Millisecond) // retry pacing while a leader settles
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			return r
		}
	}
	exec(g1, []int64{10, -2, 3})
	r := exec(g2, []int64{20, -4, -1})
	for _, g := range []*Group[int64, struct{}, int64]{g1, g2} {
		if err := g.When().Committed(tctx(t, 5*time.Second), r.Last); err != nil {
			t.Fatal(err)
		}
		if v := weak(t, g); v != 31 {
			t.Fatalf("weak = %d, want 31", v)
		}
	}
}

// Port of execute_many_is_send_sync_via_joinset and query_is_send_sync:
// concurrent batches and queries from leader and follower.
func TestExecute_Concurrent(t *testing.T) {
	n := newMemNet()
	gs := threeCounters(t, n)
	var wg sync.WaitGroup
	for k, g := range []*Group[int64, struct{}, int64]{gs[0], gs[0], gs[1], gs[1]} {
		wg.Go(func() {
			if _, err := g.ExecuteMany(tctx(t, 5*time.Second), []int64{int64(k), 5, 5}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	for _, g := range gs[:2] {
		for _, c := range []Consistency{Weak, Strong, Strong} {
			wg.Go(func() {
				if err := g.When().Committed(tctx(t, 5*time.Second), 9); err != nil {
					t.Error(err)
				}
				if c == Strong {
					if v, _, err := g.Query(tctx(t, 5*time.Second), struct{}{}, c); err != nil || v != 46 {
						t.Errorf("strong = %d, %v; want 46", v, err)
					}
				}
			})
		}
	}
	wg.Wait()
}

// A command that panics Apply ends the group on that node visibly; the
// process and the node's other groups keep running.
func TestExecute_ApplyPanicEndsGroup(t *testing.T) {
	n := newMemNet()
	s := n.service(t, "0", false)
	g, err := Join[int64, struct{}, int64](s, KeyFromSecret("panic"), &panicky{}, WithParams(TestParams()))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	other := joinCounter(t, s)
	if err := g.When().IsLeader(tctx(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Execute(tctx(t, 5*time.Second), 13); !errors.Is(err, ErrTerminated) || !errors.Is(err, ErrApplyPanic) {
		t.Fatalf("execute of a panicking command: %v", err)
	}
	select {
	case <-g.When().Terminated():
	case <-tctx(t, 5*time.Second).Done():
		t.Fatal("group did not terminate")
	}
	if _, _, err := g.Query(tctx(t, time.Second), struct{}{}, Weak); !errors.Is(err, ErrApplyPanic) {
		t.Fatalf("query after the panic: %v", err)
	}
	if err := other.When().IsLeader(tctx(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Execute(tctx(t, 5*time.Second), 1); err != nil {
		t.Fatal("the node's other group stopped:", err)
	}
}

// A group joined in one role: a Join in another role fails, unless it
// asks for the running role, which gives a handle to the running group.
func TestJoin_RunningRole(t *testing.T) {
	n := newMemNet()
	s := n.service(t, "0", false)
	g1 := joinCounter(t, s)
	if _, err := Join[int64, struct{}, int64](s, KeyFromSecret("counter"), &counter{}, WithParams(TestParams()), WithRole(RoleReader)); err == nil {
		t.Fatal("a reader join of a group joined as a writer succeeded")
	}
	g2 := joinCounter(t, s, WithRole(RoleReader), WithRunningRole())
	if g1.c != g2.c {
		t.Fatal("the running-role join started another group")
	}
	if err := g1.When().IsLeader(tctx(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	_ = g1.Close()
	if _, err := g2.Execute(tctx(t, 5*time.Second), 1); err != nil {
		t.Fatal("the running-role handle lost the group when the first closed:", err)
	}
}

type panicky struct{ counter }

func (*panicky) Apply(_ ApplyContext, cmds []int64) {
	for _, c := range cmds {
		if c == 13 {
			panic("unlucky")
		}
	}
}

// Joining twice gives two handles to one group; the group lives until the
// last handle closes; other types are an error, not a panic.
func TestJoin_SecondHandle(t *testing.T) {
	n := newMemNet()
	s := n.service(t, "0", false)
	g1 := joinCounter(t, s)
	g2 := joinCounter(t, s)
	if g1.ID() != g2.ID() || g1.c != g2.c {
		t.Fatal("second join started another group")
	}
	if _, err := Join[string, struct{}, int64](s, KeyFromSecret("counter"), &strCounter{}, WithParams(TestParams())); !errors.Is(err, ErrTypeMismatch) {
		t.Fatalf("type mismatch: %v", err)
	}
	if err := g1.When().IsLeader(tctx(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	_ = g1.Close()
	_ = g1.Close()
	if _, err := g1.Execute(tctx(t, time.Second), 1); !errors.Is(err, ErrTerminated) {
		t.Fatalf("closed handle: %v", err)
	}
	if _, err := g2.Execute(tctx(t, 5*time.Second), 1); err != nil {
		t.Fatal("the other handle stopped:", err)
	}
	_ = g2.Close()
	select {
	case <-g2.When().Terminated():
	case <-tctx(t, 5*time.Second).Done():
		t.Fatal("group did not end with its last handle")
	}
}

type strCounter struct{ counter }

func (*strCounter) Apply(ApplyContext, []string) {}

// A leader cut off from its quorum steps down (CheckQuorum) and fails its
// pending Execute at once with the commands handed back, long before the
// caller's deadline; the majority elects a new leader and goes on.
func TestExecute_DeposedLeaderFailsAtOnce(t *testing.T) {
	n := newMemNet()
	gs := threeCounters(t, n)
	old := gs[0]
	n.partition([]peer.ID{old.c.self}, []peer.ID{gs[1].c.self, gs[2].c.self})
	start := time.Now()
	_, err := old.Execute(tctx(t, 30*time.Second), 7)
	var oe *OfflineError[int64]
	if !errors.As(err, &oe) || len(oe.Commands) != 1 || oe.Commands[0] != 7 {
		t.Fatalf("execute on a cut-off leader: %v", err)
	}
	if d := time.Since(start); d > testutil.Scale(10*time.Second) {
		t.Fatalf("failed only after %v", d)
	}
	// The majority elects a leader: Execute fails at once with ErrOffline
	// while gs[1] knows none, so it is retried, within a bound (an
	// election takes a few election timeouts of 400 ms).
	var last error
	testutil.Eventually(t, 15*time.Second, func() bool {
		_, last = gs[1].Execute(tctx(t, 10*time.Second), 1)
		if last != nil && !errors.Is(last, ErrOffline) {
			t.Fatal(last)
		}
		return last == nil
	}, "the majority did not commit a write: %v (leader of gs[1]: %v, of gs[2]: %v)", testutil.Lazy(func() error { return last }), testutil.Lazy(func() string { return leaderName(gs[1]) }), testutil.Lazy(func() string { return leaderName(gs[2]) }))
	n.heal()
	if err := old.When().Online(tctx(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	// The cut-off command never committed: only the majority's write did
	// (once, or more if a retry repeated an ambiguous attempt).
	testutil.Eventually(t, 10*time.Second, func() bool {
		v, _, err := old.Query(tctx(t, 2*time.Second), struct{}{}, Strong)
		return err == nil && v >= 1 && v < 7
	}, "state after heal")
}

// leaderName is the leader g knows, or "none".
func leaderName(g *Group[int64, struct{}, int64]) string {
	p, ok := g.Leader()
	if !ok {
		return "none"
	}
	return p.String()
}

// A call whose commands do not fit in one bond frame is refused before
// anything is sent, with ErrTooLarge: sent, it would break the bonds it
// travels on (a follower reading an oversize append, a leader an oversize
// forward) and depose the leader, again at every retry.
func TestExecute_TooLargeIsRefusedBeforeSending(t *testing.T) {
	n := newMemNet()
	gs := writers(t, n, TestParams(), 2)
	g := gs[1] // a follower: its call would be forwarded
	per := len(mustCBOR(t, int64(1))) + commandOverhead
	cmds := make([]int64, g.MaxBatchBytes()/per+1)
	for i := range cmds {
		cmds[i] = 1
	}
	before := weak(t, gs[0])
	_, err := g.ExecuteMany(tctx(t, 5*time.Second), cmds)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("ExecuteMany of %d commands: %v, want ErrTooLarge", len(cmds), err)
	}
	if _, err := g.Execute(tctx(t, 5*time.Second), 1); err != nil {
		t.Fatalf("a command after the refused batch: %v", err)
	}
	if got := weak(t, gs[0]); got != before+1 {
		t.Fatalf("state %d, want %d: the refused batch must add nothing", got, before+1)
	}
}

func mustCBOR(t testing.TB, v int64) []byte {
	t.Helper()
	b, err := CBOR[int64]{}.Encode(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
