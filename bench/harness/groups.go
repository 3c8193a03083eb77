package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/host"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/groups"
	"github.com/mosaik-go/mosaik/node"
)

// mosaik groups: 3 nodes (node.New on borrowed hosts of newHost, no DHT:
// groups do not use it), each bootstrapped from the first, in one group
// with a small in-memory key-value state machine; a put is one Execute
// of a 64 B value under a short key (default CBOR codec). Default
// groups.Params, except in smoke mode (groups.TestParams, so the 3 s
// bootstrap delay does not dominate a CI run whose numbers mean nothing).
// The log is in memory, except in the durable variant (mosaik-durable),
// whose members keep it in data dirs.

// kvPut is the command of the bench's state machine.
type kvPut struct {
	K string `cbor:"1,keyasint"`
	V []byte `cbor:"2,keyasint"`
}

// kvMachine is a map from key to value.
type kvMachine struct{ m map[string][]byte }

func newKV() *kvMachine { return &kvMachine{m: map[string][]byte{}} }

func (*kvMachine) Signature() catalog.ID { return catalog.IDFromString("mosaik-bench-kv-v1") }

func (k *kvMachine) Apply(_ groups.ApplyContext, cmds []kvPut) {
	for _, c := range cmds {
		k.m[c.K] = c.V
	}
}

func (k *kvMachine) Query(key string) []byte { return k.m[key] }

func (k *kvMachine) Snapshot(w io.Writer) error { return groups.CBOREncoder(w).Encode(k.m) }

func (k *kvMachine) Restore(r io.Reader) error {
	m := map[string][]byte{}
	if err := groups.CBORDecoder(r).Decode(&m); err != nil {
		return err
	}
	k.m = m
	return nil
}

type kvGroup = groups.Group[kvPut, string, []byte]

// groupCluster is a set of mosaik nodes in one group.
type groupCluster struct {
	net    string
	key    groups.Key
	params groups.Params
	hosts  []host.Host
	nodes  []*node.Node
	groups []*kvGroup
	closed []bool
	// nodeOpts adds options for member i's node (the durable variant
	// gives each member its own node.WithDataDir).
	nodeOpts func(i int) []node.Option
	dir      string // the durable variant's data dirs, removed at close
}

func newGroupCluster(p groups.Params) *groupCluster {
	net := freshNetwork()
	return &groupCluster{net: net, key: groups.KeyFromSecret(net), params: p}
}

