package sim

import (
	"math"
	"slices"
	"time"
)

// Stat is a per-node quantity over all nodes.
type Stat struct{ Mean, P99, Max float64 }

func stat(xs []float64) Stat {
	s := slices.Clone(xs)
	slices.Sort(s)
	sum := 0.0
	for _, x := range s {
		sum += x
	}
	return Stat{Mean: sum / float64(len(s)), P99: s[min(len(s)-1, len(s)*99/100)], Max: s[len(s)-1]}
}

// Result is what a node pays in a run, per node over all nodes.
type Result struct {
	Config Config
	// InBps and OutBps are bytes per second received and sent.
	InBps, OutBps Stat
	// Entries is the catalog size (remote entries held).
	Entries Stat
	// MemBytes is the catalog heap plus gossipsub's message and seen
	// caches.
	MemBytes Stat
	// CPU is the share of one core spent verifying, merging and hashing
	// with today's O(n) store merge; CPULogN with an O(log n) store.
	CPU, CPULogN Stat
	// VerifyPerSec is entries verified per second.
	VerifyPerSec Stat
	// InByCat is the mean bytes per second a node receives, by category
	// (see [CatNames]); on average a node sends as much as it receives.
	InByCat [nCats]float64
	// JoinBytes is what a newcomer receives to join (mean over joins).
	JoinBytes float64
	// Reach is the mean share of a topic's members a flood reached;
	// Spread50 and Spread99 are the times to reach all of them.
	Reach              float64
	Spread50, Spread99 time.Duration
	// PushDegree is the mean number of push peers a node sends frames to
	// and BumpCopies the bumps it receives per heartbeat it accepts
	// (Config.BumpPush; the duplicates are BumpCopies − 1).
	PushDegree, BumpCopies float64
	// BumpFrameFill is a frame's mean bumps over what BumpFrameCap holds:
	// above 1 a push peer's backlog grows without bound (the simulation
	// does not cap frames: its bump rows are then what bump push would
	// cost with frames large or frequent enough).
	BumpFrameFill float64
	// Sampled is the number of messages flooded hop by hop, SampleShare
	// their share of all messages.
	Sampled     int
	SampleShare float64
	Elapsed     time.Duration
}

