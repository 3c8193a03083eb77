package harness

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
	"google.golang.org/protobuf/proto"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/catalog/discovery"
	"github.com/mosaik-go/mosaik/catalog/pb"
	"github.com/mosaik-go/mosaik/node"
	"github.com/mosaik-go/mosaik/policy"
)

// The sybil row (issue 17): sybilIDs fresh identities flood the catalog
// topic against sybilHonest honest nodes, from sybilAttackers gossip-only
// hosts, each identity sending sybilVersions versions sybilStep apart,
// published on that schedule (4 per second: within the rate limit's burst
// of 8 for two seconds, then four times its sustained 1 per second), one
// in sybilPadEvery padded towards the 8 KiB entry cap.
const (
	sybilIDs       = 1000
	sybilHonest    = 4
	sybilAttackers = 4
	sybilVersions  = 12
	sybilStep      = 250 * time.Millisecond
	sybilPadEvery  = 4
	// sybilJunkEvery: one identity in sybilJunkEvery carries a made-up
	// 300-byte ticket, which no validator accepts: it must buy nothing at
	// eviction (and, with admission on, is rejected like no ticket).
	sybilJunkEvery = 3
	// sybilMaxPeers is the honest nodes' Catalog.MaxPeers: far below the
	// flood, so that eviction has to work.
	sybilMaxPeers = 64
	// sybilJoinLimit caps the wait for the newcomer.
	sybilJoinLimit = 10 * time.Second
)

// sybilSubnets are the fake public /24s the sybils announce (RFC 5737
// documentation ranges, never routed); each sybil takes one of 16
// addresses in them. Honest hosts refuse to dial anything but loopback,
// so no packet ever leaves 127.0.0.1.
var sybilSubnets = []string{"198.51.100.", "203.0.113."}

func (r *runner) sybilScenarios() []scenario {
	if r.cfg.Mode == Smoke {
		return nil
	}
	return []scenario{{"catalog/sybil", 2 * r.plan.reps, r.sybilScenario}}
}

func sybilMethod() string {
	return fmt.Sprintf("catalog/sybil: %d honest nodes (node.New on borrowed hosts that refuse to dial any non-loopback address, node.WithoutDHT, default discovery parameters except Catalog.MaxPeers = %d and CascadeBelow = 0), all connected to each other; %d gossip-only attacker hosts (go-libp2p-pubsub with discovery.GossipSubOptions, joined to the catalog topic, connected to every honest node) publish pre-signed entries of %d fresh identities: %d versions per identity dated %v apart and published on that schedule, all identities at once (4 000 messages/s; per identity 4/s, within the rate limit's burst of 8 for two seconds, then four times its sustained 1/s), every %dth identity padded with tags towards the 8 KiB entry cap, and one in %d carrying a made-up 300-byte ticket (no validator accepts it; 'junk-ticket holders among the sybils held' should stay near that share, not grow). admission-on: the honest nodes run node.WithAdmission (a libp2p-signed ticket validator) and hold tickets; the sybils hold none. admission-off: an open network; per-IP caps count public addresses only, so each sybil announces one of 16 fake public addresses in two /24s (RFC 5737 ranges), which the caps (8 per address, 64 per /24) hold to 128 entries, and Catalog.MaxPeers = %d with eviction holds the rest (newest-seen first, sparing connected peers; a stranger is refused before its signature check while the peer to evict arrived less than Catalog.EvictMinAge, default 5 s, ago). Halfway through the flood an honest newcomer (its own host, with a ticket in admission-on) bootstraps to every honest node; 'newcomer in every honest catalog' runs from node.New until all %d honest catalogs hold it (polled every 5 ms, capped at %v). 'sybils held' is the most sybil entries any honest catalog held at any poll. CPU is the whole process's (honest nodes and attackers: they share it) over the flood ÷ its wall time; 'honest catalog bytes' is the sealed bytes of the entries the honest catalogs hold at the end, per node; 'heap in use' is the process's after the flood (attackers' pre-signed entries included).",
		sybilHonest, sybilMaxPeers, sybilAttackers, sybilIDs, sybilVersions, sybilStep, sybilPadEvery, sybilJunkEvery, sybilMaxPeers, sybilHonest, sybilJoinLimit)
}

