package discovery_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/catalog/discovery"
	"github.com/mosaik-go/mosaik/catalog/pb"
	"github.com/mosaik-go/mosaik/internal/framer"
	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/policy"
)

// closedNet is a closed network for tests: its admission requires a
// libp2p-signed ticket from issuer.
type closedNet struct {
	nw     catalog.NetworkID
	issuer crypto.PrivKey
	adm    policy.Requirement
}

func newClosedNet(t testing.TB, name string) *closedNet {
	t.Helper()
	key, id := newKey(t)
	nw := catalog.IDFromString(name)
	return &closedNet{nw: nw, issuer: key, adm: policy.Require(policy.NewSignedTicketValidator(nw, id))}
}

// ticket issues an admission ticket to p that expires at exp.
func (c *closedNet) ticket(t testing.TB, p peer.ID, exp time.Time) catalog.Ticket {
	t.Helper()
	tk, err := policy.IssueSignedTicket(c.issuer, policy.SignedTicket{Subject: p, Network: c.nw, Expires: exp})
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

// node starts a discovery node of the closed network that holds an
// admission ticket (expiring in an hour) and requires one of its peers.
func (c *closedNet) node(t testing.TB, opts ...nodeOpt) *testNode {
	t.Helper()
	cfg := nodeConfig{params: discovery.TestParams()}
	for _, o := range opts {
		o(&cfg)
	}
	n := &testNode{h: newHost(t)}
	if !cfg.noPubSub {
		n.ps = newPubSub(t, n.h, cfg.psOpts...)
	}
	tk := c.ticket(t, n.h.ID(), time.Now().Add(time.Hour))
	n.svc = startService(t, n.h, n.ps, c.nw, append([]discovery.Option{
		discovery.WithParams(cfg.params), discovery.WithAdmission(c.adm),
		discovery.WithEntry(func(e *catalog.Entry) { e.Tickets = append(e.Tickets, tk) }),
	}, cfg.svcOpts...)...)
	return n
}

// sealWith seals a fresh entry of sk's peer in nw holding tickets.
func sealWith(t testing.TB, sk crypto.PrivKey, nw catalog.NetworkID, v catalog.Version, tickets ...catalog.Ticket) *catalog.SignedEntry {
	t.Helper()
	return sealEntryWith(t, sk, nw, v, func(e *catalog.Entry) { e.Tickets = tickets })
}

// TestAdmission_LocalEntryWithoutTicket: a node of a closed network whose
// own entry holds no valid admission ticket fails to start.
func TestAdmission_LocalEntryWithoutTicket(t *testing.T) {
	c := newClosedNet(t, "discovery-test/admission-local")
	h := newHost(t)
	for name, entry := range map[string]func(*catalog.Entry){
		"no ticket": nil,
		"expired ticket": func(e *catalog.Entry) {
			e.Tickets = append(e.Tickets, c.ticket(t, h.ID(), time.Now().Add(-time.Minute)))
		},
		"another peer's ticket": func(e *catalog.Entry) {
			_, other := newKey(t)
			e.Tickets = append(e.Tickets, c.ticket(t, other, time.Now().Add(time.Hour)))
		},
	} {
		t.Run(name, func(t *testing.T) {
			opts := []discovery.Option{discovery.WithParams(discovery.TestParams()), discovery.WithAdmission(c.adm), discovery.WithLogger(testutil.Logger())}
			if entry != nil {
				opts = append(opts, discovery.WithEntry(entry))
			}
			svc, err := discovery.New(h, nil, c.nw, append(opts, withNoGossip())...)
			if err == nil {
				_ = svc.Close()
				t.Fatal("New succeeded without a valid admission ticket")
			}
			if !errors.Is(err, discovery.ErrNotAdmitted) || !errors.Is(err, catalog.ErrUnadmitted) || !errors.Is(err, policy.ErrNoValidTicket) {
				t.Fatalf("New: %v; want ErrNotAdmitted wrapping catalog.ErrUnadmitted and the policy's reason", err)
			}
		})
	}
}

// TestAdmission_EmptyCheckRefused: an admission check that admits every
// entry (nil, policy.Require() with no validator) is a configuration
// error, not a silently open network.
func TestAdmission_EmptyCheckRefused(t *testing.T) {
	h := newHost(t)
	for name, a := range map[string]catalog.Admission{
		"nil":                         nil,
		"policy.Require()":            policy.Require(),
		"policy.Requirement(nil)":     policy.Requirement(nil),
		"policy.Requirement{} (made)": policy.Requirement{},
	} {
		t.Run(name, func(t *testing.T) {
			svc, err := discovery.New(h, nil, catalog.IDFromString("discovery-test/admission-empty"),
				discovery.WithParams(discovery.TestParams()), discovery.WithAdmission(a), discovery.WithLogger(testutil.Logger()), withNoGossip())
			if err == nil {
				_ = svc.Close()
				t.Fatal("New succeeded with an admission check that admits everyone")
			}
			if !strings.Contains(err.Error(), "would admit every entry") {
				t.Fatalf("New: %v, want the empty-admission refusal", err)
			}
		})
	}
}

func withNoGossip() discovery.Option {
	p := discovery.TestParams()
	p.DisableGossip = true
	return discovery.WithParams(p)
}

// TestAdmission_Gossip: a closed node rejects unticketed entries published
// on the catalog topic, counts them as "unadmitted", never forwards them,
// and its gossipsub router (with the node's peer-score parameters) scores
// the sender down; a ticketed entry from the same sender is accepted.
func TestAdmission_Gossip(t *testing.T) {
	c := newClosedNet(t, "discovery-test/admission-gossip")
	scores := &scoreRecorder{}
	params, thresholds := discovery.PeerScoreParams(c.nw)
	noSync := withParams(func(p *discovery.Params) { p.DisableSync = true })
	a := c.node(t, noSync, withPubSubOpts(
		pubsub.WithPeerScore(params, thresholds),
		pubsub.WithPeerScoreInspect(pubsub.PeerScoreInspectFn(scores.inspect), 50*time.Millisecond),
	))
	b := c.node(t, noSync)
	connect(t, b.h, a.h)
	testutil.Eventually(t, 10*time.Second, func() bool { return knows(a.svc, b.h.ID()) && knows(b.svc, a.h.ID()) },
		"the admitted nodes A and B did not learn each other over gossip")

	x := newGossipAttacker(t, c.nw)
	connect(t, x.h, a.h)
	testutil.Eventually(t, 5*time.Second, func() bool { return slices.Contains(x.topic.ListPeers(), a.h.ID()) },
		"attacker does not see A on the catalog topic")
	before := a.svc.Stats()
	const sybils = 5
	var ids []peer.ID
	for range sybils {
		sk, id := newKey(t)
		ids = append(ids, id)
		x.publish(t, entryAnnouncement(t, sealEntry(t, sk, c.nw, catalog.NewVersion(time.Now())).Bytes()))
	}
	// An entry whose ticket is another peer's.
	sk, id := newKey(t)
	ids = append(ids, id)
	x.publish(t, entryAnnouncement(t, sealWith(t, sk, c.nw, catalog.NewVersion(time.Now()), c.ticket(t, x.h.ID(), time.Now().Add(time.Hour))).Bytes()))
	testutil.Eventually(t, 10*time.Second, func() bool {
		return reasonDelta(before, a.svc.Stats())["rejected/unadmitted"] == sybils+1
	}, "A did not reject the unticketed entries as unadmitted: %v", testutil.Lazy(func() any { return reasonDelta(before, a.svc.Stats()) }))
	testutil.Eventually(t, 10*time.Second, func() bool {
		s, ok := scores.score(x.h.ID())
		return ok && s < 0
	}, "the attacker's gossipsub score did not drop")

	// A ticketed entry relayed by the same attacker is accepted and
	// forwarded: the check is about the entry, not the sender.
	okKey, okID := newKey(t)
	x.publish(t, entryAnnouncement(t, sealWith(t, okKey, c.nw, catalog.NewVersion(time.Now()), c.ticket(t, okID, time.Now().Add(time.Hour))).Bytes()))
	testutil.Eventually(t, 10*time.Second, func() bool { return knows(a.svc, okID) && knows(b.svc, okID) },
		"the admitted entry did not reach A and B")
	for _, id := range ids {
		if knows(a.svc, id) || knows(b.svc, id) {
			t.Fatalf("unadmitted peer %s entered a catalog", id)
		}
	}
	if d := reasonDelta(before, b.svc.Stats()); d["rejected/unadmitted"] != 0 {
		t.Fatalf("A forwarded unadmitted entries to B: %v", d)
	}
}

// TestAdmission_SyncV1 and _SyncV2: a closed node refuses a sync whose
// initiator holds no admission ticket, before sending any of its catalog,
// drops unadmitted entries from an admitted initiator's request, and an
// admitted initiator drops them from the responder's pages.
func TestAdmission_SyncV1(t *testing.T) {
	c := newClosedNet(t, "discovery-test/admission-sync-v1")
	noGossip := withParams(func(p *discovery.Params) { p.DisableGossip = true })
	a := c.node(t, withoutPubSub(), noGossip)
	b := c.node(t, withoutPubSub(), noGossip)
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Scale(10*time.Second))
	defer cancel()
	if err := b.svc.SyncWith(ctx, addrInfo(a.h)); err != nil {
		t.Fatal(err)
	}

	syncV1 := func(x host.Host, entries ...[]byte) (*pb.SyncResponse, error) {
		connect(t, x, a.h)
		st, err := x.NewStream(ctx, a.h.ID(), discovery.SyncProtocolV1(c.nw))
		if err != nil {
			return nil, err
		}
		defer st.Reset()
		_ = st.SetDeadline(time.Now().Add(testutil.Scale(10 * time.Second)))
		if err := framer.WriteProto(st, &pb.SyncRequest{Network: c.nw[:], Entries: entries}); err != nil {
			return nil, err
		}
		_ = st.CloseWrite()
		var resp pb.SyncResponse
		err = framer.ReadProto(bufio.NewReader(st), 1<<20, &resp)
		return &resp, err
	}
	// Unticketed, with and without its own entry.
	x := newHost(t)
	before := a.svc.Stats()
	for _, req := range [][][]byte{nil, {sealEntry(t, hostKey(t, x), c.nw, catalog.NewVersion(time.Now())).Bytes()}} {
		resp, err := syncV1(x, req...)
		var se *network.StreamError
		if !errors.As(err, &se) || se.ErrorCode != discovery.CodeUnknownPeer {
			t.Fatalf("unadmitted sync 1.0.0: response %v, err %v; want a reset with CodeUnknownPeer", resp, err)
		}
	}
	testutil.Eventually(t, 5*time.Second, func() bool {
		return a.svc.Stats().SyncErrorsBy["in/unadmitted"] == before.SyncErrorsBy["in/unadmitted"]+2
	}, "refusals not counted: %v", testutil.Lazy(func() any { return a.svc.Stats().SyncErrorsBy }))
	if knows(a.svc, x.ID()) {
		t.Fatal("the unadmitted initiator entered the catalog")
	}

	// Admitted, carrying an unadmitted third peer.
	y := newHost(t)
	third, thirdID := newKey(t)
	resp, err := syncV1(y,
		sealWith(t, hostKey(t, y), c.nw, catalog.NewVersion(time.Now()), c.ticket(t, y.ID(), time.Now().Add(time.Hour))).Bytes(),
		sealEntry(t, third, c.nw, catalog.NewVersion(time.Now())).Bytes())
	if err != nil {
		t.Fatalf("admitted sync 1.0.0: %v", err)
	}
	if len(resp.Entries) != 2 { // A and B
		t.Fatalf("admitted initiator got %d entries, want 2", len(resp.Entries))
	}
	if !knows(a.svc, y.ID()) || knows(a.svc, thirdID) {
		t.Fatalf("after the admitted sync: knows initiator %v (want true), knows third %v (want false)", knows(a.svc, y.ID()), knows(a.svc, thirdID))
	}
}

