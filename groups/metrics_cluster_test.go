package groups

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"go.etcd.io/raft/v3"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/mosaik-go/mosaik/internal/testutil"
)

// observed is a memnet service with its own metric reader and a record
// of its "role changed" log lines.
type observed struct {
	s      *Service
	reader *sdkmetric.ManualReader
	roles  *roleLog
}

func observe(t *testing.T, n *memNet, name string, isolated bool) observed {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	s := n.service(t, name, isolated)
	s.meter = mp
	roles := &roleLog{}
	s.log = slog.New(roles)
	return observed{s: s, reader: reader, roles: roles}
}

func (o observed) metric(t *testing.T, name string) float64 {
	t.Helper()
	v, _ := metricValue(t, o.reader, name)
	return v
}

// roleLog is a slog handler that keeps the role changes logged at info.
type roleLog struct {
	mu    sync.Mutex
	lines [][2]string // from, to
	other []string    // "role changed" lines at another level
}

func (*roleLog) Enabled(context.Context, slog.Level) bool { return true }
func (h *roleLog) WithAttrs([]slog.Attr) slog.Handler     { return h }
func (h *roleLog) WithGroup(string) slog.Handler          { return h }

func (h *roleLog) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "role changed" {
		return nil
	}
	var from, to string
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "from":
			from = a.Value.String()
		case "to":
			to = a.Value.String()
		}
		return true
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	if r.Level != slog.LevelInfo {
		h.other = append(h.other, r.Level.String())
	}
	h.lines = append(h.lines, [2]string{from, to})
	return nil
}

// chain checks that the logged role changes are exactly the changes that
// led to now: each line starts where the previous ended, none is a
// non-change, the first starts from a follower and the last ends in now.
func (h *roleLog) chain(now RaftRole) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.other) > 0 {
		return fmt.Sprintf("role changes logged at %v", h.other)
	}
	want := raft.StateFollower.String()
	switch now {
	case RaftLeader:
		want = raft.StateLeader.String()
	case RaftCandidate:
		want = raft.StateCandidate.String()
	case RaftPreCandidate:
		want = raft.StatePreCandidate.String()
	}
	at := raft.StateFollower.String()
	for i, l := range h.lines {
		if l[0] != at || l[0] == l[1] {
			return fmt.Sprintf("line %d is %s -> %s after %v", i, l[0], l[1], h.lines[:i])
		}
		at = l[1]
	}
	if at != want {
		return fmt.Sprintf("logged changes %v end in %s, the node is %v", h.lines, at, now)
	}
	return ""
}

func (h *roleLog) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.lines)
}

