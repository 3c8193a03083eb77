package node_test

import (
	"slices"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/node"
)

// TestGossipSigning_NetworkMustAgree checks WithGossipSignaturePolicy: two
// nodes that both sign gossip exchange catalog changes over gossip, while
// a signing node and a default (unsigned) one do not, although they are
// connected and synced: each router drops the other's messages. The
// change is a new tag, which only gossip carries once two nodes know each
// other (syncs run on connect).
func TestGossipSigning_NetworkMustAgree(t *testing.T) {
	strict := node.WithGossipSignaturePolicy(pubsub.StrictSign)
	tag := catalog.IDFromString("after-sync")
	hasTag := func(n *node.Node, of *node.Node) bool {
		e, ok := n.Catalog().Get(of.ID())
		return ok && slices.Contains(e.Entry.Tags, tag)
	}
	for _, tc := range []struct {
		name     string
		a, b     []node.Option
		gossiped bool
	}{
		{"both sign", []node.Option{strict}, []node.Option{strict}, true},
		{"only one signs", []node.Option{strict}, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			network := "signing-" + tc.name
			a := startNode(t, network, tc.a...)
			b := startNode(t, network, append(tc.b, bootstrapOf(a))...)
			testutil.Eventually(t, 10*time.Second, func() bool { return allKnowAll([]*node.Node{a, b}) },
				"a and b did not sync")
			if _, err := a.Discovery().UpdateLocal(func(e *catalog.Entry) { e.Tags = append(e.Tags, tag) }); err != nil {
				t.Fatal(err)
			}
			if tc.gossiped {
				testutil.Eventually(t, 5*time.Second, func() bool { return hasTag(b, a) }, "b did not get a's new tag over gossip")
				return
			}
			// Two heartbeats: the change, published at once, and a
			// heartbeat would have arrived by then were gossip flowing.
			deadline := time.Now().Add(2 * time.Second)
			for time.Now().Before(deadline) {
				if hasTag(b, a) {
					t.Fatal("b got a's new tag although only a signs its gossip")
				}
				time.Sleep(50 * time.Millisecond) // sampling a window in which nothing may happen
			}
		})
	}
}

func TestGossipSigning_RefusesLaxPolicies(t *testing.T) {
	for _, p := range []pubsub.MessageSignaturePolicy{pubsub.LaxSign, pubsub.LaxNoSign} {
		if _, err := node.New("x", node.WithGossipSignaturePolicy(p)); err == nil {
			t.Errorf("policy %v accepted", p)
		}
	}
}
