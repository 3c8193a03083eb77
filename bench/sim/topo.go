package sim

import (
	"math"
	"math/rand/v2"
	"slices"
	"sort"
)

// topic is one gossipsub topic: its members (node slots), the members
// that heartbeat on it, and per member its mesh and its other topic peers
// (gossip targets and flood-publish recipients), as member indices.
type topic struct {
	members []int32
	pubs    []int32 // member indices
	mesh    [][]int32
	peers   [][]int32
	// push is each member's push peers (Config.BumpPush): those it
	// sends bump frames to.
	push [][]int32
}

// link builds a mesh of degree about d among m members (a clique when m is
// small) and gives each member up to extra other topic peers.
func (t *topic) link(rng *rand.Rand, d, extra, dhi int) {
	m := len(t.members)
	t.mesh = make([][]int32, m)
	t.peers = make([][]int32, m)
	if m <= d+1 {
		for i := range m {
			for j := range m {
				if i != j {
					t.mesh[i] = append(t.mesh[i], int32(j))
				}
			}
		}
		return
	}
	order := rng.Perm(m)
	for _, i := range order {
		for tries := 0; len(t.mesh[i]) < d && tries < 50; tries++ {
			j := rng.IntN(m)
			limit := d
			if tries > 30 {
				limit = dhi
			}
			if j == i || len(t.mesh[j]) >= limit || slices.Contains(t.mesh[i], int32(j)) {
				continue
			}
			t.mesh[i] = append(t.mesh[i], int32(j))
			t.mesh[j] = append(t.mesh[j], int32(i))
		}
	}
	extra = min(extra, m-1-d)
	for i := range m {
		for tries := 0; len(t.peers[i]) < extra && tries < 4*extra; tries++ {
			j := int32(rng.IntN(m))
			if int(j) == i || slices.Contains(t.mesh[i], j) || slices.Contains(t.peers[i], j) {
				continue
			}
			t.peers[i] = append(t.peers[i], j)
		}
	}
}

// topology is every topic of the network, and per node the topics it
// heartbeats on (with its member index there) and its catalog size.
type topology struct {
	topics []*topic
	pubOn  [][]pubRef
	// entries is the number of remote entries each node holds.
	entries []float64
}

type pubRef struct{ topic, member int32 }

func buildFull(cfg Config, rng *rand.Rand) *topology {
	t := &topic{members: make([]int32, cfg.N), pubs: make([]int32, cfg.N)}
	tp := &topology{topics: []*topic{t}, pubOn: make([][]pubRef, cfg.N), entries: make([]float64, cfg.N)}
	for i := range cfg.N {
		t.members[i], t.pubs[i] = int32(i), int32(i)
		tp.pubOn[i] = []pubRef{{0, int32(i)}}
		tp.entries[i] = float64(cfg.N - 1)
	}
	t.link(rng, cfg.D, cfg.TopicPeers-cfg.D, 2*cfg.D)
	if cfg.BumpPush {
		t.linkPush(rng, cfg.BumpPeers)
	}
	return tp
}

// linkPush builds the push graph of discovery's pushRound: each member
// chooses k of its connected peers (mesh and other topic peers) and also
// pushes to every peer that chose it, up to 2k push peers in all (a peer
// over the cap pushes to its chooser, which does not push back).
func (t *topic) linkPush(rng *rand.Rand, k int) {
	m := len(t.members)
	t.push = make([][]int32, m)
	chosen := make([][]int32, m)
	for i := range m {
		cand := append(slices.Clone(t.mesh[i]), t.peers[i]...)
		rng.Shuffle(len(cand), func(a, b int) { cand[a], cand[b] = cand[b], cand[a] })
		chosen[i] = cand[:min(k, len(cand))]
		t.push[i] = slices.Clone(chosen[i])
	}
	for _, i := range rng.Perm(m) {
		for _, j := range chosen[i] {
			if len(t.push[j]) < 2*k && !slices.Contains(t.push[j], int32(i)) {
				t.push[j] = append(t.push[j], int32(i))
			}
		}
	}
}

