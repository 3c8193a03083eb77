package harness

import (
	"bufio"
	"container/heap"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"sync"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/bench/sim"
	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/catalog/discovery"
)

// The catalog/scale rows simulate a network of many peers with a few
// generator hosts in a child process (this binary, re-executed), so that
// the CPU and memory the rows report are the node's alone: making keys,
// signing heartbeats and running the generators' routers cost the child.
const (
	childEnv     = "MOSAIK_BENCH_CHILD"
	childCatalog = "catalog-generator"
	genConfigEnv = "MOSAIK_BENCH_GENERATOR"
	// relaysEnv, when set (to anything), makes every generator push every
	// heartbeat to the node, not only the peer's own generator: the node
	// then gets each bump from each of its push peers, as a node whose
	// push peers all hold every entry does in a network (the first copy is
	// merged, the others dropped as known). Off, the node gets each bump
	// once, as main's gossip bench gets each heartbeat once.
	relaysEnv = "MOSAIK_BENCH_BUMP_RELAYS"
)

// ChildMain runs the child process role named in the environment, if any,
// and then exits the process; it returns false when the process is not a
// child. Call it first in main.
func ChildMain() bool {
	if os.Getenv(childEnv) != childCatalog {
		return false
	}
	if err := runGenerator(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "catalog generator:", err)
		os.Exit(1)
	}
	os.Exit(0)
	return true
}

// genConfig is what the parent asks of a generator process.
type genConfig struct {
	Network  string        // network name (node.New's)
	Entries  int           // simulated peers
	Hosts    int           // generator hosts
	Interval time.Duration // heartbeat interval of every simulated peer
	Jitter   float64       // heartbeat jitter, as discovery.Params.AnnounceJitter
}

// simPeer is one simulated peer: its key and its current entry.
type simPeer struct {
	key crypto.PrivKey
	e   catalog.Entry
}

// typicalSimEntry fills e like the typical entry of the catalog
// benchmarks (4 addresses, 3 tags, 2 streams, one 300 B ticket), with
// loopback addresses on a port nothing listens on: dials to them fail at
// once, and loopback addresses are outside the per-IP caps, as the
// private addresses of a LAN deployment would be.
func typicalSimEntry(e *catalog.Entry) {
	sim.TypicalFields(e, "/ip4/127.0.0.1/tcp/1", "/ip4/127.0.0.1/udp/1/quic-v1", "/ip6/::1/tcp/1", "/ip6/::1/udp/1/quic-v1")
}

// generator is one generator host: a gossipsub router joined to the
// catalog topic (so the node sees a catalog topic peer) and a discovery
// service without gossip that serves catalog syncs from a store holding
// every simulated entry and pushes the heartbeats of its simulated peers
// as bumps, like a node of the network.
type generator struct {
	h     host.Host
	topic *pubsub.Topic
	sub   *pubsub.Subscription
	svc   *discovery.Service
}

