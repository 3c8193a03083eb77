package status_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mosaik-go/mosaik/cmd/mosaik-node/internal/status"
	"github.com/mosaik-go/mosaik/groups"
	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/node"
)

// Two nodes in one group: /api/groups and the page show the group, its
// leader, term, commit index and the bond to the other node, and /metrics
// has the group instruments.
func TestServer_Groups(t *testing.T) {
	m := newMetrics(t)
	a := startNode(t, node.WithMeterProvider(m.MeterProvider()), node.WithPrometheusRegisterer(m.Registerer()))
	b := startNode(t, node.WithBootstrapPeers(a.AddrInfo()))
	join := func(n *node.Node) *groups.Group[struct{}, struct{}, struct{}] {
		g, err := groups.Join[struct{}, struct{}, struct{}](n.Groups(), groups.KeyFromSecret("status-test"), groups.NoOp{},
			groups.WithParams(groups.TestParams()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = g.Close() })
		return g
	}
	ga, gb := join(a), join(b)
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Scale(20*time.Second))
	defer cancel()
	leader, err := ga.When().LeaderElected(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := gb.When().LeaderIs(ctx, leader); err != nil {
		t.Fatal(err)
	}
	idx, err := gb.Execute(ctx, struct{}{})
	if err != nil {
		t.Fatal(err)
	}
	if err := ga.When().Committed(ctx, idx); err != nil {
		t.Fatal(err)
	}
	// The leader keeps an odd number of voters: of two writers one votes,
	// the other stays a learner.
	testutil.Eventually(t, 20*time.Second, func() bool {
		st := a.Groups().Status()
		return len(st) == 1 && st[0].Voters == 1 && st[0].Learners == 1
	}, "the second writer was not added as a learner")

	h := status.New(a, m).Handler()
	serve := func(path string) string {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != http.StatusOK {
			t.Fatalf("GET %s: %d", path, rec.Code)
		}
		return rec.Body.String()
	}

	// The raw shape first, as a client in another language sees it.
	var raw struct {
		Groups []map[string]any `json:"groups"`
	}
	body := serve("/api/groups")
	if err := json.Unmarshal([]byte(body), &raw); err != nil || len(raw.Groups) != 1 {
		t.Fatalf("want one group (%v):\n%s", err, body)
	}
	for _, k := range []string{"group_id", "short", "role", "raft", "leader", "online", "term", "committed",
		"applied", "log_term", "log_index", "voters", "learners", "epoch", "discarded", "bonds"} {
		if _, ok := raw.Groups[0][k]; !ok {
			t.Errorf("group lacks %q", k)
		}
	}
	var doc status.GroupsDoc
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatal(err)
	}
	g := doc.Groups[0]
	wantRaft := "learner"
	if ga.IsLeader() {
		wantRaft = "leader"
	}
	if g.GroupID != ga.ID().String() || g.Short != ga.ID().Short() || g.Role != "writer" || g.Raft != wantRaft ||
		g.Leader != leader.String() || !g.Online || g.Term == 0 || g.Committed < idx || g.Applied < idx ||
		g.LogIndex < idx || g.Voters != 1 || g.Learners != 1 || len(g.Epoch) != 16 || g.Error != "" {
		t.Errorf("group doc %+v, want %s writer %s led by %s, committed >= %d", g, ga.ID().Short(), wantRaft, leader, idx)
	}
	if len(g.Bonds) != 1 || g.Bonds[0].PeerID != b.ID().String() || g.Bonds[0].Role != "writer" ||
		g.Bonds[0].AgeMS < 0 || g.Bonds[0].FramesSent == 0 || g.Bonds[0].BytesReceived == 0 {
		t.Errorf("bonds %+v, want one to %s with traffic", g.Bonds, b.ID())
	}
	if doc.Refusals == nil || doc.Ends == nil {
		t.Errorf("refusals %v, ends %v: want maps, not null", doc.Refusals, doc.Ends)
	}

	page := serve("/")
	for _, want := range []string{"Groups: 1", ga.ID().Short(), ga.ID().String(), b.ID().String(), wantRaft, "/api/groups"} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}

	metrics := serve("/metrics")
	for name, want := range map[string]float64{"mosaik_groups_active": 1, "mosaik_groups_bonds_active": 1} {
		if got := metricValue(metrics, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if got := metricValue(metrics, "mosaik_groups_raft_committed"); got < float64(idx) {
		t.Errorf("mosaik_groups_raft_committed = %v, want >= %d", got, idx)
	}
}

// A node in no group has an empty list, not null, and the page says so.
func TestServer_NoGroups(t *testing.T) {
	h := status.New(startNode(t), nil).Handler()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/groups", nil))
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"groups": []`) {
		t.Errorf("%d:\n%s", rec.Code, rec.Body)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	if !strings.Contains(rec.Body.String(), "No groups joined.") {
		t.Errorf("page without groups:\n%s", rec.Body)
	}
}
