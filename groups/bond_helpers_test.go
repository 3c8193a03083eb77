package groups

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"lukechampine.com/blake3"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/catalog/discovery"
	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/policy"
)

// testNetwork is the network of the bond tests.
var testNetwork = catalog.IDFromString("groups-bond-test")

// bondNode is a libp2p host on 127.0.0.1 with gossipsub, discovery and
// (unless withoutService) a groups service, closed at the end of the test
// in reverse order.
type bondNode struct {
	h    host.Host
	disc *discovery.Service
	svc  *Service
	net  *bondNet
}

type nodeCfg struct {
	key       crypto.PrivKey
	tickets   []catalog.Ticket
	noService bool
	params    BondParams
	svcOpts   []ServiceOption
	manual    bool
	bare      bool
}

type nodeOpt func(*nodeCfg)

func withKey(k crypto.PrivKey) nodeOpt         { return func(c *nodeCfg) { c.key = k } }
func withTickets(ts ...catalog.Ticket) nodeOpt { return func(c *nodeCfg) { c.tickets = ts } }
func withoutService() nodeOpt                  { return func(c *nodeCfg) { c.noService = true } }
func withParams(f func(*BondParams)) nodeOpt   { return func(c *nodeCfg) { f(&c.params) } }
func withSvcOpts(o ...ServiceOption) nodeOpt {
	return func(c *nodeCfg) { c.svcOpts = append(c.svcOpts, o...) }
}
func bare() nodeOpt            { return func(c *nodeCfg) { c.bare = true } }
func withManualDials() nodeOpt { return func(c *nodeCfg) { c.manual = true } }

func newKey(t testing.TB) (crypto.PrivKey, peer.ID) {
	t.Helper()
	sk, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(sk)
	if err != nil {
		t.Fatal(err)
	}
	return sk, id
}

func newBondNode(t testing.TB, opts ...nodeOpt) *bondNode {
	t.Helper()
	cfg := nodeCfg{params: TestBondParams()}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.key == nil {
		cfg.key, _ = newKey(t)
	}
	h, err := libp2p.New(libp2p.Identity(cfg.key), libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"),
		libp2p.DisableRelay(), libp2p.DisableMetrics())
	if err != nil {
		t.Fatalf("libp2p.New: %v", err)
	}
	t.Cleanup(func() { _ = h.Close() })
	if cfg.bare { // a host without discovery: no peer has its entry
		return &bondNode{h: h}
	}
	gp := pubsub.DefaultGossipSubParams()
	gp.HeartbeatInterval = 100 * time.Millisecond
	gp.HeartbeatInitialDelay = 10 * time.Millisecond
	psCtx, psCancel := context.WithCancel(context.Background())
	ps, err := pubsub.NewGossipSub(psCtx, h, append(discovery.GossipSubOptions(),
		pubsub.WithGossipSubParams(gp), pubsub.WithLogger(testutil.Logger()))...)
	if err != nil {
		psCancel()
		t.Fatalf("NewGossipSub: %v", err)
	}
	t.Cleanup(psCancel)
	d, err := discovery.New(h, ps, testNetwork, discovery.WithParams(discovery.TestParams()), discovery.WithLogger(testutil.Logger()),
		discovery.WithEntry(func(e *catalog.Entry) { e.Tickets = append(e.Tickets, cfg.tickets...) }))
	if err != nil {
		t.Fatalf("discovery.New: %v", err)
	}
	t.Cleanup(func() { _ = d.Close() })
	n := &bondNode{h: h, disc: d}
	if cfg.noService {
		return n
	}
	svc, err := NewService(h, d, append([]ServiceOption{WithLogger(testutil.Logger()), WithBondParams(cfg.params)}, cfg.svcOpts...)...)
	if err != nil {
		t.Fatalf("NewService: %v", err)
	}
	t.Cleanup(func() { _ = svc.Close() })
	n.svc, n.net = svc, svc.net.(*bondNet)
	n.net.manual = cfg.manual
	return n
}