func TestAdmission_SyncV2(t *testing.T) {
	c := newClosedNet(t, "discovery-test/admission-sync-v2")
	noGossip := withParams(func(p *discovery.Params) { p.DisableGossip = true })
	a := c.node(t, withoutPubSub(), noGossip)
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Scale(10*time.Second))
	defer cancel()

	// An unadmitted initiator: its hello is refused.
	x := newHost(t)
	connect(t, x, a.h)
	before := a.svc.Stats()
	st, err := x.NewStream(ctx, a.h.ID(), discovery.SyncProtocolV2(c.nw))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Reset()
	_ = st.SetDeadline(time.Now().Add(testutil.Scale(10 * time.Second)))
	hello := frame(t, &pb.SyncHello{Network: c.nw[:], Entry: sealEntry(t, hostKey(t, x), c.nw, catalog.NewVersion(time.Now())).Bytes(), Salt: testSalt})
	digest := frame(t, &pb.SyncDigest{Last: true})
	if _, err := st.Write(append(hello, digest...)); err != nil {
		t.Fatal(err)
	}
	_ = st.CloseWrite()
	se, err := remoteReset(st)
	if se == nil || se.ErrorCode != discovery.CodeUnknownPeer {
		t.Fatalf("unadmitted hello: stream ended with %v; want a reset with CodeUnknownPeer", err)
	}
	testutil.Eventually(t, 5*time.Second, func() bool {
		return a.svc.Stats().SyncErrorsBy["in/unadmitted"] == before.SyncErrorsBy["in/unadmitted"]+1
	}, "refusal not counted: %v", testutil.Lazy(func() any { return a.svc.Stats().SyncErrorsBy }))
	if knows(a.svc, x.ID()) {
		t.Fatal("the unadmitted initiator entered the catalog")
	}

	// An open node (no admission) that holds an unadmitted peer: an
	// admitted node syncing with it (2.0.0) takes nothing from it, and it
	// learns nothing of the admitted one's catalog.
	o := newNode(t, c.nw, withoutPubSub(), noGossip)
	sk, stranger := newKey(t)
	if _, err := o.svc.Merge(sealEntry(t, sk, c.nw, catalog.NewVersion(time.Now()))); err != nil {
		t.Fatal(err)
	}
	before = a.svc.Stats()
	if err := a.svc.SyncWith(ctx, addrInfo(o.h)); err != nil {
		t.Fatalf("admitted node syncing with an open one: %v", err)
	}
	if knows(a.svc, o.h.ID()) || knows(a.svc, stranger) {
		t.Fatal("an unadmitted entry came in through the sync's pages")
	}
	if d := reasonDelta(before, a.svc.Stats()); d["rejected/unadmitted"] < 2 {
		t.Fatalf("unadmitted entries of the pages not counted: %v", d)
	}
	// A member of A's catalog never reaches o. (A's own entry does: A
	// sent it in its hello when it synced with o.)
	mk, member := newKey(t)
	if _, err := a.svc.Merge(sealWith(t, mk, c.nw, catalog.NewVersion(time.Now()), c.ticket(t, member, time.Now().Add(time.Hour)))); err != nil {
		t.Fatal(err)
	}
	if err := o.svc.SyncWith(ctx, addrInfo(a.h)); err == nil {
		t.Fatal("the open node's sync with the closed one succeeded")
	}
	if knows(o.svc, member) {
		t.Fatal("the closed node's catalog reached the unadmitted initiator")
	}
	// Nor when the closed node starts the sync: the open responder's want
	// (it lacks the member) is not answered.
	before = a.svc.Stats()
	if err := a.svc.SyncWith(ctx, addrInfo(o.h)); err == nil {
		t.Fatal("the closed node answered the want of an unadmitted responder")
	}
	if knows(o.svc, member) {
		t.Fatal("the closed node's catalog reached the unadmitted responder")
	}
	if got := a.svc.Stats().SyncErrorsBy["out/unadmitted"]; got != before.SyncErrorsBy["out/unadmitted"]+1 {
		t.Fatalf("out/unadmitted moved %d -> %d", before.SyncErrorsBy["out/unadmitted"], got)
	}
}

