package sim

import (
	"container/heap"
	"math"
	"math/rand/v2"
	"time"
)

// node holds what one node slot paid over the run (weighted counts).
type node struct {
	in, out       float64 // bytes, IHAVE excluded
	ihaveIn       float64 // IHAVE bytes, capped later by MaxIHaveLength
	ihaveOut      float64
	verifies      float64 // entries verified and merged
	copies        float64 // gossip copies received (each hashed for its ID)
	recvMsgs      float64 // unique messages received (gossip cache load)
	joinIn, joins float64 // bytes received while joining, as a newcomer
	bumps         float64 // heartbeats accepted by bump push (Config.BumpPush)
	bumpCopies    float64 // bumps received, duplicates included
	inCat         [nCats]float64
}

// Traffic categories of the per-node breakdown.
const (
	catMesh      = iota // heartbeats and departures over the mesh, flood publish included
	catIWant            // IWANT requests and the messages they fetch
	catIHave            // IHAVE advertisements (capped at MaxIHaveLength IDs)
	catSync             // anti-entropy syncs
	catJoin             // syncs, lookups and announcements of joins
	catDHT              // entry puts and provider records
	catSample           // random-sample shuffles
	catIDontWant        // IDONTWANT notices (Config.IDontWant)
	catBump             // bump frames (Config.BumpPush): records and framing
	nCats
)

// CatNames names the categories of [Result.InByCat].
var CatNames = [nCats]string{"mesh", "IWANT", "IHAVE", "sync", "join", "DHT", "sample", "IDONTWANT", "bump"}

type evKind uint8

const (
	evHeartbeat evKind = iota
	evAntiEntropy
	evDHT
	evShuffle
	evChurn
)

type event struct {
	t    float64
	kind evKind
	node int32
}

type evHeap []event

