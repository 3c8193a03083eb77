package collections_test

import (
	"errors"
	"testing"
	"time"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/collections"
	"github.com/mosaik-go/mosaik/groups"
	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/node"
)

var fastGroups = collections.WithGroupOptions(groups.WithParams(groups.TestParams()))

// A WithoutVote writer commits through the leader, stays a learner (the
// voter set is untouched) and is described on its node's status; alone,
// it never bootstraps a cluster of its own and its writes fail offline.
func TestMap_WithoutVote(t *testing.T) {
	ns := startNodes(t, 2)
	name := freshName(t)
	w, err := collections.NewMap[string, string](ns[0], name, fastGroups)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	c, err := collections.NewMap[string, string](ns[1], name, fastGroups, collections.WithoutVote())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.When().Online(tctx(t, 20*time.Second)); err != nil {
		t.Fatal(err)
	}
	v, err := c.Insert(tctx(t, 10*time.Second), "k", "v")
	if err != nil {
		t.Fatal(err)
	}
	if err := w.When().Reaches(tctx(t, 10*time.Second), v); err != nil {
		t.Fatal(err)
	}
	if got, ok := w.Get("k"); !ok || got != "v" {
		t.Fatalf("the writer holds %q %v", got, ok)
	}
	st := statusOf(t, ns[1], c.GroupID())
	if st.Role != groups.RoleReader || st.Raft != groups.RaftLearner || st.Voters != 1 {
		t.Fatalf("the client replica is %v/%v with %d voters; want a reader learner beside 1 voter", st.Role, st.Raft, st.Voters)
	}
	d := statusOf(t, ns[0], w.GroupID()).Description
	if d == nil || d.Kind != "map" || d.Name != name || d.Items != 1 || d.Version < uint64(v) {
		t.Fatalf("writer's description %+v", d)
	}

	alone := startNode(t)
	a, err := collections.NewMap[string, string](alone, freshName(t), fastGroups, collections.WithoutVote())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	testutil.Never(t, 2*time.Second, 100*time.Millisecond, func() string {
		if _, ok := a.Leader(); ok {
			return "a lone WithoutVote writer found a leader: it bootstrapped"
		}
		return ""
	})
	if _, err := a.Insert(tctx(t, 5*time.Second), "k", "v"); !errors.Is(err, collections.ErrOffline) {
		t.Fatalf("a lone WithoutVote insert: %v, want ErrOffline", err)
	}
}

func statusOf(t *testing.T, n *node.Node, id catalog.ID) groups.Status {
	t.Helper()
	for _, st := range n.Groups().Status() {
		if st.ID == id {
			return st
		}
	}
	t.Fatalf("group %s not in the node's status", id)
	return groups.Status{}
}