func (r *runner) sybilScenario(ctx context.Context) error {
	for rep := range r.plan.reps {
		for _, closed := range []bool{true, false} {
			if err := r.sybilRep(ctx, closed, rep); err != nil {
				return err
			}
			runtime.GC()
		}
	}
	return nil
}

// loopbackOnly is a connection gater that lets a host dial loopback
// addresses only: the sybils' fake public addresses are never dialed.
type loopbackOnly struct{}

func (loopbackOnly) InterceptPeerDial(peer.ID) bool { return true }
func (loopbackOnly) InterceptAddrDial(_ peer.ID, a ma.Multiaddr) bool {
	return manet.IsIPLoopback(a)
}
func (loopbackOnly) InterceptAccept(network.ConnMultiaddrs) bool { return true }
func (loopbackOnly) InterceptSecured(network.Direction, peer.ID, network.ConnMultiaddrs) bool {
	return true
}
func (loopbackOnly) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) {
	return true, 0
}

// sybilWorld is one repetition's hosts and nodes.
type sybilWorld struct {
	name   string
	nw     catalog.NetworkID
	issuer crypto.PrivKey
	adm    *policy.SignedTicketValidator
	closed bool
	hosts  []host.Host
	honest []*node.Node
	trace  *sybilTrace
	// watchNext makes startHonest trace the next node it starts.
	watchNext bool
	cancels   []context.CancelFunc
}

func (w *sybilWorld) close() {
	for i := len(w.honest) - 1; i >= 0; i-- {
		_ = w.honest[i].Close()
	}
	for _, c := range w.cancels {
		c()
	}
	_ = closeHosts(w.hosts)
}

// startHonest starts an honest node on its own loopback-only host.
func (w *sybilWorld) startHonest(boot ...peer.AddrInfo) (*node.Node, error) {
	h, err := newHost(libp2p.ConnectionGater(loopbackOnly{}))
	if err != nil {
		return nil, err
	}
	w.hosts = append(w.hosts, h)
	if w.watchNext {
		w.trace.watch(h.ID().String())
	}
	p := discovery.DefaultParams()
	p.Catalog.MaxPeers = sybilMaxPeers
	p.CascadeBelow = 0
	opts := []node.Option{node.WithHost(h), node.WithoutDHT(), node.WithDiscoveryParams(p), node.WithLogger(w.trace.logger(fmt.Sprintf("honest%d", len(w.honest)), w.watchNext))}
	if len(boot) > 0 {
		opts = append(opts, node.WithBootstrapPeers(boot...))
	}
	if w.closed {
		tk, err := policy.IssueSignedTicket(w.issuer, policy.SignedTicket{Subject: h.ID(), Network: w.nw, Expires: time.Now().Add(time.Hour)})
		if err != nil {
			return nil, err
		}
		opts = append(opts, node.WithAdmission(w.adm), node.WithEntry(func(e *catalog.Entry) { e.Tickets = append(e.Tickets, tk) }))
	}
	n, err := node.New(w.name, opts...)
	if err != nil {
		return nil, err
	}
	w.honest = append(w.honest, n)
	return n, nil
}