// The instruments on a three-node group, node by node: groups
// active, elections and leader changes counting real ones only (a
// follower cut off and healed adds neither), committed index, apply lag,
// commit latency; and one info line per role change.
func TestMetrics_ThreeNodes(t *testing.T) {
	n := newMemNet()
	var obs []observed
	var gs []*Group[int64, struct{}, int64]
	for i, name := range []string{"0", "1", "2"} {
		o := observe(t, n, name, false)
		g := joinCounter(t, o.s)
		if i == 0 {
			if err := g.When().IsLeader(tctx(t, 10*time.Second)); err != nil {
				t.Fatal(err)
			}
		}
		obs, gs = append(obs, o), append(gs, g)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return voters(gs[0]) == 3 }, "n0 did not promote both writers")
	var last uint64
	for i := range 5 {
		idx, err := gs[1].Execute(tctx(t, 5*time.Second), int64(i))
		if err != nil {
			t.Fatal(err)
		}
		last = idx
	}

	type want struct{ active, elections, changes, latency float64 }
	check := func(stage string, ws []want) {
		t.Helper()
		var diff string
		testutil.Eventually(t, 10*time.Second, func() bool {
			for i, o := range obs {
				w := ws[i]
				if w == (want{}) {
					continue // closed
				}
				st := o.s.Status()
				if len(st) != 1 || st[0].AppliedIndex < last {
					diff = fmt.Sprintf("n%d status %+v", i, st)
					return false
				}
				got := want{
					o.metric(t, "mosaik.groups.active"), o.metric(t, "mosaik.groups.raft.elections"),
					o.metric(t, "mosaik.groups.raft.leader.changes"), o.metric(t, "mosaik.groups.raft.commit_latency"),
				}
				committed, lag := o.metric(t, "mosaik.groups.raft.committed"), o.metric(t, "mosaik.groups.raft.apply_lag")
				if got != w || committed != float64(st[0].AppliedIndex) || lag != 0 {
					diff = fmt.Sprintf("n%d: %+v, committed %v (applied %d), lag %v; want %+v",
						i, got, committed, st[0].AppliedIndex, lag, w)
					return false
				}
				if msg := o.roles.chain(st[0].Raft); msg != "" {
					diff = fmt.Sprintf("n%d: %s", i, msg)
					return false
				}
			}
			return true
		}, "%s: %s", stage, testutil.Lazy(func() string { return diff }))
	}
	// Only n0 ran an election; each node saw one leader; n1's five
	// Executes are five latency samples.
	check("formed", []want{{1, 1, 1, 0}, {1, 0, 1, 5}, {1, 0, 1, 0}})

	// Cut n2 off: it forgets the leader and asks for pre-votes it cannot
	// get, so it never raises the term. Healed, it follows n0 again.
	s0, s1, s2 := obs[0].s.self, obs[1].s.self, obs[2].s.self
	n.partition([]peer.ID{s0, s1}, []peer.ID{s2})
	testutil.Eventually(t, 10*time.Second, func() bool { return only(t, obs[2].s).Raft == RaftPreCandidate },
		"a cut-off follower did not try a pre-vote")
	n.heal()
	testutil.Eventually(t, 10*time.Second, func() bool {
		st := only(t, obs[2].s)
		return st.Raft == RaftFollower && st.Leader == s0
	}, "n2 does not follow n0 after the heal")
	check("healed", []want{{1, 1, 1, 0}, {1, 0, 1, 5}, {1, 0, 1, 0}})
	if obs[2].roles.count() < 2 {
		t.Fatalf("n2 logged %d role changes through a pre-vote and back", obs[2].roles.count())
	}

	// The leader leaves: n1 and n2 see one real leader change each, and
	// one of them ran the election (the transfer's).
	_ = gs[0].Close()
	testutil.Eventually(t, 10*time.Second, func() bool {
		l1, _ := gs[1].Leader()
		l2, _ := gs[2].Leader()
		return l1 != "" && l1 != s0 && l1 == l2
	}, "n1 and n2 agree on no new leader")
	e1, e2 := obs[1].metric(t, "mosaik.groups.raft.elections"), obs[2].metric(t, "mosaik.groups.raft.elections")
	if e1+e2 < 1 {
		t.Fatalf("a new leader without an election (%v, %v)", e1, e2)
	}
	check("failover", []want{{}, {1, e1, 2, 5}, {1, e2, 2, 0}})
	if v := obs[0].metric(t, "mosaik.groups.active"); v != 0 {
		t.Fatalf("n0 groups.active %v after its group closed", v)
	}
	// n0 handed leadership over before it left (a graceful leave): its log
	// of role changes ends as a follower.
	if msg := obs[0].roles.chain(RaftFollower); msg != "" {
		t.Fatalf("n0: %s", msg)
	}
}

// The losing side of a merge counts and reports its discarded entries,
// and its log of role changes stays exact through the wipe (a leader that
// discards its cluster is a follower afterwards).
func TestMetrics_DiscardedOnMerge(t *testing.T) {
	n := newMemNet()
	oa, ob := observe(t, n, "a", true), observe(t, n, "b", true)
	a, b := joinCounter(t, oa.s), joinCounter(t, ob.s)
	for _, g := range []*Group[int64, struct{}, int64]{a, b} {
		if err := g.When().IsLeader(tctx(t, 10*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.ExecuteMany(tctx(t, 5*time.Second), []int64{1, 2, 3, 4}); err != nil {
		t.Fatal(err)
	}
	lost, err := b.Execute(tctx(t, 5*time.Second), 100)
	if err != nil {
		t.Fatal(err)
	}
	// Execute's index is b's last entry; the status view may publish it a
	// moment after Execute returns.
	testutil.Eventually(t, 5*time.Second, func() bool { return only(t, ob.s).Log.Index == lost },
		"b's status never showed its last entry")
	n.heal()
	testutil.Eventually(t, 15*time.Second, func() bool {
		st := only(t, ob.s)
		return st.Leader == oa.s.self && st.AppliedIndex >= only(t, oa.s).AppliedIndex && st.Discarded > 0
	}, "b did not lose the merge and follow a")
	if st := only(t, ob.s); st.Discarded != lost {
		t.Fatalf("b reports %d discarded entries, its log held %d", st.Discarded, lost)
	}
	if v := ob.metric(t, "mosaik.groups.raft.discarded"); v != float64(lost) {
		t.Fatalf("b's discarded counter %v, want %d", v, lost)
	}
	if v := oa.metric(t, "mosaik.groups.raft.discarded"); v != 0 {
		t.Fatalf("the winner counted %v discarded entries", v)
	}
	for name, o := range map[string]observed{"a": oa, "b": ob} {
		if msg := o.roles.chain(only(t, o.s).Raft); msg != "" {
			t.Errorf("%s: %s", name, msg)
		}
	}
	if !strings.Contains(fmt.Sprint(ob.roles.lines), raft.StateLeader.String()) {
		t.Errorf("b never logged its leadership: %v", ob.roles.lines)
	}
}