// A member of a closed network that starts a sync 1.0.0 with a peer it
// does not hold (here on connect, with an outsider that holds no ticket
// and no entry) sends its own entry alone, not its catalog (review
// probe: the outsider received every entry of the closed network).
func TestAdmission_SyncV1InitiatorGivesOutsidersNothing(t *testing.T) {
	c := newClosedNet(t, "discovery-test/admission-sync-v1-initiator")
	m := c.node(t, withoutPubSub(), withParams(func(p *discovery.Params) { p.DisableGossip = true }))
	zk, z := newKey(t)
	if _, err := m.svc.Merge(sealWith(t, zk, c.nw, catalog.NewVersion(time.Now()), c.ticket(t, z, time.Now().Add(time.Hour)))); err != nil {
		t.Fatal(err)
	}
	x := newHost(t)
	got := make(chan []peer.ID, 1)
	x.SetStreamHandler(discovery.SyncProtocolV1(c.nw), func(st network.Stream) {
		var req pb.SyncRequest
		if err := framer.ReadProto(bufio.NewReader(st), 8<<20, &req); err != nil {
			_ = st.Reset()
			return
		}
		var ids []peer.ID
		for _, b := range req.Entries {
			if e, err := catalog.OpenEntry(b, 0); err == nil {
				ids = append(ids, e.Entry.PeerID)
			}
		}
		got <- ids
		_ = st.Reset()
	})
	connect(t, x, m.h)
	select {
	case ids := <-got:
		if !slices.Equal(ids, []peer.ID{m.h.ID()}) {
			t.Fatalf("the outsider received entries %v; want the initiator's own (%s) alone", ids, m.h.ID())
		}
	case <-time.After(testutil.Scale(10 * time.Second)):
		t.Fatal("no sync 1.0.0 request reached the outsider")
	}
}