// sybilMessages pre-signs the flood: per attacker, the gossip messages it
// publishes, version-major (every identity's first version, then every
// second, ...). It also returns the identities that carry junk tickets.
func sybilMessages(nw catalog.NetworkID, start time.Time) ([][][]byte, map[peer.ID]bool, error) {
	type ident struct {
		key     crypto.PrivKey
		id      peer.ID
		addr    ma.Multiaddr
		tags    []catalog.Tag
		tickets []catalog.Ticket
	}
	junk := map[peer.ID]bool{}
	ids := make([]ident, sybilIDs)
	for i := range ids {
		k, _, err := crypto.GenerateEd25519Key(nil)
		if err != nil {
			return nil, nil, err
		}
		id, _ := peer.IDFromPrivateKey(k)
		ip := netip.MustParseAddr(fmt.Sprintf("%s%d", sybilSubnets[i%2], 10+(i/2)%8))
		a, err := ma.NewMultiaddr("/ip4/" + ip.String() + "/tcp/4001")
		if err != nil {
			return nil, nil, err
		}
		ids[i] = ident{key: k, id: id, addr: a}
		if i%sybilJunkEvery == 1 {
			data := make([]byte, 300)
			_, _ = rand.Read(data)
			ids[i].tickets = []catalog.Ticket{{Class: catalog.IDFromString("jwt"), Data: data}}
			junk[id] = true
		}
		if i%sybilPadEvery == 0 {
			for j := range 200 {
				ids[i].tags = append(ids[i].tags, catalog.IDFromString(fmt.Sprintf("pad-%d-%d", i, j)))
			}
		}
	}
	out := make([][][]byte, sybilAttackers)
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	for a := range sybilAttackers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var msgs [][]byte
			for v := range sybilVersions {
				ver := catalog.Version{StartMS: start.UnixMilli(), UpdateMS: start.Add(time.Duration(v) * sybilStep).UnixMilli()}
				for i := a; i < len(ids); i += sybilAttackers {
					se, err := catalog.Seal(catalog.Entry{PeerID: ids[i].id, Network: nw, Protocol: catalog.ProtocolVersion, Version: ver,
						Addrs: []ma.Multiaddr{ids[i].addr}, Tags: ids[i].tags, Tickets: ids[i].tickets}, ids[i].key)
					if err == nil {
						var b []byte
						b, err = proto.Marshal(&pb.Announcement{Kind: &pb.Announcement_Entry{Entry: se.Bytes()}})
						msgs = append(msgs, b)
					}
					if err != nil {
						mu.Lock()
						firstErr = errors.Join(firstErr, err)
						mu.Unlock()
						return
					}
				}
			}
			out[a] = msgs
		}()
	}
	wg.Wait()
	return out, junk, firstErr
}

