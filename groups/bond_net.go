package groups

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/policy"
)

// bondNet is the bond layer of a Service over a libp2p host: it serves the
// network's bond protocol, and bonds the members of every attached group.
type bondNet struct {
	h       host.Host
	d       Discovery
	network catalog.NetworkID
	self    peer.ID
	proto   protocol.ID // bonds 1.1.0
	proto10 protocol.ID // bonds 1.0.0: still served and dialed; no pieces
	params  BondParams
	log     *slog.Logger
	fault   FaultHook
	m       *bondMetrics
	// manual turns the triggers off (tests that dial by hand).
	manual bool

	refusals, ends codeCounts

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // accept handlers and the entry watcher

	mu     sync.Mutex
	groups map[catalog.ID]*groupNet
	closed bool
	once   sync.Once
}

func newBondNet(h host.Host, d Discovery, p BondParams, log *slog.Logger, mp metric.MeterProvider, fault FaultHook) (*bondNet, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	n := &bondNet{h: h, d: d, network: d.Network(), self: h.ID(), proto: ProtocolID(d.Network()),
		proto10: ProtocolID10(d.Network()), params: p,
		log: log, fault: fault, groups: map[catalog.ID]*groupNet{}}
	m, err := newBondMetrics(mp, n)
	if err != nil {
		return nil, fmt.Errorf("groups: metrics: %w", err)
	}
	n.m = m
	for _, id := range []protocol.ID{n.proto, n.proto10} {
		if slices.Contains(h.Mux().Protocols(), id) {
			_ = m.reg.Unregister()
			return nil, fmt.Errorf("groups: %s is already handled on host %s", id, h.ID())
		}
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	h.SetStreamHandler(n.proto, n.handle)
	h.SetStreamHandler(n.proto10, n.handle)
	n.wg.Add(1)
	go n.watchLocal()
	return n, nil
}

// close stops serving the protocol, closes every group still attached
// (the core normally closed them already) and waits for every goroutine.
func (n *bondNet) close() error {
	n.once.Do(func() {
		n.h.RemoveStreamHandler(n.proto)
		n.h.RemoveStreamHandler(n.proto10)
		n.h.RemoveStreamHandler(SnapshotProtocolID(n.network))
		n.h.RemoveStreamHandler(SnapshotPipelineProtocolID(n.network))
		n.mu.Lock()
		n.closed = true
		gs := slices.Collect(maps.Values(n.groups))
		n.mu.Unlock()
		for _, g := range gs {
			_ = g.Close()
		}
		n.cancel()
		n.wg.Wait()
		_ = n.m.reg.Unregister()
	})
	return nil
}

// attach starts bonding the members of group s: it lists the group in the
// local entry and starts the group's trigger loop.
func (n *bondNet) frameLimit() int { return n.params.MaxFrameSize }

func (n *bondNet) attach(s spec, in inbox) (transport, error) {
	if s.Role != RoleWriter && s.Role != RoleReader {
		return nil, fmt.Errorf("groups: attach: invalid role %d", s.Role)
	}
	if s.Heartbeat <= 0 || s.HeartbeatJitter <= 0 || s.HeartbeatJitter > s.Heartbeat || s.MissedHeartbeats < 1 {
		return nil, fmt.Errorf("groups: attach: invalid heartbeat %v, jitter %v, missed %d", s.Heartbeat, s.HeartbeatJitter, s.MissedHeartbeats)
	}
	g := &groupNet{n: n, spec: s, key: bondKey(s.Key), in: in, slots: map[peer.ID]*bond{}, dialing: map[peer.ID]bool{},
		retry: map[peer.ID]*retry{}, graced: map[peer.ID]time.Time{}, kick: make(chan struct{}, 1), groupAttr: attribute.String("group", s.ID.Short()),
		log: n.log.With("group", s.ID.Short()), protectTag: "mosaik-groups-" + s.ID.Short()}
	g.ctx, g.cancel = context.WithCancel(n.ctx)
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		g.cancel()
		return nil, errNetClosed
	}
	if _, ok := n.groups[s.ID]; ok {
		n.mu.Unlock()
		g.cancel()
		return nil, errAttached
	}
	n.groups[s.ID] = g
	n.mu.Unlock()
	if _, err := n.d.UpdateLocal(func(e *catalog.Entry) {
		e.Groups = slices.DeleteFunc(e.Groups, func(m catalog.Membership) bool { return m.Group == s.ID })
		e.Groups = append(e.Groups, catalog.Membership{Group: s.ID, Role: uint8(s.Role)})
	}); err != nil {
		n.detach(g)
		g.cancel()
		return nil, fmt.Errorf("groups: list the group in the local entry: %w", err)
	}
	g.wg.Add(1)
	go g.triggerLoop()
	return g, nil
}