// meshed makes every node know every other: each syncs its catalog with
// the first, then all wait until every catalog holds every node.
func meshed(t testing.TB, nodes ...*bondNode) {
	t.Helper()
	for _, n := range nodes[1:] {
		ctx, cancel := context.WithTimeout(context.Background(), testutil.Scale(5*time.Second))
		err := n.disc.SyncWith(ctx, peer.AddrInfo{ID: nodes[0].h.ID(), Addrs: nodes[0].h.Addrs()})
		cancel()
		if err != nil {
			t.Fatalf("SyncWith: %v", err)
		}
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		for _, a := range nodes {
			for _, b := range nodes {
				if _, ok := a.disc.Catalog().Get(b.h.ID()); !ok {
					return false
				}
			}
		}
		return true
	}, "catalogs did not converge")
}

// testSpec is a group of the given key with short heartbeats.
func testSpec(key string, role Role, tickets ...policy.TicketValidator) spec {
	k := blake3.Sum256([]byte(key))
	id := catalog.HashID(k[:])
	for _, v := range tickets {
		c := v.Class()
		id = id.Derive(c[:])
	}
	return spec{ID: id, Key: k, Role: role, Tickets: tickets,
		Heartbeat: 200 * time.Millisecond, HeartbeatJitter: 50 * time.Millisecond, MissedHeartbeats: 5}
}

// recInbox records what the bond layer tells the core.
type recInbox struct {
	mu     sync.Mutex
	up     map[peer.ID]Role
	events []string // "up <peer>", "down <peer> <code>", in order
	downs  map[Code]int
	frames []recFrame
}

type recFrame struct {
	from peer.ID
	kind byte
	body []byte
}

func newInbox() *recInbox { return &recInbox{up: map[peer.ID]Role{}, downs: map[Code]int{}} }

func (r *recInbox) Deliver(from peer.ID, kind byte, body []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.up[from]; !ok {
		r.events = append(r.events, fmt.Sprintf("deliver from %s while down", from))
	}
	r.frames = append(r.frames, recFrame{from, kind, body})
}

func (r *recInbox) BondUp(p peer.ID, role Role) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.up[p]; ok {
		r.events = append(r.events, fmt.Sprintf("up %s twice", p))
	}
	r.up[p] = role
	r.events = append(r.events, "up "+p.String())
}

func (r *recInbox) BondDown(p peer.ID, code Code) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.up[p]; !ok {
		r.events = append(r.events, fmt.Sprintf("down %s while down", p))
	}
	delete(r.up, p)
	r.downs[code]++
	r.events = append(r.events, fmt.Sprintf("down %s %d", p, code))
}

// peers returns the peers bonded now, sorted.
func (r *recInbox) peers() []peer.ID {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []peer.ID
	for p := range r.up {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

func (r *recInbox) roleOf(p peer.ID) (Role, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	role, ok := r.up[p]
	return role, ok
}

func (r *recInbox) downCount(c Code) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.downs[c]
}

func (r *recInbox) received() []recFrame {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.frames)
}

// misorders returns the ordering violations seen (BondUp twice, BondDown
// of a peer that is down, Deliver from a peer that is down).
func (r *recInbox) misorders() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.events {
		if strings.Contains(e, "twice") || strings.Contains(e, "while down") {
			out = append(out, e)
		}
	}
	return out
}

// attach attaches s on n with a recording inbox and closes it at the end
// of the test.
func (n *bondNode) attach(t testing.TB, s spec) (*groupNet, *recInbox) {
	t.Helper()
	in := newInbox()
	tr, err := n.net.attach(s, in)
	if err != nil {
		t.Fatalf("attach: %v", err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	return tr.(*groupNet), in
}

func sortedIDs(ns ...*bondNode) []peer.ID {
	var out []peer.ID
	for _, n := range ns {
		out = append(out, n.h.ID())
	}
	slices.Sort(out)
	return out
}