// TestAdmission_Expiry: an entry leaves the catalog when its admission
// ticket expires, long before it would go stale.
func TestAdmission_Expiry(t *testing.T) {
	c := newClosedNet(t, "discovery-test/admission-expiry")
	slow := withParams(func(p *discovery.Params) {
		p.DisableGossip = true
		p.Catalog.PurgeAfter = time.Minute
		p.AntiEntropyInterval = 0
	})
	a := c.node(t, withoutPubSub(), slow)
	sk, id := newKey(t)
	exp := time.Now().Add(testutil.Scale(2 * time.Second))
	if _, err := a.svc.Merge(sealWith(t, sk, c.nw, catalog.NewVersion(time.Now()), c.ticket(t, id, exp))); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return !knows(a.svc, id) }, "the entry outlived its admission ticket")
	if early := time.Until(exp); early > 0 {
		t.Fatalf("purged %v before the ticket expired", early)
	}
}

// TestAdmission_DHTValidator: the DHT validator of a closed network
// refuses entries of that network without a valid admission ticket, and
// judges other networks' entries as the open validator does.
func TestAdmission_DHTValidator(t *testing.T) {
	c := newClosedNet(t, "discovery-test/admission-dht")
	v := discovery.Validator{Network: c.nw, Admission: c.adm}
	sk, id := newKey(t)
	now := catalog.NewVersion(time.Now())
	key := discovery.DHTKey(c.nw, id)
	bare := sealEntry(t, sk, c.nw, now).Bytes()
	ticketed := sealWith(t, sk, c.nw, now, c.ticket(t, id, time.Now().Add(time.Hour))).Bytes()
	expired := sealWith(t, sk, c.nw, now, c.ticket(t, id, time.Now().Add(-time.Second))).Bytes()
	if err := v.Validate(key, bare); !errors.Is(err, catalog.ErrUnadmitted) {
		t.Fatalf("unticketed entry: %v, want ErrUnadmitted", err)
	}
	if err := v.Validate(key, expired); !errors.Is(err, catalog.ErrUnadmitted) {
		t.Fatalf("expired ticket: %v, want ErrUnadmitted", err)
	}
	if err := v.Validate(key, ticketed); err != nil {
		t.Fatalf("ticketed entry: %v", err)
	}
	if err := (discovery.Validator{}).Validate(key, bare); err != nil {
		t.Fatalf("open validator: %v", err)
	}
	other := catalog.IDFromString("discovery-test/admission-dht-other")
	if err := v.Validate(discovery.DHTKey(other, id), sealEntry(t, sk, other, now).Bytes()); err != nil {
		t.Fatalf("another network's entry: %v", err)
	}
	if i, err := v.Select(key, [][]byte{bare, ticketed}); err != nil || i != 1 {
		t.Fatalf("Select = %d, %v; want the ticketed entry", i, err)
	}
}

