package groups

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/internal/testutil"
)

// Port of mosaik's bonds::members_can_see_each_other: 4 nodes, 3 groups
// with different keys; each member's bond set reaches exactly its
// co-members, with separate bonds per group.
func TestBonds_MembersCanSeeEachOther(t *testing.T) {
	n := []*bondNode{newBondNode(t), newBondNode(t), newBondNode(t), newBondNode(t)}
	meshed(t, n...)
	g1, g2, g3 := testSpec("group1secret", RoleWriter), testSpec("group2secret", RoleWriter), testSpec(fmt.Sprint(time.Now().UnixNano()), RoleReader)
	type member struct {
		node  *bondNode
		in    *recInbox
		peers []peer.ID
	}
	var ms []member
	join := func(s spec, idx ...int) {
		var nodes []*bondNode
		for _, i := range idx {
			nodes = append(nodes, n[i])
		}
		for _, i := range idx {
			_, in := n[i].attach(t, s)
			var others []*bondNode
			for _, o := range nodes {
				if o != n[i] {
					others = append(others, o)
				}
			}
			ms = append(ms, member{n[i], in, sortedIDs(others...)})
		}
	}
	join(g1, 0, 1)
	join(g2, 0, 2, 3)
	join(g3, 1, 2)
	testutil.Eventually(t, 5*time.Second, func() bool {
		for _, m := range ms {
			if !slices.Equal(m.in.peers(), m.peers) {
				return false
			}
		}
		return true
	}, "bond sets did not reach the co-members")
	for _, m := range ms {
		if bad := m.in.misorders(); len(bad) > 0 {
			t.Fatalf("inbox order: %v", bad)
		}
	}
	// Roles come from the handshake.
	if r, ok := ms[len(ms)-1].in.roleOf(n[1].h.ID()); !ok || r != RoleReader {
		t.Fatalf("role of a g3 member: %v %v, want reader", r, ok)
	}
	// The entries list the groups.
	e, _ := n[3].disc.Catalog().Get(n[0].h.ID())
	if _, ok := e.Entry.InGroup(g1.ID); !ok {
		t.Fatal("n0's entry does not list g1")
	}
	st := n[0].svc.BondStatus()
	if len(st.Groups) != 2 || len(st.Groups[0].Bonds)+len(st.Groups[1].Bonds) != 3 {
		t.Fatalf("status of n0: %+v", st)
	}
}

// Closing a group's transport sends departures (peers see BondDown with
// Cancelled) and withdraws the group from the local entry.
func TestBonds_CloseDepartsAndWithdraws(t *testing.T) {
	a, b := newBondNode(t), newBondNode(t)
	meshed(t, a, b)
	s := testSpec("close", RoleWriter)
	ga, _ := a.attach(t, s)
	_, inB := b.attach(t, s)
	testutil.Eventually(t, 5*time.Second, func() bool { return len(inB.peers()) == 1 }, "no bond")
	if err := ga.Close(); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return len(inB.peers()) == 0 }, "bond did not end")
	if inB.downCount(CodeCancelled) != 1 {
		t.Fatalf("downs at b: %v", inB.downs)
	}
	if _, ok := a.disc.Catalog().Local().Entry.InGroup(s.ID); ok {
		t.Fatal("the local entry still lists the closed group")
	}
	testutil.Eventually(t, 5*time.Second, func() bool {
		e, ok := b.disc.Catalog().Get(a.h.ID())
		if !ok {
			return false
		}
		_, listed := e.Entry.InGroup(s.ID)
		return !listed
	}, "b never saw a's entry without the group")
	// No redial: a is not in the group any more.
	testutil.Never(t, time.Second, 50*time.Millisecond, func() string {
		if len(inB.peers()) != 0 {
			return "b bonded again with a that left the group"
		}
		return ""
	})
}