// openGroupCluster starts n members and waits until they have settled
// (see settle).
func openGroupCluster(ctx context.Context, n int, p groups.Params, nodeOpts ...func(i int) []node.Option) (_ *groupCluster, err error) {
	c := newGroupCluster(p)
	if len(nodeOpts) > 0 {
		c.nodeOpts = nodeOpts[0]
	}
	defer func() {
		if err != nil {
			_ = c.close()
		}
	}()
	hs, err := newHosts(n)
	if err != nil {
		return nil, err
	}
	for _, h := range hs {
		if err := c.add(h); err != nil {
			return nil, err
		}
	}
	if _, err := c.settle(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// add starts a node on h, bootstrapped from the first member, and joins
// the group. The cluster owns h from here on.
func (c *groupCluster) add(h host.Host) error {
	opts := []node.Option{node.WithHost(h), node.WithoutDHT(), node.WithLogger(quiet)}
	if len(c.hosts) > 0 {
		opts = append(opts, node.WithBootstrapPeers(addrInfo(c.hosts[0])))
	}
	c.hosts = append(c.hosts, h)
	c.nodes = append(c.nodes, nil)
	c.groups = append(c.groups, nil)
	c.closed = append(c.closed, false)
	i := len(c.hosts) - 1
	if c.nodeOpts != nil {
		opts = append(opts, c.nodeOpts(i)...)
	}
	n, err := node.New(c.net, opts...)
	if err != nil {
		return err
	}
	c.nodes[i] = n
	g, err := groups.Join[kvPut, string, []byte](n.Groups(), c.key, newKV(), groups.WithParams(c.params))
	if err != nil {
		return err
	}
	c.groups[i] = g
	return nil
}

// settle waits until every open member is online with the same leader
// and the leader's log has not moved for three heartbeats on all of
// them. The leader changes the membership (learner, then voter) one
// entry per heartbeat while it has something to change, so a still log
// means the voters are final: 3 voters for 3 writers. It returns the
// leader's index.
func (c *groupCluster) settle(ctx context.Context) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	quiet := 3 * c.params.Heartbeat
	var last []groups.Position
	since := time.Now()
	for {
		leader, pos, ok := c.agreed()
		if ok && !equalPos(pos, last) {
			last, since = pos, time.Now()
		}
		if ok && time.Since(since) >= quiet {
			return leader, nil
		}
		if !ok {
			last = nil
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("group did not settle: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond): // polling the published views
		}
	}
}

// agreed reports the leader when every open member is online, knows the
// same leader and has the same log position.
func (c *groupCluster) agreed() (leader int, pos []groups.Position, ok bool) {
	leader = -1
	var lp string
	for i, g := range c.groups {
		if c.closed[i] || g == nil {
			continue
		}
		l, known := g.Leader()
		if !known || (lp != "" && string(l) != lp) {
			return 0, nil, false
		}
		lp = string(l)
		if g.IsLeader() {
			leader = i
		}
		pos = append(pos, g.LogPosition())
	}
	if leader < 0 {
		return 0, nil, false
	}
	for _, p := range pos[1:] {
		if p != pos[0] {
			return 0, nil, false
		}
	}
	return leader, pos, true
}

func equalPos(a, b []groups.Position) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func (c *groupCluster) leader() int {
	for i, g := range c.groups {
		if !c.closed[i] && g != nil && g.IsLeader() {
			return i
		}
	}
	return -1
}

// closeMember closes member i's group handle and node (a graceful leave:
// departures are sent), and then its host.
func (c *groupCluster) closeMember(i int) error {
	if c.closed[i] {
		return nil
	}
	c.closed[i] = true
	var errs []error
	if g := c.groups[i]; g != nil {
		errs = append(errs, g.Close())
	}
	if n := c.nodes[i]; n != nil {
		errs = append(errs, n.Close())
	}
	errs = append(errs, c.hosts[i].Close())
	return errors.Join(errs...)
}

// close closes every member: all nodes before any host (see hosts.go on
// BasicHost.Close).
func (c *groupCluster) close() error {
	errs := make([]error, len(c.hosts))
	closeAll(len(c.hosts), func(i int) {
		if c.closed[i] {
			return
		}
		if g := c.groups[i]; g != nil {
			errs[i] = g.Close()
		}
		if n := c.nodes[i]; n != nil {
			errs[i] = errors.Join(errs[i], n.Close())
		}
	})
	for i, h := range c.hosts {
		if !c.closed[i] {
			c.closed[i] = true
			errs = append(errs, h.Close())
		}
	}
	if c.dir != "" {
		errs = append(errs, os.RemoveAll(c.dir))
	}
	return errors.Join(errs...)
}

// groupsParams is the profile of a mode (see the file comment).
func (r *runner) groupsParams() groups.Params {
	if r.cfg.Mode == Smoke {
		return groups.TestParams()
	}
	return groups.DefaultParams()
}

// mosaikGroups is the replicated store of the groups rows. follower:
// clients call Execute on a follower's handle (forwarded to the leader)
// instead of the leader's.
type mosaikGroups struct {
	params   groups.Params
	follower bool
	durable  bool // every member keeps its log in a data dir (a WAL, fsync on)
}

func (m mosaikGroups) name() string {
	switch {
	case m.durable:
		return "mosaik-durable"
	case m.follower:
		return "mosaik-via-follower"
	}
	return "mosaik"
}

type mosaikGroupStore struct {
	c       *groupCluster
	g       *kvGroup
	puts    atomic.Int64
	frames0 uint64
}

func (m mosaikGroups) open(ctx context.Context, _ int) (replicated, error) {
	var opts []func(int) []node.Option
	var dir string
	if m.durable {
		var err error
		if dir, err = os.MkdirTemp("", "mosaik-bench-groups-"); err != nil {
			return nil, err
		}
		opts = append(opts, func(i int) []node.Option { return []node.Option{node.WithDataDir(filepath.Join(dir, strconv.Itoa(i)))} })
	}
	c, err := openGroupCluster(ctx, 3, m.params, opts...)
	if err != nil {
		if dir != "" {
			_ = os.RemoveAll(dir)
		}
		return nil, err
	}
	c.dir = dir
	i := c.leader()
	if m.follower {
		i = (i + 1) % len(c.groups)
	}
	if i < 0 || (!m.follower && !c.groups[i].IsLeader()) {
		_ = c.close()
		return nil, errors.New("leader changed during set-up")
	}
	s := &mosaikGroupStore{c: c, g: c.groups[i]}
	s.frames0 = s.leaderFrames()
	return s, nil
}

func (s *mosaikGroupStore) put(ctx context.Context, _ int, key string, val []byte) error {
	_, err := s.g.Execute(ctx, kvPut{K: key, V: val})
	s.puts.Add(1)
	return err
}

// leaderFrames is the number of frames the leader's group bonds have sent.
func (s *mosaikGroupStore) leaderFrames() (n uint64) {
	if li := s.c.leader(); li >= 0 {
		for _, gb := range s.c.nodes[li].Groups().BondStatus().Groups {
			for _, b := range gb.Bonds {
				n += b.FramesSent
			}
		}
	}
	return n
}

// note tells how much the leader batched: with one append and one commit
// update per follower and put, it sends 4 frames per put to 2 followers.
func (s *mosaikGroupStore) note() string {
	puts := s.puts.Load()
	if puts == 0 {
		return ""
	}
	note := fmt.Sprintf("leader sent %.2f bond frames per put", float64(s.leaderFrames()-s.frames0)/float64(puts))
	var dropped uint64
	for i, n := range s.c.nodes {
		if s.c.closed[i] || n == nil {
			continue
		}
		for _, gb := range n.Groups().BondStatus().Groups {
			for _, b := range gb.Bonds {
				dropped += b.Dropped
			}
		}
	}
	if dropped > 0 {
		note += fmt.Sprintf("; %d frames dropped on full bond queues", dropped)
	}
	return note
}

func (s *mosaikGroupStore) close() error { return s.c.close() }

// mosaikReplicators are mosaik's systems in the groups rows.
func (r *runner) mosaikReplicators() []replicator {
	p := r.groupsParams()
	out := []replicator{mosaikGroups{params: p}}
	if r.cfg.Mode != Smoke {
		out = append(out, mosaikGroups{params: p, follower: true}, mosaikGroups{params: p, durable: true})
	}
	return out
}