func (r *runner) sybilRep(ctx context.Context, closed bool, rep int) error {
	mode := "admission-off"
	if closed {
		mode = "admission-on"
	}
	id := "catalog/sybil/" + mode
	issuer, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		return err
	}
	issuerID, _ := peer.IDFromPrivateKey(issuer)
	name := fmt.Sprintf("bench-sybil-%s-%d-%d", mode, rep, time.Now().UnixNano())
	nw := catalog.IDFromString(name)
	w := &sybilWorld{name: name, nw: nw, issuer: issuer, adm: policy.NewSignedTicketValidator(nw, issuerID), closed: closed, trace: newSybilTrace()}
	defer w.close()
	var boot []peer.AddrInfo
	for range sybilHonest {
		n, err := w.startHonest(boot...)
		if err != nil {
			return fmt.Errorf("honest node: %w", err)
		}
		boot = append(boot, n.AddrInfo())
	}
	honestIDs := map[peer.ID]bool{}
	for _, n := range w.honest {
		honestIDs[n.ID()] = true
	}
	if err := waitFor(ctx, 30*time.Second, func() bool { return sybilAllKnow(w.honest, w.honest) }); err != nil {
		return fmt.Errorf("honest nodes did not find each other: %w", err)
	}
	msgs, junk, err := sybilMessages(nw, time.Now())
	if err != nil {
		return err
	}
	var topics []*pubsub.Topic
	for range sybilAttackers {
		h, err := newHost()
		if err != nil {
			return err
		}
		w.hosts = append(w.hosts, h)
		psCtx, cancel := context.WithCancel(ctx)
		w.cancels = append(w.cancels, cancel)
		ps, err := pubsub.NewGossipSub(psCtx, h, discovery.GossipSubOptions()...)
		if err != nil {
			return err
		}
		t, err := ps.Join(discovery.TopicName(nw))
		if err != nil {
			return err
		}
		topics = append(topics, t)
		for _, n := range w.honest {
			if err := h.Connect(ctx, n.AddrInfo()); err != nil {
				return err
			}
		}
	}
	if err := waitFor(ctx, 30*time.Second, func() bool {
		for _, t := range topics {
			if len(t.ListPeers()) < sybilHonest {
				return false
			}
		}
		return true
	}); err != nil {
		return fmt.Errorf("attackers do not see the honest nodes on the topic: %w", err)
	}

	runtime.GC()
	var before [sybilHonest]discovery.Stats
	for i, n := range w.honest {
		before[i] = n.Discovery().Stats()
	}
	cpu0, start := cpuTime(), time.Now()
	var held int
	// missing: the most honest peers (of the first sybilHonest) absent
	// from one of their catalogs at any poll: the sybils' share is judged
	// by it too, since MaxPeers bounds what they hold anyway.
	missing := 0
	poll := func() {
		for i, n := range w.honest {
			k, honest := 0, 0
			for e := range n.Catalog().All() {
				if !honestIDs[e.Entry.PeerID] {
					k++
				} else if slices.ContainsFunc(w.honest[:sybilHonest], func(h *node.Node) bool { return h.ID() == e.Entry.PeerID }) {
					honest++
				}
			}
			held = max(held, k)
			if i < sybilHonest {
				missing = max(missing, sybilHonest-1-honest)
			}
		}
	}
	var sent sync.WaitGroup
	half := make(chan struct{})
	var halfOnce sync.Once
	for a, t := range topics {
		sent.Add(1)
		go func() {
			defer sent.Done()
			per := len(msgs[a]) / sybilVersions
			for i, m := range msgs[a] {
				if i%per == 0 {
					v := i / per
					if v == sybilVersions/2 {
						halfOnce.Do(func() { close(half) })
					}
					sleepUntil(start.Add(time.Duration(v) * sybilStep)) // the flood's schedule
				}
				if err := t.Publish(ctx, m); err != nil {
					return
				}
			}
		}()
	}
	<-half
	// The newcomer, halfway through the flood.
	w.watchNext = true
	nc, err := w.startHonest(boot...)
	if err != nil {
		return fmt.Errorf("newcomer: %w", err)
	}
	honestIDs[nc.ID()] = true
	joinStart := time.Now()
	w.trace.note("node.New returned")
	join := sybilJoinLimit
	capped := false
	holds := make([]bool, sybilHonest)
	if err := waitFor(ctx, sybilJoinLimit, func() bool {
		poll()
		for i, n := range w.honest[:sybilHonest] {
			if _, ok := n.Catalog().Get(nc.ID()); ok != holds[i] {
				holds[i] = ok
				w.trace.note("honest%d holds the newcomer: %v", i, ok)
			}
		}
		return sybilAllKnow(w.honest[:sybilHonest], []*node.Node{nc})
	}); err != nil {
		capped = true
	} else {
		join = time.Since(joinStart)
	}
	w.trace.note("every honest catalog holds the newcomer (join %v)", join)
	sent.Wait()
	w.trace.note("the attackers sent their last message")
	// Let the honest nodes drain their validation queues: until their
	// counters stand still for 300 ms.
	last, still := uint64(0), time.Now()
	_ = waitFor(ctx, 20*time.Second, func() bool {
		poll()
		var sum uint64
		for _, n := range w.honest[:sybilHonest] {
			s := n.Discovery().Stats()
			sum += s.Added + s.Updated + s.Ignored + s.Rejected
		}
		if sum != last {
			last, still = sum, time.Now()
		}
		return time.Since(still) > 300*time.Millisecond
	})
	wall := time.Since(start)
	cpu := cpuTime() - cpu0
	poll()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	var catBytes, sybilsHeld, junkHeld int
	rejected := map[string]uint64{}
	for i, n := range w.honest[:sybilHonest] {
		for e := range n.Catalog().All() {
			catBytes += len(e.Bytes())
			if !honestIDs[e.Entry.PeerID] {
				sybilsHeld++
				if junk[e.Entry.PeerID] {
					junkHeld++
				}
			}
		}
		s := n.Discovery().Stats()
		for k, v := range s.RejectedBy {
			rejected[k] += v - before[i].RejectedBy[k]
		}
	}
	r.sample(id, "sybils held in an honest catalog (max)", "mosaik", "entries", Lower, float64(held))
	r.sample(id, "honest peers missing from an honest catalog (max)", "mosaik", "entries", Lower, float64(missing))
	row := r.sample(id, "newcomer in every honest catalog", "mosaik", "ms", Lower, float64(join.Microseconds())/1e3)
	if capped {
		row.addNote(fmt.Sprintf("a repetition stopped at the %v limit", sybilJoinLimit))
	}
	if sybilsHeld > 0 {
		r.sample(id, "junk-ticket holders among the sybils held at the end", "mosaik", "%", Lower, 100*float64(junkHeld)/float64(sybilsHeld))
	}
	r.sample(id, "process CPU during the flood", "mosaik", "% of a core", Lower, 100*cpu.Seconds()/wall.Seconds())
	r.sample(id, "flood duration", "mosaik", "ms", Lower, float64(wall.Microseconds())/1e3)
	r.sample(id, "honest catalog bytes per node", "mosaik", "KB", Lower, float64(catBytes)/sybilHonest/1e3)
	r.sample(id, "heap in use after the flood", "mosaik", "MB", Lower, float64(ms.HeapInuse)/1e6)
	var causes []string
	for k, v := range rejected {
		if v > 0 {
			causes = append(causes, fmt.Sprintf("%s %d", k, v))
		}
	}
	slices.Sort(causes)
	row.addNote(fmt.Sprintf("rep %d refusals by cause (4 honest nodes): %s", rep+1, strings.Join(causes, ", ")))
	w.trace.dump(os.Stderr)
	r.prog.step(fmt.Sprintf("%s rep %d/%d: held %d sybils, newcomer %s ms", mode, rep+1, r.plan.reps, held, fmtNum(float64(join.Microseconds())/1e3)))
	return nil
}

