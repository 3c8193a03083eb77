package discovery_test

import (
	"slices"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/network"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/catalog/discovery"
	"github.com/mosaik-go/mosaik/internal/testutil"
)

// TestGossipLink_RepairedAfterWriterDies: when a's pubsub writer stream to
// b dies while they stay connected, go-libp2p-pubsub forgets b's topics
// and b never sends them again, so b is no topic peer of a's any more (a
// publishes nothing to it). The service sees a connected peer of its
// network outside the topic and resets the pubsub streams with it, after
// which each side knows the other's topics again.
func TestGossipLink_RepairedAfterWriterDies(t *testing.T) {
	a, b, sees := linkedPair(t, "discovery-test/gossip-link")

	killWriter(t, a, b)
	// The loss is what the repair is for: a forgets b's subscription.
	testutil.Eventually(t, 5*time.Second, func() bool { return !sees(a, b) }, "a kept b as a topic peer after its writer died")
	testutil.Eventually(t, 10*time.Second, func() bool { return sees(a, b) && sees(b, a) },
		"the gossip link was not repaired")
	// A first repair can lose a race (gossiplink.go) and be followed by a
	// second; never more.
	if got := a.svc.Stats().LinksRepaired; got < 1 || got > 2 {
		t.Errorf("a repaired %d links, want 1 or 2", got)
	}
	if a.h.Network().Connectedness(b.h.ID()) != network.Connected {
		t.Error("the repair closed the connection")
	}
}

// TestGossipLink_RepairedTwiceInWindow: a link that breaks again after a
// repair is repaired a second time within linkRepairWindow (a first repair
// that did not take looks the same to the service), where a single repair
// per window left it broken for ten minutes.
func TestGossipLink_RepairedTwiceInWindow(t *testing.T) {
	a, b, sees := linkedPair(t, "discovery-test/gossip-link-twice")
	for round := 1; round <= 2; round++ {
		killWriter(t, a, b)
		testutil.Eventually(t, 5*time.Second, func() bool { return !sees(a, b) }, "round %d: a kept b as a topic peer after its writer died", round)
		testutil.Eventually(t, 15*time.Second, func() bool { return sees(a, b) && sees(b, a) && a.svc.Stats().LinksRepaired >= uint64(round) },
			"round %d: the gossip link was not repaired", round)
		if a.svc.Stats().LinksRepaired == 2 {
			// Round 1's first repair lost the race and the second one
			// restored the link: the window's two repairs are spent.
			t.Log("the first repair did not take; the second did")
			break
		}
	}
	if got := a.svc.Stats().LinksRepaired; got != 2 {
		t.Errorf("a repaired %d links, want 2", got)
	}
}

// linkedPair is two connected nodes of the network name that are each
// other's catalog-topic peers, with anti-entropy syncs off (so the catalog
// could not hide a broken link), and sees(x, y): whether x's router holds
// y as a topic peer.
func linkedPair(t *testing.T, name string) (a, b *testNode, sees func(x, y *testNode) bool) {
	t.Helper()
	nw := catalog.IDFromString(name)
	noAE := withParams(func(p *discovery.Params) { p.AntiEntropyInterval = 0 })
	a, b = newNode(t, nw, noAE), newNode(t, nw, noAE)
	topic := discovery.TopicName(nw)
	sees = func(x, y *testNode) bool { return slices.Contains(x.ps.ListPeers(topic), y.h.ID()) }
	connect(t, a.h, b.h)
	testutil.Eventually(t, 10*time.Second, func() bool { return sees(a, b) && sees(b, a) }, "a and b are not topic peers")
	return a, b, sees
}

// killWriter resets x's pubsub writer stream to y, as a dying connection
// does; they stay connected.
func killWriter(t *testing.T, x, y *testNode) {
	t.Helper()
	reset := 0
	for _, c := range x.h.Network().ConnsToPeer(y.h.ID()) {
		for _, st := range c.GetStreams() {
			if st.Stat().Direction == network.DirOutbound && slices.Contains(pubsub.GossipSubDefaultProtocols, st.Protocol()) {
				_ = st.Reset()
				reset++
			}
		}
	}
	if reset == 0 {
		t.Fatal("no pubsub writer stream to reset")
	}
}