func (n *bondNet) detach(g *groupNet) {
	n.mu.Lock()
	if n.groups[g.spec.ID] == g {
		delete(n.groups, g.spec.ID)
	}
	n.mu.Unlock()
}

func (n *bondNet) group(id catalog.ID) *groupNet {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.groups[id]
}

func (n *bondNet) allGroups() []*groupNet {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Collect(maps.Values(n.groups))
}

func (n *bondNet) activeBonds() map[catalog.ID]int {
	out := map[catalog.ID]int{}
	for _, g := range n.allGroups() {
		g.mu.Lock()
		out[g.spec.ID] = len(g.slots)
		g.mu.Unlock()
	}
	return out
}

// refused counts a failed handshake.
func (n *bondNet) refused(g *groupNet, c Code) {
	c = c.bucket()
	n.refusals.add(c)
	if g != nil {
		n.m.refusals.Add(context.Background(), 1, n.m.attrs(g, codeAttr(c), reasonAttr(c)))
	} else {
		n.m.refusals.Add(context.Background(), 1, metric.WithAttributes(n.m.network, codeAttr(c), reasonAttr(c)))
	}
}

// handle serves an inbound bond stream: the responder's handshake, then
// the bond's goroutines. It runs on libp2p's handler goroutine.
func (n *bondNet) handle(st network.Stream) {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		_ = st.ResetWithError(network.StreamErrorCode(CodeCancelled))
		return
	}
	n.wg.Add(1)
	n.mu.Unlock()
	defer n.wg.Done()
	n.respond(st)
}

// watchLocal sends the local entry on every bond when its version rises
// (PeerEntryUpdate), faster than gossip: members re-check tickets on it.
func (n *bondNet) watchLocal() {
	defer n.wg.Done()
	snap := n.d.Catalog()
	last := snap.Local().Entry.Version
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-snap.Changed():
		}
		snap = n.d.Catalog()
		local := snap.Local()
		if local.Entry.Version.Compare(last) <= 0 {
			continue
		}
		last = local.Entry.Version
		f := encodeMsg(frameEntry, entryMsg(local))
		for _, g := range n.allGroups() {
			for _, b := range g.bonds() {
				b.enqueue(frameEntry, f)
			}
		}
	}
}

func (n *bondNet) status() BondStatus {
	st := BondStatus{Refusals: n.refusals.snapshot(), Ends: n.ends.snapshot()}
	for _, g := range n.allGroups() {
		gb := GroupBonds{Group: g.spec.ID, Role: g.spec.Role}
		for _, b := range g.bonds() {
			gb.Bonds = append(gb.Bonds, b.info())
		}
		slices.SortFunc(gb.Bonds, func(a, b BondInfo) int { return comparePeers(a.Peer, b.Peer) })
		st.Groups = append(st.Groups, gb)
	}
	slices.SortFunc(st.Groups, func(a, b GroupBonds) int { return a.Group.Compare(b.Group) })
	return st
}

func comparePeers(a, b peer.ID) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// retry is the dial backoff of one peer.
type retry struct {
	wait time.Duration
	next time.Time
}

// groupNet is one attached group: its bonds, pending dials and backoffs.
// It is the transport the core sees.
type groupNet struct {
	n         *bondNet
	spec      spec
	key       [32]byte // the proof key
	in        inbox
	log       *slog.Logger
	groupAttr attribute.KeyValue
	attrsOnce sync.Once
	attrSet   metric.MeasurementOption // network and group, built once
	// protectTag protects the connections of the group's bonds.
	protectTag string

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // trigger loop, dials, bond goroutines, delayed frames
	kick   chan struct{}

	// evMu orders the inbox's BondUp and BondDown calls per peer, with the
	// slot changes they report. Lock order: evMu, then mu.
	evMu    sync.Mutex
	mu      sync.Mutex
	slots   map[peer.ID]*bond // bonds up
	dialing map[peer.ID]bool  // outbound handshakes in flight
	retry   map[peer.ID]*retry
	// graced: when this node, the higher ID, found it could bond with a
	// lower-ID peer (BondParams.DialGrace); cleared when it dials or a
	// bond forms.
	graced map[peer.ID]time.Time
	closed bool
	once   sync.Once
}