func (r *runner) summarize(c Costs, elapsed time.Duration) Result {
	T := r.cfg.SimTime.Seconds()
	n := r.cfg.N
	in, out, mem, cpu, cpuLog, ver := make([]float64, n), make([]float64, n), make([]float64, n),
		make([]float64, n), make([]float64, n), make([]float64, n)
	joinIn, joins := 0.0, 0.0
	var inCat [nCats]float64
	linger := r.crashes / T * r.cfg.PurgeAfter.Seconds() / float64(n)
	msgBytes := float64(c.EntryBytes + r.cfg.FrameBytes)
	// Bump frames: one per push peer per BumpInterval when there is
	// something to send (a bump accepted, or the node's own heartbeat,
	// in the interval), each with its framing; and the frames with a new
	// bump, each merged as one batch.
	var framesIn, framesNew []float64
	var pushDeg, bumps, bumpCopies float64
	if r.cfg.BumpPush && r.cfg.Design == Full {
		I := r.cfg.BumpInterval.Seconds()
		fb := float64(r.cfg.BumpFrameBytes)
		tp := r.topo.topics[0]
		framesIn, framesNew = make([]float64, n), make([]float64, n)
		indeg := make([]float64, n)
		for i, out := range tp.push {
			u := tp.members[i]
			a := r.nodes[u].bumps/T + 1/r.cfg.Heartbeat.Seconds()
			f := (1 - math.Exp(-a*I)) / I // frames a second to each push peer
			r.nodes[u].out += float64(len(out)) * f * fb * T
			for _, j := range out {
				v := tp.members[j]
				framesIn[v] += f
				indeg[v]++
				r.nodes[v].in += f * fb * T
				r.nodes[v].inCat[catBump] += f * fb * T
			}
			pushDeg += float64(len(out))
		}
		for v, nd := range r.nodes {
			framesNew[v] = newFrames(nd.bumps/T, indeg[v], I)
			bumps += nd.bumps
			bumpCopies += nd.bumpCopies
		}
		pushDeg /= float64(n)
	}
	for u, nd := range r.nodes {
		rate := nd.recvMsgs / T
		ids := rate * float64(r.cfg.HistoryGossip) * r.cfg.GossipInterval.Seconds()
		capF := 1.0
		if ids > float64(r.cfg.MaxIHaveLength) {
			capF = float64(r.cfg.MaxIHaveLength) / ids
		}
		in[u] = (nd.in + nd.ihaveIn*capF) / T
		out[u] = (nd.out + nd.ihaveOut*capF) / T
		entries := r.topo.entries[u]
		held := entries * (1 + linger)
		mem[u] = held*c.HeapPerEntry +
			rate*float64(r.cfg.MCacheLen)*r.cfg.GossipInterval.Seconds()*msgBytes +
			rate*r.cfg.SeenTTL.Seconds()*float64(r.cfg.SeenBytes) +
			nd.bumps/T*r.cfg.BumpInterval.Seconds()*float64(r.cfg.BumpLogBytes)
		ver[u] = nd.verifies / T
		hash := nd.copies / T * c.HashNs
		// A bump is opened alone but merged with its frame's others.
		cpu[u] = (ver[u]*(c.OpenNs+c.MergeNs(entries)) - nd.bumps/T*c.MergeNs(entries) + hash) / 1e9
		if framesNew != nil {
			cpu[u] += framesNew[u] * c.MergeNs(entries) / 1e9
		}
		cpuLog[u] = (ver[u]*(c.OpenNs+c.MergeSmallNs) + hash) / 1e9
		for k, b := range nd.inCat {
			if k == catIHave {
				b = nd.ihaveIn * capF
			}
			inCat[k] += b / T / float64(n)
		}
		joinIn += nd.joinIn
		joins += nd.joins
	}
	res := Result{
		Config: r.cfg, InBps: stat(in), OutBps: stat(out), Entries: stat(r.topo.entries), MemBytes: stat(mem),
		CPU: stat(cpu), CPULogN: stat(cpuLog), VerifyPerSec: stat(ver),
		Sampled: r.sampled, SampleShare: r.q, Elapsed: elapsed, InByCat: inCat,
	}
	if bumps > 0 {
		res.PushDegree, res.BumpCopies = pushDeg, bumpCopies/bumps
		res.BumpFrameFill = r.cfg.frameFill(bumps / T / float64(n))
	}
	if joins > 0 {
		res.JoinBytes = joinIn / joins
	}
	if r.sampled > 0 {
		res.Reach = r.reachSum / float64(r.sampled)
		sp := slices.Clone(r.spread)
		slices.Sort(sp)
		res.Spread50 = time.Duration(sp[len(sp)/2] * float64(time.Second))
		res.Spread99 = time.Duration(sp[min(len(sp)-1, len(sp)*99/100)] * float64(time.Second))
	}
	return res
}