// meetsOutsider starts a member m of a new closed network, with params
// tuned by tune and one other member z in its catalog, connects an open
// node o (an outsider) to it and waits for m's first sync with o to end
// unadmitted (o wants z).
func meetsOutsider(t *testing.T, name string, tune func(*discovery.Params)) (m, o *testNode, z peer.ID) {
	t.Helper()
	c := newClosedNet(t, name)
	m = c.node(t, withoutPubSub(), withParams(func(p *discovery.Params) { p.DisableGossip = true; tune(p) }))
	zk, z := newKey(t)
	if _, err := m.svc.Merge(sealWith(t, zk, c.nw, catalog.NewVersion(time.Now()), c.ticket(t, z, time.Now().Add(time.Hour)))); err != nil {
		t.Fatal(err)
	}
	o = newNode(t, c.nw, withoutPubSub(), withParams(func(p *discovery.Params) { p.DisableGossip = true }))
	connect(t, o.h, m.h)
	testutil.Eventually(t, 10*time.Second, func() bool {
		return m.svc.Stats().SyncErrorsBy["out/unadmitted"] >= 1
	}, "m's sync with the outsider did not end unadmitted")
	return m, o, z
}

// noSecondUnadmitted fails t if m counts a second unadmitted sync within
// 2 s: what, a retry or a periodic sync, would come well within that.
func noSecondUnadmitted(t *testing.T, m *testNode, what string) {
	t.Helper()
	testutil.Never(t, 2*time.Second, 100*time.Millisecond, func() string {
		if n := m.svc.Stats().SyncErrorsBy["out/unadmitted"]; n > 1 {
			return fmt.Sprintf("%d unadmitted syncs with one outsider: %s", n, what)
		}
		return ""
	})
}

