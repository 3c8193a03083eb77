package harness

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/libp2p/go-libp2p/core/host"

	"github.com/mosaik-go/mosaik/collections"
	"github.com/mosaik-go/mosaik/groups"
	"github.com/mosaik-go/mosaik/node"
)

// The collections rows: a replicated collections.Map[string, []byte] on
// nodes like the groups rows' (node.New on borrowed hosts of newHost, no
// DHT, each bootstrapped from the first), with the mode's groups.Params.
// Inserts are compared with JetStream KV R3 (the groups rows' cluster)
// through the groups rows' runner (replicated.go); late-reader sync with
// a raw libp2p stream moving the state's bytes (collections_sync.go);
// local reads and memory on a single replica (collections_local.go).

// benchMap is the collection every row opens.
type benchMap = collections.Map[string, []byte]

const benchMapName = "bench.map"

// mapCluster is a set of nodes with a writer replica of one map each.
type mapCluster struct {
	net    string
	params groups.Params
	hosts  []host.Host
	nodes  []*node.Node
	maps   []*benchMap
}

// openMapCluster starts n writer replicas and waits until they have
// settled (see settle).
func openMapCluster(ctx context.Context, n int, p groups.Params) (_ *mapCluster, err error) {
	c := &mapCluster{net: freshNetwork(), params: p}
	defer func() {
		if err != nil {
			_ = c.close()
		}
	}()
	hs, err := newHosts(n)
	if err != nil {
		return nil, err
	}
	c.hosts = hs
	for _, h := range hs {
		nd, err := c.newNode(h)
		if err != nil {
			return nil, err
		}
		c.nodes = append(c.nodes, nd)
		m, err := collections.NewMap[string, []byte](nd, benchMapName, c.options()...)
		if err != nil {
			return nil, err
		}
		c.maps = append(c.maps, m)
	}
	if err := c.settle(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// newNode starts a node on h (which it then owns), bootstrapped from the
// first member.
func (c *mapCluster) newNode(h host.Host) (*node.Node, error) {
	lg := quiet
	if os.Getenv("BENCHLOG") != "" {
		lg = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("n", len(c.nodes))
	}
	opts := []node.Option{node.WithHost(h), node.WithoutDHT(), node.WithLogger(lg)}
	if len(c.nodes) > 0 {
		opts = append(opts, node.WithBootstrapPeers(addrInfo(c.hosts[0])))
	}
	return node.New(c.net, opts...)
}

func (c *mapCluster) options() []collections.Option {
	return []collections.Option{collections.WithGroupOptions(groups.WithParams(c.params))}
}

// settle waits until every replica is a voter that knows the same leader
// and every log has not moved for three heartbeats (the membership
// changes are done), as groupCluster.settle.
func (c *mapCluster) settle(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	quiet := 3 * c.params.Heartbeat
	var last []groups.Position
	since := time.Now()
	for {
		pos, ok := c.agreed()
		if ok && !equalPos(pos, last) {
			last, since = pos, time.Now()
		}
		if ok && time.Since(since) >= quiet {
			return nil
		}
		if !ok {
			last = nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("map replicas did not settle: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond): // polling the published status
		}
	}
}

// status returns replica i's group status.
func (c *mapCluster) status(i int) (groups.Status, bool) {
	id := c.maps[i].GroupID()
	for _, s := range c.nodes[i].Groups().Status() {
		if s.ID == id {
			return s, true
		}
	}
	return groups.Status{}, false
}

func (c *mapCluster) agreed() ([]groups.Position, bool) {
	var pos []groups.Position
	var leader string
	for i := range c.maps {
		s, ok := c.status(i)
		if !ok || !s.Online || s.Voters != len(c.maps) || s.Learners != 0 || (leader != "" && string(s.Leader) != leader) {
			return nil, false
		}
		leader = string(s.Leader)
		pos = append(pos, s.Log)
	}
	for _, p := range pos[1:] {
		if p != pos[0] {
			return nil, false
		}
	}
	return pos, true
}

// leader returns the index of the replica on the leader's node, or -1.
func (c *mapCluster) leader() int {
	for i, m := range c.maps {
		if l, ok := m.Leader(); ok && l == c.nodes[i].ID() {
			return i
		}
	}
	return -1
}

// close closes every replica and node, then the hosts (see hosts.go on
// BasicHost.Close).
func (c *mapCluster) close() error {
	errs := make([]error, len(c.nodes))
	closeAll(len(c.nodes), func(i int) {
		if i < len(c.maps) {
			errs[i] = c.maps[i].Close()
		}
		errs[i] = errors.Join(errs[i], c.nodes[i].Close())
	})
	return errors.Join(append(errs, closeHosts(c.hosts))...)
}

// mosaikMap is the Map in the insert rows: Insert on the leader's replica
// (it returns once committed and applied there).
type mosaikMap struct{ params groups.Params }

func (mosaikMap) name() string { return "mosaik" }

type mosaikMapStore struct {
	c *mapCluster
	m *benchMap
}

func (m mosaikMap) open(ctx context.Context, _ int) (replicated, error) {
	c, err := openMapCluster(ctx, 3, m.params)
	if err != nil {
		return nil, err
	}
	i := c.leader()
	if i < 0 {
		_ = c.close()
		return nil, errors.New("no leader after set-up")
	}
	return &mosaikMapStore{c: c, m: c.maps[i]}, nil
}

func (s *mosaikMapStore) put(ctx context.Context, _ int, key string, val []byte) error {
	_, err := s.m.Insert(ctx, key, val)
	return err
}

func (s *mosaikMapStore) close() error { return s.c.close() }

// colInsertCases: sequential inserts, then 8 and 32 concurrent clients.
func colInsertCases() []replCase {
	return []replCase{{"collections/insert", 1}, {"collections/insert/8-clients", 8}, {"collections/insert/32-clients", 32}}
}

// collectionsScenarios are the collections rows (none in smoke mode).
func (r *runner) collectionsScenarios(p plan) []scenario {
	if len(p.colSizes) == 0 {
		return nil
	}
	var out []scenario
	all := pick(r.cfg.Systems, []replicator{mosaikMap{params: r.groupsParams()}, jetstreamSystem{}, rawRTT{}})
	for _, c := range colInsertCases() {
		var sys []replicator
		for _, s := range all {
			if _, one := s.(sequentialOnly); !one || c.clients == 1 {
				sys = append(sys, s)
			}
		}
		out = append(out, scenario{c.id, (p.reps + 1) * len(sys), func(ctx context.Context) error { return r.replicatedScenario(ctx, c, sys) }})
	}
	if r.cfg.Systems != nil && !r.cfg.Systems.MatchString("mosaik") {
		return out
	}
	for _, n := range p.colSizes {
		id := "collections/sync/" + entriesLabel(n)
		out = append(out, scenario{id, 2*p.reps + 1, func(ctx context.Context) error { return r.colSyncScenario(ctx, id, n) }})
	}
	n := p.colSizes[len(p.colSizes)-1]
	id := "collections/local/" + entriesLabel(n)
	return append(out, scenario{id, p.reps + 1, func(ctx context.Context) error { return r.colLocalScenario(ctx, id, n) }})
}

// entriesLabel names a count: 100k, 1M.
func entriesLabel(n int) string {
	if n >= 1_000_000 && n%1_000_000 == 0 {
		return fmt.Sprintf("%dM", n/1_000_000)
	}
	if n >= 1000 && n%1000 == 0 {
		return fmt.Sprintf("%dk", n/1000)
	}
	return fmt.Sprint(n)
}