// Estimate is the closed-form mean per node of the Full design, the
// formulas the simulation's events add up to: heartbeats over a mesh of
// degree D (each node receives D−1 copies of each message, plus the flood
// publish), IHAVE gossip to Dlazy peers per gossip heartbeat (capped at
// MaxIHaveLength IDs), anti-entropy and join syncs, DHT republishing;
// with BumpPush, heartbeats as bumps from every push peer but the first
// (push degree from [pushersAdded]) plus one frame per push peer per
// BumpInterval, and one O(n) merge per frame with a new bump.
// Meant for sizes the simulation does not reach (1 000 000 peers).
func Estimate(cfg Config, c Costs) Result {
	N := float64(cfg.N)
	hb := cfg.Heartbeat.Seconds()
	G := cfg.GossipInterval.Seconds()
	msg := float64(c.EntryBytes + cfg.FrameBytes)
	entry := float64(c.EntryBytes + 4)
	churn := 1 / cfg.Session.Seconds()    // joins per node per second
	urate := (N - 1) / hb                 // heartbeats a node receives
	deps := N * churn * cfg.GracefulShare // departures a second
	gossip := urate                       // messages a second on gossip
	if cfg.BumpPush {
		gossip = 0
	}
	rate := gossip + deps*float64(cfg.DepartureBytes)/msg
	copies := float64(cfg.D-1) + float64(cfg.TopicPeers-cfg.D+1)/N
	mesh := rate * copies * msg
	ids := min(float64(cfg.MaxIHaveLength), (gossip+deps)*float64(cfg.HistoryGossip)*G)
	ihave := float64(cfg.Dlazy) * ids * float64(cfg.IDBytes) / G
	var push, pushMem, frames float64
	k := 0.0
	if cfg.BumpPush {
		// Each node chooses BumpPeers of its TopicPeers and pushes to
		// those that chose it too, up to 2 BumpPeers in all (linkPush).
		// A node gets a bump from every push peer but the one that
		// brought it first.
		I := cfg.BumpInterval.Seconds()
		bp := float64(cfg.BumpPeers)
		k = bp + pushersAdded(cfg)
		f := (1 - math.Exp(-(urate+1/hb)*I)) / I
		push = urate*(k-1)*float64(cfg.BumpBytes) + k*f*float64(cfg.BumpFrameBytes)
		pushMem = urate * I * float64(cfg.BumpLogBytes)
		frames = newFrames(urate, k, I)
	}
	var ae, join float64
	if cfg.DeltaSync {
		ae = N*float64(cfg.DigestBytes)/cfg.AntiEntropy.Seconds() + N*cfg.inFlight()/hb*entry/cfg.AntiEntropy.Seconds()
		join = churn * (N*entry + N*float64(cfg.DigestBytes))
	} else {
		ae = 2 * N * entry / cfg.AntiEntropy.Seconds()
		join = churn * 3 * N * entry
	}
	L := math.Ceil(math.Log2(N))
	cids := float64(1 + cfg.StreamsProduced)
	dht := ((1+cids)*L*float64(cfg.DHTRPCBytes)/2 + float64(cfg.DHTBucket)*(float64(c.EntryBytes)+cids*float64(cfg.DHTProviderRec))) / cfg.DHTRepublish.Seconds()
	bw := mesh + ihave + push + ae + join + dht + churn*float64(cfg.TopicPeers)*entry
	linger := churn * (1 - cfg.GracefulShare) * cfg.PurgeAfter.Seconds()
	mem := (N-1)*(1+linger)*c.HeapPerEntry + pushMem +
		(gossip+deps)*(float64(cfg.MCacheLen)*G*msg+cfg.SeenTTL.Seconds()*float64(cfg.SeenBytes))
	ver := urate + churn*(N-1)
	if cfg.DeltaSync {
		ver += N * cfg.inFlight() / hb / cfg.AntiEntropy.Seconds() // heartbeats a sync finds in flight
	}
	hash := (gossip + deps) * copies * c.HashNs
	merges := ver // today's store: one O(n) merge per entry, or per bump frame
	if cfg.BumpPush {
		merges = frames + ver - urate
	}
	one := func(x float64) Stat { return Stat{Mean: x, P99: x, Max: x} }
	return Result{
		Config: cfg, InBps: one(bw), OutBps: one(bw), Entries: one(N - 1), MemBytes: one(mem),
		PushDegree: k, BumpCopies: map[bool]float64{false: 0, true: k - 1}[cfg.BumpPush],
		BumpFrameFill: map[bool]float64{false: 0, true: cfg.frameFill(urate)}[cfg.BumpPush],
		CPU:           one((ver*c.OpenNs + merges*c.MergeNs(N-1) + hash) / 1e9),
		CPULogN:       one((ver*(c.OpenNs+c.MergeSmallNs) + hash) / 1e9),
		VerifyPerSec:  one(ver), JoinBytes: map[bool]float64{false: 2 * N * entry, true: N * (entry + float64(cfg.DigestBytes))}[cfg.DeltaSync],
		Reach: 1,
	}
}

// newFrames is how many frames a second bring a node at least one new
// bump: it accepts a bumps a second, spread over the frames of its k push
// peers, one each per interval I.
func newFrames(a, k, I float64) float64 {
	if k == 0 {
		return 0
	}
	return k * (1 - math.Exp(-a*I/k)) / I
}

// pushersAdded is the mean number of peers a node pushes to because they
// chose it, beyond the BumpPeers it chose: every node is a topic peer of
// about TopicPeers others, each choosing it with probability BumpPeers /
// TopicPeers; those it chose itself count once (only mesh links are
// mutual in the simulated topology: D of them), and at most BumpPeers
// are added. With X Poisson of that mean, E[min(X, BumpPeers)].
func pushersAdded(cfg Config) float64 {
	bp := float64(cfg.BumpPeers)
	p := bp / float64(cfg.TopicPeers)
	lambda := bp - float64(cfg.D)*p*p
	// E[min(X, c)] = Σ_{j<c} P(X > j).
	e, pj, cdf := 0.0, math.Exp(-lambda), 0.0
	for j := range cfg.BumpPeers {
		cdf += pj
		e += 1 - cdf
		pj *= lambda / float64(j+1)
	}
	return e
}