// zipf draws ranks in [0, n) with P(k) ∝ (k+1)^-s.
type zipf struct{ cdf []float64 }

func newZipf(n int, s float64) zipf {
	z := zipf{cdf: make([]float64, n)}
	sum := 0.0
	for k := range n {
		sum += math.Pow(float64(k+1), -s)
		z.cdf[k] = sum
	}
	for k := range z.cdf {
		z.cdf[k] /= sum
	}
	return z
}

func (z zipf) draw(rng *rand.Rand) int {
	return min(sort.SearchFloat64s(z.cdf, rng.Float64()), len(z.cdf)-1)
}

// buildScoped builds one topic per stream (members: producers and
// consumers; publishers: producers) and one per group (every member
// publishes). A node's catalog holds the publishers of its topics, its
// random sample and, as a producer, the consumers of its streams (they
// connect to it).
func buildScoped(cfg Config, rng *rand.Rand) *topology {
	n := cfg.N
	nStreams := max(1, int(math.Ceil(float64(n*cfg.StreamsProduced)/cfg.ProducersPerStream)))
	nGroups := (n + cfg.GroupSize - 1) / cfg.GroupSize
	type pair struct {
		topic, node int32
		pub         bool
	}
	pairs := make([]pair, 0, n*(cfg.StreamsProduced+cfg.StreamsConsumed+1))
	z := newZipf(nStreams, cfg.ConsumerZipf)
	perm := rng.Perm(n)
	for u := range n {
		var mine []int32
		for len(mine) < min(cfg.StreamsProduced, nStreams) {
			s := int32(rng.IntN(nStreams))
			if !slices.Contains(mine, s) {
				mine = append(mine, s)
				pairs = append(pairs, pair{s, int32(u), true})
			}
		}
		var used []int32
		for tries := 0; len(used) < cfg.StreamsConsumed && tries < 20*cfg.StreamsConsumed; tries++ {
			s := int32(z.draw(rng))
			if !slices.Contains(mine, s) && !slices.Contains(used, s) {
				used = append(used, s)
				pairs = append(pairs, pair{s, int32(u), false})
			}
		}
	}
	for i, u := range perm {
		pairs = append(pairs, pair{int32(nStreams + i/cfg.GroupSize), int32(u), true})
	}
	slices.SortFunc(pairs, func(a, b pair) int {
		if a.topic != b.topic {
			return int(a.topic - b.topic)
		}
		return int(a.node - b.node)
	})
	tp := &topology{topics: make([]*topic, nStreams+nGroups), pubOn: make([][]pubRef, n), entries: make([]float64, n)}
	for i := range tp.topics {
		tp.topics[i] = &topic{}
	}
	for _, p := range pairs {
		t := tp.topics[p.topic]
		idx := int32(len(t.members))
		t.members = append(t.members, p.node)
		if p.pub {
			t.pubs = append(t.pubs, idx)
			tp.pubOn[p.node] = append(tp.pubOn[p.node], pubRef{p.topic, idx})
		}
	}
	for _, t := range tp.topics {
		t.link(rng, cfg.D, cfg.TopicPeers-cfg.D, 2*cfg.D)
		isPub := make(map[int32]bool, len(t.pubs))
		for _, p := range t.pubs {
			isPub[p] = true
		}
		for i, u := range t.members {
			// Publishers of the topic other than u itself.
			tp.entries[u] += float64(len(t.pubs))
			if isPub[int32(i)] {
				tp.entries[u]--
				// A producer also holds its stream's consumers.
				tp.entries[u] += float64(len(t.members) - len(t.pubs))
			}
		}
	}
	for u := range tp.entries {
		tp.entries[u] += float64(cfg.Sample)
	}
	return tp
}
