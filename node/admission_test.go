package node_test

import (
	"context"
	"crypto/rand"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/catalog/discovery"
	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/node"
	"github.com/mosaik-go/mosaik/policy"
)

func newIdentity(t testing.TB) (crypto.PrivKey, peer.ID) {
	t.Helper()
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return k, id
}

// TestAdmission_ClosedNetwork: admitted nodes (WithAdmission, each with
// its issuer-signed ticket) find each other; a node without a ticket that
// joins them (with admission off locally, as an outsider would) never
// enters any of their catalogs; and with admission on locally, node.New
// refuses to start without a ticket.
func TestAdmission_ClosedNetwork(t *testing.T) {
	const name = "node-test/closed"
	nw := catalog.IDFromString(name)
	issuer, issuerID := newIdentity(t)
	admission := node.WithAdmission(policy.NewSignedTicketValidator(nw, issuerID))
	admitted := func(opts ...node.Option) *node.Node {
		k, id := newIdentity(t)
		tk, err := policy.IssueSignedTicket(issuer, policy.SignedTicket{Subject: id, Network: nw, Expires: time.Now().Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		return startNode(t, name, append([]node.Option{admission, node.WithIdentity(k),
			node.WithEntry(func(e *catalog.Entry) { e.Tickets = append(e.Tickets, tk) })}, opts...)...)
	}
	a := admitted()
	b := admitted(bootstrapOf(a))
	c := admitted(bootstrapOf(b))
	members := []*node.Node{a, b, c}
	testutil.Eventually(t, 20*time.Second, func() bool { return allKnowAll(members) }, "the admitted nodes did not find each other")

	outsider := startNode(t, name, bootstrapOf(a), node.WithBootstrapPeers(b.AddrInfo(), c.AddrInfo()))
	testutil.Eventually(t, 10*time.Second, func() bool {
		return a.Discovery().Stats().RejectedBy["rejected/unadmitted"] > 0
	}, "the outsider's entry was never refused as unadmitted")
	testutil.Never(t, testutil.Scale(3*time.Second), 100*time.Millisecond, func() string {
		for _, m := range members {
			if _, ok := m.Catalog().Get(outsider.ID()); ok {
				return "the outsider entered " + m.ID().String() + "'s catalog"
			}
		}
		return ""
	})

	// The node's DHT validator knows the admission: it refuses to store
	// the outsider's entry, and takes a member's.
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Scale(10*time.Second))
	defer cancel()
	if err := a.DHT().Validator.Validate(discovery.DHTKey(nw, outsider.ID()), outsider.Discovery().Local().Bytes()); !errors.Is(err, catalog.ErrUnadmitted) {
		t.Fatalf("DHT validator on the outsider's entry: %v, want ErrUnadmitted", err)
	}
	if err := a.DHT().PutValue(ctx, discovery.DHTKey(nw, outsider.ID()), outsider.Discovery().Local().Bytes()); !errors.Is(err, catalog.ErrUnadmitted) {
		t.Fatalf("DHT put of the outsider's entry: %v, want ErrUnadmitted", err)
	}
	if err := a.DHT().Validator.Validate(discovery.DHTKey(nw, b.ID()), b.Discovery().Local().Bytes()); err != nil {
		t.Fatalf("DHT validator on a member's entry: %v", err)
	}

	// A newcomer with a ticket still joins while the outsider is around.
	d := admitted(bootstrapOf(c))
	testutil.Eventually(t, 20*time.Second, func() bool { return allKnowAll(append(members, d)) }, "an admitted newcomer was not seen by all")

	k, _ := newIdentity(t)
	n, err := node.New(name, loopback, node.WithFastProfile(), node.WithLogger(testutil.Logger()), admission, node.WithIdentity(k))
	if err == nil {
		_ = n.Close()
		t.Fatal("node.New started a node of a closed network without an admission ticket")
	}
	if !errors.Is(err, discovery.ErrNotAdmitted) || !errors.Is(err, catalog.ErrUnadmitted) {
		t.Fatalf("node.New = %v, want discovery.ErrNotAdmitted", err)
	}
}

// TestAdmission_NoValidatorRefused: WithAdmission() without a validator
// is an error; it left the network open, against the caller's intent.
func TestAdmission_NoValidatorRefused(t *testing.T) {
	n, err := node.New("node-test/admission-none", node.WithListenAddrs("/ip4/127.0.0.1/tcp/0"), node.WithFastProfile(),
		node.WithoutDHT(), node.WithLogger(testutil.Logger()), node.WithAdmission())
	if err == nil {
		_ = n.Close()
		t.Fatal("node.New with WithAdmission() and no validator succeeded")
	}
	if !strings.Contains(err.Error(), "WithAdmission() without a ticket validator") {
		t.Fatalf("node.New: %v, want the no-validator refusal", err)
	}
}

// TestWithEntry_RepeatedAddsUp: a second WithEntry (say, one layer's
// admission ticket, another's stream tickets) runs after the first; it
// replaced it (found by the node review).
func TestWithEntry_RepeatedAddsUp(t *testing.T) {
	t1 := catalog.Ticket{Class: catalog.IDFromString("entry-class-1"), Data: []byte("one")}
	t2 := catalog.Ticket{Class: catalog.IDFromString("entry-class-2"), Data: []byte("two")}
	n, err := node.New("node-test/with-entry", node.WithListenAddrs("/ip4/127.0.0.1/tcp/0"), node.WithFastProfile(), node.WithoutDHT(),
		node.WithLogger(testutil.Logger()),
		node.WithEntry(func(e *catalog.Entry) { e.Tickets = append(e.Tickets, t1) }),
		node.WithEntry(func(e *catalog.Entry) { e.Tickets = append(e.Tickets, t2) }))
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	var classes []catalog.TicketClass
	for _, tk := range n.Catalog().Local().Entry.Tickets {
		classes = append(classes, tk.Class)
	}
	if len(classes) != 2 || !slices.Contains(classes, t1.Class) || !slices.Contains(classes, t2.Class) {
		t.Fatalf("local entry ticket classes %v, want both WithEntry's", classes)
	}
}