// Send implements transport.
func (g *groupNet) Send(to peer.ID, kind byte, body []byte) bool {
	b := g.bondFor(to, kind)
	return b != nil && b.enqueue(kind, encodeFrame(kind, body))
}

// SendPriority implements transport.
func (g *groupNet) SendPriority(to peer.ID, kind byte, body []byte) bool {
	b := g.bondFor(to, kind)
	return b != nil && b.enqueuePriority(kind, encodeFrame(kind, body))
}

// bondFor returns the bond to carry a core frame of kind to p, if any.
func (g *groupNet) bondFor(p peer.ID, kind byte) *bond {
	if kind < firstCoreFrame || kind > lastCoreFrame {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.slots[p]
}

// Close implements transport: departures, bonds closed, the group removed
// from the local entry. Idempotent.
func (g *groupNet) Close() error {
	g.once.Do(func() {
		g.mu.Lock()
		g.closed = true
		g.mu.Unlock()
		g.cancel()
		for _, b := range g.bonds() {
			b.end(CodeCancelled, "group closed", false)
		}
		g.wg.Wait()
		g.n.detach(g)
		_, _ = g.n.d.UpdateLocal(func(e *catalog.Entry) {
			e.Groups = slices.DeleteFunc(e.Groups, func(m catalog.Membership) bool { return m.Group == g.spec.ID })
		})
	})
	return nil
}

func (g *groupNet) bonds() []*bond {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Collect(maps.Values(g.slots))
}

// poke wakes the trigger loop.
func (g *groupNet) poke() {
	select {
	case g.kick <- struct{}{}:
	default:
	}
}

// wins reports whether a stream opened by newOpener replaces a bond or
// dial whose stream oldOpener opened: the stream opened by the lower peer
// ID stays; of two streams opened by one peer the newer stays (that peer
// dials again only once it lost its end of the older one).
func wins(newOpener, oldOpener peer.ID) bool {
	return newOpener == oldOpener || newOpener < oldOpener
}

// checkTickets validates a peer's entry against the group's tickets and
// returns the earliest expiry (zero: never).
func (g *groupNet) checkTickets(e *catalog.Entry) (time.Time, error) {
	return policy.ValidateTickets(e, g.spec.Tickets, time.Now())
}

// register makes b the bond to its peer unless a bond that wins the
// tie-break holds the slot; a losing bond in the slot ends with
// AlreadyBonded. It reports BondUp and starts b's goroutines.
func (g *groupNet) register(b *bond) error {
	if err := g.install(b); err != nil {
		return err
	}
	g.log.Debug("bond up", "peer", b.peer, "role", b.role, "initiator", b.outbound())
	g.announceFormed(b) // outside evMu: it runs the fault hook
	return nil
}

// install puts b in its slot under evMu (see register).
func (g *groupNet) install(b *bond) error {
	g.evMu.Lock()
	defer g.evMu.Unlock()
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return localErr(CodeCancelled, "group closed")
	}
	old := g.slots[b.peer]
	if old != nil && !wins(b.opener, old.opener) {
		g.mu.Unlock()
		return localErr(CodeAlreadyBonded, "a bond opened by %s exists", old.opener)
	}
	if !b.outbound() && g.dialing[b.peer] && !wins(b.opener, g.n.self) {
		g.mu.Unlock()
		return localErr(CodeAlreadyBonded, "our own dial wins")
	}
	g.slots[b.peer] = b
	delete(g.retry, b.peer)
	delete(g.graced, b.peer)
	g.wg.Add(2)
	g.mu.Unlock()
	if old != nil {
		old.endLocked(CodeAlreadyBonded, "replaced by a bond that wins the tie-break", false)
	}
	// A bond is worth its connection: the connection manager must not
	// trim it (one protection tag per group, so groups unprotect apart).
	g.n.h.ConnManager().Protect(b.peer, g.protectTag)
	g.in.BondUp(b.peer, b.role)
	go b.readLoop()
	go b.writeLoop()
	return nil
}