func (h evHeap) Len() int           { return len(h) }
func (h evHeap) Less(i, j int) bool { return h[i].t < h[j].t }
func (h evHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *evHeap) Push(x any)        { *h = append(*h, x.(event)) }
func (h *evHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

// hop is one in-flight copy of a message in a flood.
type hop struct {
	t        float64
	to, from int32
}

type hopHeap []hop

func (h hopHeap) Len() int           { return len(h) }
func (h hopHeap) Less(i, j int) bool { return h[i].t < h[j].t }
func (h hopHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *hopHeap) Push(x any)        { *h = append(*h, x.(hop)) }
func (h *hopHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

type runner struct {
	cfg   Config
	rng   *rand.Rand
	topo  *topology
	nodes []node
	q     float64 // share of messages propagated hop by hop
	acc   float64 // sampling accumulator
	phase []float64
	bump  []float64 // per node: phase of its bump push rounds
	recv  []float64 // per member of the flooded topic: first receipt, or +Inf
	hops  hopHeap

	sampled    int
	reachSum   float64 // members reached / members, summed over sampled floods
	spread     []float64
	crashes    float64
	lookupRPCs float64
}

func newRand(cfg Config) *rand.Rand { return rand.New(rand.NewPCG(cfg.Seed, uint64(cfg.N))) }

// Run simulates cfg and returns its summary under costs c.
func Run(cfg Config, c Costs) Result {
	start := time.Now()
	rng := newRand(cfg)
	r := &runner{cfg: cfg, rng: rng, nodes: make([]node, cfg.N), phase: make([]float64, cfg.N)}
	if cfg.Design == Scoped {
		r.topo = buildScoped(cfg, rng)
	} else {
		r.topo = buildFull(cfg, rng)
	}
	for i := range r.phase {
		r.phase[i] = rng.Float64() * cfg.GossipInterval.Seconds()
	}
	if cfg.BumpPush {
		r.bump = make([]float64, cfg.N)
		for i := range r.bump {
			r.bump[i] = rng.Float64() * cfg.BumpInterval.Seconds()
		}
	}
	r.lookupRPCs = math.Ceil(math.Log2(float64(cfg.N)))
	r.q = r.sampleShare()

	T := cfg.SimTime.Seconds()
	hb := cfg.Heartbeat.Seconds()
	var q evHeap
	for u := range cfg.N {
		q = append(q,
			event{rng.Float64() * hb, evHeartbeat, int32(u)},
			event{rng.Float64() * cfg.AntiEntropy.Seconds(), evAntiEntropy, int32(u)},
			event{rng.Float64() * cfg.DHTRepublish.Seconds(), evDHT, int32(u)})
		if cfg.Design == Scoped {
			q = append(q, event{rng.Float64() * cfg.ShuffleInterval.Seconds(), evShuffle, int32(u)})
		}
	}
	churnRate := float64(cfg.N) / cfg.Session.Seconds()
	if churnRate > 0 {
		q = append(q, event{rng.ExpFloat64() / churnRate, evChurn, -1})
	}
	heap.Init(&q)
	for q.Len() > 0 {
		ev := heap.Pop(&q).(event)
		if ev.t >= T {
			break
		}
		u := int(ev.node)
		switch ev.kind {
		case evHeartbeat:
			if cfg.BumpPush && cfg.Design == Full {
				r.pushHeartbeat(u, ev.t)
			} else {
				r.publish(u, ev.t, c.EntryBytes+cfg.FrameBytes)
			}
			ev.t += hb * (1 - cfg.Jitter + 2*cfg.Jitter*rng.Float64())
		case evAntiEntropy:
			r.antiEntropy(u, c)
			ev.t += cfg.AntiEntropy.Seconds() * (0.5 + rng.Float64())
		case evDHT:
			r.dhtRepublish(u, c)
			ev.t += cfg.DHTRepublish.Seconds()
		case evShuffle:
			r.exchange(u, r.other(u), cfg.ShuffleSize, c)
			ev.t += cfg.ShuffleInterval.Seconds()
		case evChurn:
			r.churn(ev.t, c)
			ev.t += rng.ExpFloat64() / churnRate
		}
		heap.Push(&q, ev)
	}
	return r.summarize(c, time.Since(start))
}

// sampleShare is the share of messages to flood hop by hop so that about
// DeliveryBudget deliveries (mesh copies and IHAVE targets) are simulated.
func (r *runner) sampleShare() float64 {
	perRound := r.cfg.SimTime.Seconds() / r.cfg.Heartbeat.Seconds()
	total := 0.0
	for _, t := range r.topo.topics {
		total += float64(len(t.pubs)) * perRound * float64(len(t.members)) * float64(r.cfg.D+r.cfg.HistoryGossip*r.cfg.Dlazy)
	}
	// At least MinFloods floods of the largest topic, so that a large
	// network's per-node figures do not rest on a handful of messages.
	largest := 0
	for _, t := range r.topo.topics {
		largest = max(largest, len(t.members))
	}
	budget := max(r.cfg.DeliveryBudget, float64(r.cfg.MinFloods*largest*(r.cfg.D+r.cfg.HistoryGossip*r.cfg.Dlazy)))
	if total <= budget {
		return 1
	}
	return budget / total
}

func (r *runner) other(u int) int {
	v := r.rng.IntN(r.cfg.N - 1)
	if v >= u {
		v++
	}
	return v
}

func (r *runner) hopLatency() float64 {
	lo, hi := r.cfg.HopMin.Seconds(), r.cfg.HopMax.Seconds()
	return lo + (hi-lo)*r.rng.Float64()
}

// publish sends one message of size bytes from u on each topic u
// heartbeats on; a sampled share is flooded hop by hop.
func (r *runner) publish(u int, t float64, size int) {
	for _, ref := range r.topo.pubOn[u] {
		// Systematic sampling: exactly one message in 1/q is flooded,
		// so the weight 1/q does not add the variance of a coin toss.
		if r.acc += r.q; r.acc >= 1 {
			r.acc--
			r.flood(r.topo.topics[ref.topic], ref.member, t, float64(size), 1/r.q)
		}
	}
}

// pushHeartbeat sends u's heartbeat as a bump to its push peers; a
// sampled share is propagated hop by hop over the push graph.
func (r *runner) pushHeartbeat(u int, t float64) {
	for _, ref := range r.topo.pubOn[u] {
		if r.acc += r.q; r.acc >= 1 {
			r.acc--
			r.pushFlood(r.topo.topics[ref.topic], ref.member, t, 1/r.q)
		}
	}
}

// pushFlood propagates one bump over tp's push graph (PROTOCOL.md section
// 10.9): a node that accepts it, the origin included, puts it in its next
// frame to each of its push peers (its next round, at its own phase, one
// BumpInterval apart) except the peer it came from and the bump's subject.
// A later copy is a duplicate: counted, a map lookup, not verified and not
// forwarded. Frames' framing is charged in summarize.
func (r *runner) pushFlood(tp *topic, src int32, t0, w float64) {
	m := len(tp.members)
	if cap(r.recv) < m {
		r.recv = make([]float64, m)
	}
	recv := r.recv[:m]
	for i := range recv {
		recv[i] = math.Inf(1)
	}
	I := r.cfg.BumpInterval.Seconds()
	b := float64(r.cfg.BumpBytes)
	forward := func(from, prev int32, t float64) {
		ph := r.bump[tp.members[from]]
		tick := ph + math.Ceil((t-ph)/I)*I
		for _, v := range tp.push[from] {
			if v == prev || v == src {
				continue
			}
			r.nodes[tp.members[from]].out += b * w
			heap.Push(&r.hops, hop{tick + r.hopLatency(), v, from})
		}
	}
	recv[src] = t0
	forward(src, -1, t0)
	reached := 1
	last := t0
	for r.hops.Len() > 0 {
		h := heap.Pop(&r.hops).(hop)
		dst := &r.nodes[tp.members[h.to]]
		dst.in += b * w
		dst.inCat[catBump] += b * w
		dst.bumpCopies += w
		if !math.IsInf(recv[h.to], 1) {
			continue
		}
		recv[h.to] = h.t
		last = max(last, h.t)
		reached++
		dst.verifies += w
		dst.bumps += w
		forward(h.to, h.from, h.t)
	}
	if m > 1 {
		r.sampled++
		r.reachSum += float64(reached) / float64(m)
		r.spread = append(r.spread, last-t0)
	}
}

// flood propagates one message through tp's mesh: the publisher sends it
// to every topic peer (flood publish); every member forwards its first
// copy to its mesh peers except the sender; later copies are duplicates.
// Then every member that has it advertises its ID in IHAVE to Dlazy
// non-mesh peers at each of its next HistoryGossip gossip heartbeats, and
// a peer still without the message asks for it with IWANT.
func (r *runner) flood(tp *topic, src int32, t0, size, w float64) {
	m := len(tp.members)
	if cap(r.recv) < m {
		r.recv = make([]float64, m)
	}
	recv := r.recv[:m]
	for i := range recv {
		recv[i] = math.Inf(1)
	}
	send := func(from, to int32, t float64) {
		r.nodes[tp.members[from]].out += size * w
		heap.Push(&r.hops, hop{t + r.hopLatency(), to, from})
	}
	recv[src] = t0
	for _, v := range tp.mesh[src] {
		send(src, v, t0)
	}
	for _, v := range tp.peers[src] {
		send(src, v, t0)
	}
	reached := 1
	for r.hops.Len() > 0 {
		h := heap.Pop(&r.hops).(hop)
		dst := &r.nodes[tp.members[h.to]]
		dst.in += size * w
		dst.inCat[catMesh] += size * w
		dst.copies += w
		if !math.IsInf(recv[h.to], 1) {
			continue
		}
		recv[h.to] = h.t
		reached++
		dst.verifies += w
		dst.recvMsgs += w
		for _, v := range tp.mesh[h.to] {
			if v == h.from {
				continue
			}
			if r.cfg.IDontWant {
				// h.to tells its mesh peers it has the message; a peer
				// whose IDONTWANT reached us before we forward does
				// not get a copy from us.
				dst.out += float64(r.cfg.IDBytes) * w
				peer := &r.nodes[tp.members[v]]
				peer.in += float64(r.cfg.IDBytes) * w
				peer.inCat[catIDontWant] += float64(r.cfg.IDBytes) * w
				if recv[v] < h.t && recv[v]+r.hopLatency() < h.t {
					continue
				}
			}
			send(h.to, v, h.t)
		}
	}
	last := t0
	G := r.cfg.GossipInterval.Seconds()
	id := float64(r.cfg.IDBytes)
	for i := range m {
		if math.IsInf(recv[i], 1) {
			continue
		}
		last = max(last, recv[i])
		peers := tp.peers[i]
		if len(peers) == 0 {
			continue
		}
		u := &r.nodes[tp.members[i]]
		ph := r.phase[tp.members[i]]
		tick := ph + math.Ceil((recv[i]-ph)/G)*G
		for k := 0; k < r.cfg.HistoryGossip; k++ {
			for j := 0; j < min(r.cfg.Dlazy, len(peers)); j++ {
				v := peers[j]
				if len(peers) > r.cfg.Dlazy {
					v = peers[r.rng.IntN(len(peers))]
				}
				dv := &r.nodes[tp.members[v]]
				u.ihaveOut += id * w
				dv.ihaveIn += id * w
				if recv[v] > tick+r.hopLatency() {
					// IWANT, then the message itself.
					dv.out += id * w
					u.in += id * w
					u.out += size * w
					dv.in += size * w
					u.inCat[catIWant] += id * w
					dv.inCat[catIWant] += size * w
					dv.copies += w
				}
			}
			tick += G
		}
	}
	if m > 1 {
		r.sampled++
		r.reachSum += float64(reached) / float64(m)
		r.spread = append(r.spread, last-t0)
	}
}

// antiEntropy is one periodic sync of u with a random connected peer.
// Today each side sends its whole catalog; with delta sync the initiator
// sends a digest and gets back only what changed (heartbeats in flight).
func (r *runner) antiEntropy(u int, c Costs) {
	v := r.other(u)
	n := r.topo.entries[u] + 1
	entry := float64(c.EntryBytes + 4)
	if !r.cfg.DeltaSync {
		r.transfer(u, v, n*entry, catSync)
		r.transfer(v, u, n*entry, catSync)
		return
	}
	r.transfer(u, v, n*float64(r.cfg.DigestBytes), catSync)
	diff := n * r.cfg.inFlight() / r.cfg.Heartbeat.Seconds()
	r.transfer(v, u, diff*entry, catSync)
	r.nodes[u].verifies += diff
}

// exchange is a random-sample shuffle: u and v swap k entries.
func (r *runner) exchange(u, v, k int, c Costs) {
	b := float64(k * (c.EntryBytes + 4))
	r.transfer(u, v, b, catSample)
	r.transfer(v, u, b, catSample)
	r.nodes[u].verifies += float64(k)
	r.nodes[v].verifies += float64(k)
}

func (r *runner) transfer(from, to int, b float64, cat int) {
	r.nodes[from].out += b
	r.nodes[to].in += b
	r.nodes[to].inCat[cat] += b
}

// lookup charges one kad-dht iterative lookup of u: ceil(log2 N) RPCs,
// each served by a random node.
func (r *runner) lookup(u, cat int) {
	half := float64(r.cfg.DHTRPCBytes) / 2
	for range int(r.lookupRPCs) {
		v := r.other(u)
		r.transfer(u, v, half, cat)
		r.transfer(v, u, half, cat)
	}
}

// dhtRepublish puts u's entry on the k closest peers and re-provides its
// CIDs (the network's, its streams' and, scoped, its group's).
func (r *runner) dhtRepublish(u int, c Costs) {
	r.lookup(u, catDHT)
	for range r.cfg.DHTBucket {
		r.transfer(u, r.other(u), float64(c.EntryBytes), catDHT)
	}
	cids := 1 + r.cfg.StreamsProduced
	if r.cfg.Design == Scoped {
		cids++
	}
	for range cids {
		r.lookup(u, catDHT)
		for range r.cfg.DHTBucket {
			r.transfer(u, r.other(u), float64(r.cfg.DHTProviderRec), catDHT)
		}
	}
}

// churn replaces a random node by a newcomer with a new identity, which
// takes over its slot and mesh links.
func (r *runner) churn(t float64, c Costs) {
	u := r.rng.IntN(r.cfg.N)
	if r.rng.Float64() < r.cfg.GracefulShare {
		r.publish(u, t, r.cfg.DepartureBytes)
	} else {
		r.crashes++
	}
	nu := &r.nodes[u]
	before := nu.in
	entry := float64(c.EntryBytes + 4)
	n := r.topo.entries[u]
	b := r.other(u)
	if r.cfg.Design == Full {
		// Sync with the bootstrap peer: the newcomer asks (its own
		// entry) and gets the catalog; the bootstrap peer, which does
		// not know the newcomer, syncs too.
		r.transfer(u, b, entry, catJoin)
		r.transfer(b, u, n*entry, catJoin)
		if r.cfg.DeltaSync {
			r.transfer(b, u, n*float64(r.cfg.DigestBytes), catJoin)
			r.transfer(u, b, entry, catJoin)
		} else {
			r.transfer(b, u, n*entry, catJoin)
			r.transfer(u, b, n*entry, catJoin)
		}
		nu.verifies += n
	} else {
		// Find producers and group members through provider records,
		// fetch their entries, take a random sample from the bootstrap.
		lookups := 1 + r.cfg.StreamsConsumed*(1+int(r.cfg.ProducersPerStream)) + r.cfg.GroupSize
		for range lookups {
			r.lookup(u, catJoin)
		}
		r.transfer(b, u, n*entry, catJoin)
		nu.verifies += n
	}
	// Join announcements of the newcomer's topic peers.
	for range r.cfg.TopicPeers {
		r.transfer(r.other(u), u, entry, catJoin)
	}
	nu.joinIn += nu.in - before
	nu.joins++
}