// A closed network's member that finds a responder outside it (its want is
// not answered) does not retry: the refusal is final, like another
// network's, not a busy responder's.
func TestAdmission_UnadmittedResponderIsNotRetried(t *testing.T) {
	// Only the connect sync: no anti-entropy, cascade, settle sync or push.
	m, o, z := meetsOutsider(t, "discovery-test/admission-no-retry", func(p *discovery.Params) {
		p.AntiEntropyInterval, p.CascadeBelow, p.SettleDelay, p.BumpInterval = 0, 0, time.Hour, 0
	})
	// Retries would come within a few backoffs (100 ms doubling).
	noSecondUnadmitted(t, m, "retried")
	if knows(o.svc, z) {
		t.Fatal("the outsider learned a member")
	}
}

// A closed network's anti-entropy picks members only: with an outsider as
// its one connected peer, a member runs no periodic sync with it (each
// would be refused both ways).
func TestAdmission_AntiEntropySkipsOutsiders(t *testing.T) {
	m, _, _ := meetsOutsider(t, "discovery-test/admission-anti-entropy", func(p *discovery.Params) {
		p.CascadeBelow, p.BumpInterval = 0, 0
		p.AntiEntropyInterval = 200 * time.Millisecond
	})
	// The settle sync (SettleDelay 250 ms) and anti-entropy (every
	// 100-300 ms) would each sync with the outsider again.
	noSecondUnadmitted(t, m, "a settle or anti-entropy sync")
}

// TestAdmission_OwnAdmissionEnds: a node whose own admission ticket
// expires stops announcing (every neighbour would reject its heartbeats
// and score it down), and resumes once UpdateLocal gives it a valid
// ticket. It kept announcing, rejected at every hop.
func TestAdmission_OwnAdmissionEnds(t *testing.T) {
	c := newClosedNet(t, "discovery-test/admission-own-end")
	h := newHost(t)
	ps := newPubSub(t, h)
	ends := time.Now().Add(time.Second)
	short := c.ticket(t, h.ID(), ends)
	p := discovery.TestParams()
	p.AnnounceInterval, p.AnnounceJitter = 100*time.Millisecond, 0
	svc := startService(t, h, ps, c.nw, discovery.WithParams(p), discovery.WithAdmission(c.adm),
		discovery.WithEntry(func(e *catalog.Entry) { e.Tickets = append(e.Tickets, short) }))
	announced := func() uint64 { return svc.Stats().Announcements }
	testutil.Eventually(t, 5*time.Second, func() bool { return announced() > 0 }, "no announcement while admitted")
	// Past the expiry, heartbeats go on (the version moves) but nothing
	// is announced.
	testutil.Eventually(t, 5*time.Second, func() bool { return time.Now().After(ends) && svc.Local().Entry.Version.UpdatedAt().After(ends) }, "no heartbeat after the expiry")
	n := announced()
	for range 3 { // three more heartbeats
		v := svc.Local().Entry.Version
		testutil.Eventually(t, 5*time.Second, func() bool { return svc.Local().Entry.Version.Compare(v) > 0 }, "no heartbeat")
	}
	if got := announced(); got != n {
		t.Fatalf("announced %d times after the admission ended", got-n)
	}
	// A renewed ticket: announcing again.
	renewed := c.ticket(t, h.ID(), time.Now().Add(time.Hour))
	if _, err := svc.UpdateLocal(func(e *catalog.Entry) { e.Tickets = []catalog.Ticket{renewed} }); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return announced() > n }, "no announcement after the ticket was renewed")
}