// announceFormed tells the group's other bonds about b's peer
// (BondFormed), so that a newcomer meets the whole mesh fast.
func (g *groupNet) announceFormed(b *bond) {
	e, ok := g.n.d.Catalog().Get(b.peer)
	if !ok {
		return
	}
	f := encodeMsg(frameFormed, entryMsg(e))
	for _, o := range g.bonds() {
		if o != b {
			o.enqueue(frameFormed, f)
		}
	}
}

// failed records a failed attempt with p: the next one waits longer.
func (g *groupNet) failed(p peer.ID) {
	g.mu.Lock()
	defer g.mu.Unlock()
	r := g.retry[p]
	if r == nil {
		r = &retry{}
		g.retry[p] = r
	}
	r.wait = min(max(2*r.wait, g.n.params.DialBackoff), g.n.params.MaxDialBackoff)
	r.next = time.Now().Add(r.wait)
}

// triggerLoop bonds with the catalog's members of the group, and drops
// bonds whose peer left or stopped listing the group, on every catalog
// change, BondFormed and ended bond, and when a backoff runs out.
func (g *groupNet) triggerLoop() {
	defer g.wg.Done()
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		snap := g.n.d.Catalog()
		wake := time.Hour
		if !g.n.manual {
			wake = g.scan(snap)
		}
		t.Reset(wake)
		select {
		case <-g.ctx.Done():
			return
		case <-snap.Changed():
		case <-g.kick:
		case <-t.C:
		}
	}
}

// scan runs one pass of the trigger and returns when to look again at the
// latest (a backoff that runs out).
func (g *groupNet) scan(snap *catalog.Snapshot) time.Duration {
	now := time.Now()
	wake := time.Hour
	var eligible map[peer.ID]bool // peers still in their dial grace (all in graced)
	var listed map[peer.ID]bool   // peers whose entry lists the group
	defer func() {
		g.mu.Lock()
		if len(g.graced) > len(eligible) { // some no longer wait: forget them
			maps.DeleteFunc(g.graced, func(p peer.ID, _ time.Time) bool { return !eligible[p] })
		}
		if len(g.retry) > 0 {
			// Backoffs of peers that left the group or the catalog: such a
			// peer never bonds again, which alone cleared its entry, so
			// every member that ever bonded stayed in the map.
			maps.DeleteFunc(g.retry, func(p peer.ID, _ *retry) bool { return !listed[p] && !g.dialing[p] })
		}
		g.mu.Unlock()
	}()
	for _, b := range g.bonds() {
		e, ok := snap.Get(b.peer)
		if !ok {
			b.end(CodeCancelled, "peer left the catalog", true)
			continue
		}
		b.recheck(e)
	}
	for e := range snap.All() {
		p := e.PeerID()
		if p == g.n.self {
			continue
		}
		if _, ok := e.Entry.InGroup(g.spec.ID); !ok {
			continue
		}
		// Every listed peer, not only those with a backoff now: a dial
		// failing or a bond ending during the scan adds one for a peer
		// already passed.
		if listed == nil {
			listed = map[peer.ID]bool{}
		}
		listed[p] = true
		g.mu.Lock()
		busy := g.slots[p] != nil || g.dialing[p] || g.closed
		r := g.retry[p]
		if !busy && r != nil && now.Before(r.next) {
			wake = min(wake, r.next.Sub(now))
			busy = true
		}
		if busy {
			g.mu.Unlock()
			continue
		}
		if _, err := g.checkTickets(&e.Entry); err != nil {
			g.mu.Unlock()
			continue // checked again when its entry changes
		}
		if wait := g.graceLeft(p, now); wait > 0 {
			if eligible == nil {
				eligible = map[peer.ID]bool{}
			}
			eligible[p] = true
			g.mu.Unlock()
			wake = min(wake, wait)
			continue
		}
		delete(g.graced, p)
		g.dialing[p] = true
		g.wg.Add(1)
		g.mu.Unlock()
		go g.dial(e)
	}
	return wake
}

// graceLeft returns how much longer this node waits before dialing p
// (BondParams.DialGrace): 0 when its own stream would win the tie-break,
// else the rest of the grace from when a scan first found it could bond
// with p. Under mu.
func (g *groupNet) graceLeft(p peer.ID, now time.Time) time.Duration {
	grace := g.n.params.DialGrace
	if grace <= 0 || wins(g.n.self, p) {
		return 0
	}
	first, ok := g.graced[p]
	if !ok {
		first = now
		g.graced[p] = now
	}
	return first.Add(grace).Sub(now)
}