func runGenerator(in io.Reader, out io.Writer) error {
	var cfg genConfig
	if err := json.Unmarshal([]byte(os.Getenv(genConfigEnv)), &cfg); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	nw := catalog.IDFromString(cfg.Network)
	now := time.Now()
	peers := make([]simPeer, cfg.Entries)
	cur := make([]*catalog.SignedEntry, cfg.Entries)
	errs := make([]error, 2)
	closeAll(2, func(w int) {
		for i := w; i < len(peers); i += 2 {
			key, _, err := crypto.GenerateEd25519Key(nil)
			if err != nil {
				errs[w] = err
				return
			}
			id, _ := peer.IDFromPrivateKey(key)
			e := catalog.Entry{PeerID: id, Network: nw, Protocol: catalog.ProtocolVersion, Version: catalog.NewVersion(now)}
			typicalSimEntry(&e)
			se, err := catalog.Seal(e, key)
			if err != nil {
				errs[w] = err
				return
			}
			peers[i], cur[i] = simPeer{key, e}, se
		}
	})
	if err := errors.Join(errs...); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dp := discovery.DefaultParams()
	dp.DisableGossip, dp.CascadeBelow, dp.AntiEntropyInterval = true, 0, 0
	dp.Catalog.MaxPeers = max(dp.Catalog.MaxPeers, cfg.Entries+64)
	var gens []*generator
	defer func() {
		for _, g := range gens {
			if g.svc != nil {
				_ = g.svc.Close()
			}
			if g.sub != nil {
				g.sub.Cancel()
			}
			_ = g.h.Close()
		}
	}()
	var addrs []peer.AddrInfo
	for range cfg.Hosts {
		h, err := newHost()
		if err != nil {
			return err
		}
		g := &generator{h: h}
		gens = append(gens, g)
		ps, err := pubsub.NewGossipSub(ctx, h, discovery.GossipSubOptions()...)
		if err != nil {
			return err
		}
		if g.topic, err = ps.Join(discovery.TopicName(nw), pubsub.WithTopicMessageIdFn(discovery.MessageID)); err != nil {
			return err
		}
		// Subscribed, so the node sees a peer of the catalog topic (its
		// gossip-link check resets links to peers that are not).
		if g.sub, err = g.topic.Subscribe(); err != nil {
			return err
		}
		go func() {
			for {
				if _, err := g.sub.Next(ctx); err != nil {
					return
				}
			}
		}()
		if g.svc, err = discovery.New(h, nil, nw, discovery.WithParams(dp), discovery.WithLogger(quiet)); err != nil {
			return err
		}
		for _, se := range cur {
			if _, err := g.svc.Store().Merge(se, now); err != nil {
				return fmt.Errorf("merge: %w", err)
			}
		}
		addrs = append(addrs, addrInfo(h))
	}
	if err := json.NewEncoder(out).Encode(addrs); err != nil {
		return err
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		if sc.Text() == "beat" {
			wg.Add(1)
			go func() { defer wg.Done(); heartbeat(ctx, cfg, peers, gens) }()
		}
	}
	return nil // stdin closed: the parent is done
}

// heartbeat re-signs each simulated peer's entry with a new version every
// Interval ± Jitter (the first beats spread uniformly over one interval,
// so the rate is steady from the start) and merges it into every
// generator's store, so each serves a current catalog to syncs. Peer i's
// generator (i mod Hosts) takes it through its discovery service, which
// sends it on as a node of the network does with a heartbeat it accepted:
// as a bump, in its next bump push frame to its push peers (the node under
// test), not on gossip (PROTOCOL.md section 10.9).
func heartbeat(ctx context.Context, cfg genConfig, peers []simPeer, gens []*generator) {
	relays := os.Getenv(relaysEnv) != ""
	start := time.Now()
	q := make(beatQueue, len(peers))
	for i := range peers {
		q[i] = beat{start.Add(time.Duration(rand.Float64() * float64(cfg.Interval))), i}
	}
	heap.Init(&q)
	for ctx.Err() == nil {
		b := q[0]
		if d := time.Until(b.due); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		now := time.Now()
		p := &peers[b.i]
		p.e.Version = p.e.Version.Next(now)
		se, err := catalog.Seal(p.e, p.key)
		if err == nil {
			owner := gens[b.i%len(gens)]
			_, _ = owner.svc.Merge(se)
			for _, g := range gens {
				if relays && g != owner {
					_, _ = g.svc.Merge(se)
				} else if g != owner {
					_, _ = g.svc.Store().Merge(se, now)
				}
			}
		}
		q[0].due = b.due.Add(jitterDur(cfg.Interval, cfg.Jitter))
		heap.Fix(&q, 0)
	}
}

func jitterDur(d time.Duration, j float64) time.Duration {
	return time.Duration(float64(d) * (1 - j + 2*j*rand.Float64()))
}

type beat struct {
	due time.Time
	i   int
}

type beatQueue []beat

func (q beatQueue) Len() int           { return len(q) }
func (q beatQueue) Less(i, j int) bool { return q[i].due.Before(q[j].due) }
func (q beatQueue) Swap(i, j int)      { q[i], q[j] = q[j], q[i] }
func (q *beatQueue) Push(x any)        { *q = append(*q, x.(beat)) }
func (q *beatQueue) Pop() any {
	old := *q
	x := old[len(old)-1]
	*q = old[:len(old)-1]
	return x
}