func sybilAllKnow(holders, known []*node.Node) bool {
	for _, h := range holders {
		for _, k := range known {
			if h == k {
				continue
			}
			if _, ok := h.Catalog().Get(k.ID()); !ok {
				return false
			}
		}
	}
	return true
}

// waitFor polls cond every 5 ms until it holds, up to limit.
func waitFor(ctx context.Context, limit time.Duration, cond func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond): // polling a condition
		}
	}
	return nil
}

// sybilTargets judges the sybil rows.
func (res *Results) sybilTargets() []Target {
	t := Target{Goal: "catalog/sybil: with admission on, none of 1 000 flooding identities is admitted", Measured: "not measured"}
	if r := res.find("catalog/sybil/admission-on", "sybils held in an honest catalog (max)", "mosaik"); r != nil {
		t.Measured, t.Met = fmt.Sprintf("at most %s sybil entries in an honest catalog over %d runs", fmtNum(r.Max), r.Reps), boolp(r.Max == 0)
	}
	t2 := Target{Goal: "catalog/sybil: with admission off, caps and eviction hold the sybils to their share and an honest newcomer enters every honest catalog within 2 s, in every run", Measured: "not measured"}
	var parts []string
	met := true
	for _, mode := range []string{"admission-off", "admission-on"} {
		id := "catalog/sybil/" + mode
		j, h := res.find(id, "newcomer in every honest catalog", "mosaik"), res.find(id, "sybils held in an honest catalog (max)", "mosaik")
		miss := res.find(id, "honest peers missing from an honest catalog (max)", "mosaik")
		if j == nil || h == nil || miss == nil {
			continue
		}
		// Their share: what MaxPeers leaves beside the other honest nodes,
		// with no honest peer ever pushed out (and the newcomer let in, judged
		// above). MaxPeers alone bounds what they hold, so the sybil count
		// judged nothing by itself: the honest peers missing is the test.
		share := sybilMaxPeers - (sybilHonest - 1)
		parts = append(parts, fmt.Sprintf("%s: newcomer in %s ms at worst (median %s), at most %s sybils held (share %d: MaxPeers %d, caps 128), at most %s honest peers missing from an honest catalog",
			mode, fmtNum(j.Max), fmtNum(j.Median), fmtNum(h.Max), share, sybilMaxPeers, fmtNum(miss.Max)))
		met = met && j.Max <= 2000 && h.Max <= float64(share) && miss.Max == 0
	}
	if len(parts) > 0 {
		t2.Measured, t2.Met = strings.Join(parts, "; "), boolp(met)
	}
	t3 := Target{Goal: "catalog/sybil: honest memory and CPU during the flood (reported)", Measured: "not measured"}
	parts = nil
	for _, mode := range []string{"admission-off", "admission-on"} {
		id := "catalog/sybil/" + mode
		c, b, hp := res.find(id, "process CPU during the flood", "mosaik"), res.find(id, "honest catalog bytes per node", "mosaik"), res.find(id, "heap in use after the flood", "mosaik")
		if c == nil || b == nil || hp == nil {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s: process CPU %s %% of a core (honest and attackers), honest catalog %s KB per node, process heap %s MB", mode, fmtNum(c.Median), fmtNum(b.Median), fmtNum(hp.Median)))
	}
	if len(parts) > 0 {
		t3.Measured, t3.Reported = strings.Join(parts, "; "), true
	}
	return []Target{t, t2, t3}
}
