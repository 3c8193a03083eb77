package groups

import (
	"fmt"
	"reflect"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/internal/testutil"
)

// Three writers and a reader, quiet after some commands: every node's
// Status is exactly what the cluster is, value for value.
func TestStatus_Snapshot(t *testing.T) {
	n := newMemNet()
	var svcs []*Service
	var gs []*Group[int64, struct{}, int64]
	for i, name := range []string{"0", "1", "2", "r"} {
		s := n.service(t, name, false)
		var opts []Option
		if name == "r" {
			opts = append(opts, WithRole(RoleReader))
		}
		g := joinCounter(t, s, opts...)
		if i == 0 {
			if err := g.When().IsLeader(tctx(t, 10*time.Second)); err != nil {
				t.Fatal(err)
			}
		}
		svcs, gs = append(svcs, s), append(gs, g)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return voters(gs[0]) == 3 }, "n0 did not promote both writers")
	r, err := gs[1].ExecuteMany(tctx(t, 5*time.Second), []int64{1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}

	all := []peer.ID{svcs[0].self, svcs[1].self, svcs[2].self, svcs[3].self}
	slices.Sort(all)
	want := func(i int, lead Status) Status {
		others := slices.DeleteFunc(slices.Clone(all), func(p peer.ID) bool { return p == svcs[i].self })
		st := Status{
			ID: gs[i].ID(), Role: RoleWriter, Raft: RaftFollower,
			Leader: svcs[0].self, Online: true, Term: lead.Term,
			CommitIndex: lead.CommitIndex, AppliedIndex: lead.CommitIndex, Log: lead.Log,
			Voters: 3, Learners: 1, Epoch: lead.Epoch,
			Peers: others,
		}
		switch i {
		case 0:
			st.Raft = RaftLeader
		case 3:
			st.Role, st.Raft = RoleReader, RaftLearner
		}
		return st
	}
	var diff string
	testutil.Eventually(t, 10*time.Second, func() bool {
		lead := only(t, svcs[0])
		if lead.CommitIndex < r.Last || lead.Term == 0 || lead.Epoch == 0 || lead.Log.Index != lead.CommitIndex {
			diff = fmt.Sprintf("leader %+v", lead)
			return false
		}
		for i, s := range svcs {
			if got, w := only(t, s), want(i, lead); !reflect.DeepEqual(got, w) {
				diff = fmt.Sprintf("n%d:\n got %+v\nwant %+v", i, got, w)
				return false
			}
		}
		return true
	}, "statuses do not describe the cluster: %s", testutil.Lazy(func() string { return diff }))

	_ = gs[3].Close()
	if st := svcs[3].Status(); len(st) != 0 {
		t.Fatalf("status after the last handle closed: %+v", st)
	}
}

// only is s's status, which must hold exactly one group.
func only(t *testing.T, s *Service) Status {
	t.Helper()
	st := s.Status()
	if len(st) != 1 {
		t.Fatalf("%d groups in status, want 1", len(st))
	}
	return st[0]
}

// A lone node goes from non-member to leader; a state machine panic shows
// as Ended with the error.
func TestStatus_LoneNodeAndPanic(t *testing.T) {
	n := newMemNet()
	s := n.service(t, "0", false)
	if st := s.Status(); len(st) != 0 {
		t.Fatalf("status before any join: %+v", st)
	}
	g := joinCounter(t, s, WithParams(func() Params {
		p := TestParams()
		p.BootstrapDelay = time.Hour // stays a non-member until the test says
		return p
	}()))
	if st := only(t, s); st.Raft != RaftNonMember || st.Epoch != 0 || st.Online || st.Voters != 0 || st.Ended {
		t.Fatalf("fresh node: %+v", st)
	}
	_ = g.Close()

	p := &panicky{}
	pg, err := Join[int64, struct{}, int64](s, KeyFromSecret("panicky"), p, WithParams(TestParams()))
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	if err := pg.When().IsLeader(tctx(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if st := only(t, s); st.Raft != RaftLeader || st.Leader != s.self || !st.Online || st.Voters != 1 || st.Epoch == 0 {
		t.Fatalf("lone leader: %+v", st)
	}
	if _, err := pg.Execute(tctx(t, 5*time.Second), 13); err == nil {
		t.Fatal("a panicking Apply succeeded")
	}
	testutil.Eventually(t, 5*time.Second, func() bool {
		st := only(t, s)
		return st.Ended && st.Err != nil && !st.Online && st.Leader == ""
	}, "a panicked group is not reported ended")
}

func TestRaftRole_String(t *testing.T) {
	for r, want := range map[RaftRole]string{
		RaftNonMember: "non-member", RaftFollower: "follower", RaftLearner: "learner",
		RaftPreCandidate: "pre-candidate", RaftCandidate: "candidate", RaftLeader: "leader", 99: "unknown",
	} {
		if r.String() != want {
			t.Errorf("%d: %q, want %q", r, r.String(), want)
		}
	}
}

// describedCounter is a counter that describes itself; Describe reads an
// atomic, as the Describer contract asks.
type describedCounter struct {
	counter
	items atomic.Int64
}

func (c *describedCounter) Apply(actx ApplyContext, cmds []int64) {
	c.counter.Apply(actx, cmds)
	c.items.Store(c.v)
}

func (c *describedCounter) Describe() Description {
	return Description{Kind: "counter", Name: "c", Items: int(c.items.Load()), Version: 7}
}

// A machine that implements Describer is described in Status; one that
// does not has no Description.
func TestStatus_Description(t *testing.T) {
	n := newMemNet()
	s := n.service(t, "0", false)
	plain := joinCounter(t, s)
	dc := &describedCounter{}
	g, err := Join[int64, struct{}, int64](s, KeyFromSecret("described"), dc, WithParams(TestParams()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Close() })
	if err := g.When().IsLeader(tctx(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Execute(tctx(t, 5*time.Second), 3); err != nil {
		t.Fatal(err)
	}
	var found int
	for _, st := range s.Status() {
		switch st.ID {
		case plain.ID():
			found++
			if st.Description != nil {
				t.Errorf("plain counter described: %+v", *st.Description)
			}
		case g.ID():
			found++
			want := Description{Kind: "counter", Name: "c", Items: 3, Version: 7}
			if st.Description == nil || *st.Description != want {
				t.Errorf("description %+v, want %+v", st.Description, want)
			}
		}
	}
	if found != 2 {
		t.Fatalf("Status listed %d of the 2 groups", found)
	}
}
