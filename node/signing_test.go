package node_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/catalog/discovery"
	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/node"
)

// TestGossipSigning_NetworkMustAgree checks WithGossipSignaturePolicy: two
// nodes that both sign gossip exchange catalog changes over gossip, while
// a signing node and a default (unsigned) one do not, although they are
// connected and synced: each router drops the other's messages. The
// change is a new tag, which only gossip carries once two nodes know each
// other (the periodic anti-entropy sync and the repair sync a node runs
// once its join settled, which would carry it too, are off or put off
// here; so is bump push, whose heartbeats would make b pull a's changed
// entry by sync). Syncs that rightly run late remain: a join repair
// (joinrepair.go) when a's pubsub saw b's subscription only after it
// served b, or a connect sync still in flight. Under load they ran after
// the change and carried it, so a tag b got while any sync ran proves
// nothing, and the negative case tries again with a new tag.
func TestGossipSigning_NetworkMustAgree(t *testing.T) {
	params := discovery.TestParams()
	params.AntiEntropyInterval = 0
	params.BumpInterval = 0
	params.SettleDelay = time.Hour
	gossipOnly := node.WithDiscoveryParams(params)
	strict := node.WithGossipSignaturePolicy(pubsub.StrictSign)
	hasTag := func(n *node.Node, of *node.Node, tag catalog.ID) bool {
		e, ok := n.Catalog().Get(of.ID())
		return ok && slices.Contains(e.Entry.Tags, tag)
	}
	for _, tc := range []struct {
		name     string
		a, b     []node.Option
		gossiped bool
	}{
		{"both sign", []node.Option{gossipOnly, strict}, []node.Option{gossipOnly, strict}, true},
		{"only one signs", []node.Option{gossipOnly, strict}, []node.Option{gossipOnly}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			network := "signing-" + tc.name
			a := startNode(t, network, tc.a...)
			b := startNode(t, network, append(tc.b, bootstrapOf(a))...)
			testutil.Eventually(t, 10*time.Second, func() bool { return allKnowAll([]*node.Node{a, b}) },
				"a and b did not sync")
			if tc.gossiped {
				tag := catalog.IDFromString("after-sync")
				if _, err := a.Discovery().UpdateLocal(func(e *catalog.Entry) { e.Tags = append(e.Tags, tag) }); err != nil {
					t.Fatal(err)
				}
				testutil.Eventually(t, 5*time.Second, func() bool { return hasTag(b, a, tag) }, "b did not get a's new tag over gossip")
				return
			}
			for attempt := 1; ; attempt++ {
				if watchQuietly(t, a, b, catalog.IDFromString(fmt.Sprintf("after-sync-%d", attempt)), hasTag) {
					return
				}
				if attempt == 5 {
					t.Fatal("every try saw a sync between a and b: cannot tell gossip from sync")
				}
			}
		})
	}
}

// watchQuietly adds tag to a's entry once no sync between a and b is in
// flight and watches b for two heartbeats (the change, published at
// once, and a heartbeat would have arrived by then were gossip flowing).
// It fails t if b got the tag while no sync ran, and reports whether the
// window stayed free of syncs (one that ran may have carried the tag).
func watchQuietly(t *testing.T, a, b *node.Node, tag catalog.ID, hasTag func(n, of *node.Node, tag catalog.ID) bool) bool {
	t.Helper()
	syncs := func() (activity uint64, inFlight bool) {
		for _, n := range []*node.Node{a, b} {
			st := n.Discovery().Stats()
			activity += st.SyncsStarted + st.SyncsOK + st.SyncsFailed + st.SyncsServed
			inFlight = inFlight || st.SyncsStarted != st.SyncsOK+st.SyncsFailed
		}
		return activity, inFlight
	}
	testutil.Eventually(t, 10*time.Second, func() bool { _, busy := syncs(); return !busy }, "a sync between a and b never ended")
	before, _ := syncs()
	if _, err := a.Discovery().UpdateLocal(func(e *catalog.Entry) { e.Tags = append(e.Tags, tag) }); err != nil {
		t.Fatal(err)
	}
	quiet := true
	testutil.Never(t, 2*time.Second, 50*time.Millisecond, func() string {
		if after, _ := syncs(); after != before {
			quiet = false
			return ""
		}
		if hasTag(b, a, tag) {
			return "b got a's new tag although only a signs its gossip, and no sync ran"
		}
		return ""
	})
	if !quiet {
		t.Logf("a sync ran while b watched for %s; trying again", tag)
	}
	return quiet
}

func TestGossipSigning_RefusesLaxPolicies(t *testing.T) {
	for _, p := range []pubsub.MessageSignaturePolicy{pubsub.LaxSign, pubsub.LaxNoSign} {
		if n, err := node.New("x", node.WithGossipSignaturePolicy(p)); err == nil {
			_ = n.Close()
			t.Errorf("policy %v accepted", p)
		}
	}
}

// TestGossipSigning_DefaultMessagesAreAnonymous checks what another
// implementation sees by default (PROTOCOL.md §9.3): a router in strict
// anonymous mode (StrictNoSign without an author, which drops any message
// carrying from, seqno, signature or key), built here without package
// discovery's options, receives a node's announcements, and they carry
// none of those fields.
func TestGossipSigning_DefaultMessagesAreAnonymous(t *testing.T) {
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay(), libp2p.DisableMetrics())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Scale(15*time.Second))
	defer cancel()
	ps, err := pubsub.NewGossipSub(ctx, h, pubsub.WithMessageSignaturePolicy(pubsub.StrictNoSign), pubsub.WithNoAuthor(),
		pubsub.WithMessageIdFn(discovery.MessageID))
	if err != nil {
		t.Fatal(err)
	}
	n := startNode(t, "anonymous")
	topic, err := ps.Join(discovery.TopicName(n.Network()))
	if err != nil {
		t.Fatal(err)
	}
	sub, err := topic.Subscribe()
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Cancel()
	if err := h.Connect(ctx, n.AddrInfo()); err != nil {
		t.Fatal(err)
	}
	msg, err := sub.Next(ctx) // the node's next heartbeat, within a second
	if err != nil {
		t.Fatalf("no announcement reached a strict anonymous router: %v", err)
	}
	if msg.From != nil || msg.Seqno != nil || msg.Signature != nil || msg.Key != nil {
		t.Errorf("announcement carries author data: from %x seqno %x signature %d bytes key %d bytes",
			msg.From, msg.Seqno, len(msg.Signature), len(msg.Key))
	}
	if msg.ReceivedFrom != n.ID() {
		t.Errorf("announcement came from %s, want the node %s", msg.ReceivedFrom, n.ID())
	}
}
