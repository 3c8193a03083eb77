package groups

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/internal/testutil"
)

// memNet is an in-memory bond layer for N nodes in one process: members of
// a group on linked nodes are bonded, frames are delivered through a
// fault hook. It implements attacher, transport and drives inbox exactly
// as the contract says (no inbox call after a transport's Close returns).
type memNet struct {
	mu    sync.Mutex
	nodes map[peer.ID]*memNode
	cut   map[[2]peer.ID]bool // unlinked pairs (ordered low, high)
	fault func(from, to peer.ID, kind byte) (drop bool, delay time.Duration)
	// dropFrame, when set, drops the frames it returns true for (it sees
	// the frame's body, so it can pick raft messages by type).
	dropFrame func(from, to peer.ID, kind byte, body []byte) bool
	// rewriteFrame, when set, may replace a frame's body on the wire (it
	// returns the new body, or nil to leave the frame as sent).
	rewriteFrame func(from, to peer.ID, kind byte, body []byte) []byte
	// chunkFault, when set, may fail a snapshot chunk request (before the
	// holder sees it) with an error.
	chunkFault func(from, holder peer.ID, req snapshotChunkRequest) error
	// chunks counts the chunk requests each holder answered.
	chunks map[peer.ID]int
	// timers counts delayed deliveries not yet run, under mu; idle (on
	// mu) is signalled when it drops. Not a WaitGroup: Send's Add on a
	// group goroutine may come while another node's close already waits,
	// which WaitGroup forbids (the race detector reports it).
	timers  int
	idle    sync.Cond
	network catalog.ID
}

type memNode struct {
	net     *memNet
	self    peer.ID
	svc     *Service
	members map[catalog.ID]*memMember
}

type memMember struct {
	node   *memNode
	spec   spec
	in     inbox
	bonded map[peer.ID]bool
	closed bool
}

func newMemNet() *memNet {
	n := &memNet{nodes: map[peer.ID]*memNode{}, cut: map[[2]peer.ID]bool{}, chunks: map[peer.ID]int{}, network: catalog.IDFromString("memnet")}
	n.idle.L = &n.mu
	return n
}

func pair(a, b peer.ID) [2]peer.ID {
	if a < b {
		return [2]peer.ID{a, b}
	}
	return [2]peer.ID{b, a}
}

// service builds a Service over the memnet, closed at test end. A node
// starts unlinked from every other when isolated is set.
func (n *memNet) service(t testing.TB, name string, isolated bool) *Service {
	t.Helper()
	s := n.newService(name, isolated)
	s.log = testutil.Logger().With("node", name)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// newService is service without a test: the caller closes it.
func (n *memNet) newService(name string, isolated bool) *Service {
	self := peer.ID("node-" + name)
	n.mu.Lock()
	node := &memNode{net: n, self: self, members: map[catalog.ID]*memMember{}}
	if isolated {
		for other := range n.nodes {
			n.cut[pair(self, other)] = true
		}
	}
	n.nodes[self] = node
	s := &Service{network: n.network, self: self, net: node}
	node.svc = s
	n.mu.Unlock()
	return s
}

func (n *memNet) linked(a, b peer.ID) bool { return !n.cut[pair(a, b)] }

// partition links nodes within each set and cuts every other pair; nodes
// in no set are cut from all.
func (n *memNet) partition(sets ...[]peer.ID) {
	n.mu.Lock()
	defer n.mu.Unlock()
	side := map[peer.ID]int{}
	for i, s := range sets {
		for _, p := range s {
			side[p] = i + 1
		}
	}
	for a := range n.nodes {
		for b := range n.nodes {
			if a < b {
				n.cut[pair(a, b)] = side[a] == 0 || side[a] != side[b]
			}
		}
	}
	n.rebondLocked()
}

// heal links every pair.
func (n *memNet) heal() {
	n.mu.Lock()
	defer n.mu.Unlock()
	clear(n.cut)
	n.rebondLocked()
}

func (n *memNet) setFault(f func(from, to peer.ID, kind byte) (bool, time.Duration)) {
	n.mu.Lock()
	n.fault = f
	n.mu.Unlock()
}

func (n *memNet) setRewriteFrame(f func(from, to peer.ID, kind byte, body []byte) []byte) {
	n.mu.Lock()
	n.rewriteFrame = f
	n.mu.Unlock()
}

func (n *memNet) setDropFrame(f func(from, to peer.ID, kind byte, body []byte) bool) {
	n.mu.Lock()
	n.dropFrame = f
	n.mu.Unlock()
}

// rebondLocked brings bonds in line with links.
func (n *memNet) rebondLocked() {
	for _, a := range n.nodes {
		for gid, ma := range a.members {
			for _, b := range n.nodes {
				mb := b.members[gid]
				if a == b || mb == nil {
					continue
				}
				want := n.linked(a.self, b.self)
				if want && !ma.bonded[b.self] {
					ma.bonded[b.self] = true
					ma.in.BondUp(b.self, mb.spec.Role)
				} else if !want && ma.bonded[b.self] {
					delete(ma.bonded, b.self)
					ma.in.BondDown(b.self, 0)
				}
			}
		}
	}
}

// frameLimit implements attacher: the bond layer's default, which memnet
// does not enforce (a frame of any size is delivered).
func (nd *memNode) frameLimit() int { return DefaultBondParams().MaxFrameSize }

func (nd *memNode) attach(s spec, in inbox) (transport, error) {
	n := nd.net
	n.mu.Lock()
	defer n.mu.Unlock()
	if nd.members[s.ID] != nil {
		return nil, fmt.Errorf("memnet: %s already attached", s.ID.Short())
	}
	nd.members[s.ID] = &memMember{node: nd, spec: s, in: in, bonded: map[peer.ID]bool{}}
	n.rebondLocked()
	return nd.members[s.ID], nil
}

func (nd *memNode) close() error {
	n := nd.net
	n.mu.Lock()
	for _, m := range nd.members {
		m.closeLocked()
	}
	delete(n.nodes, nd.self)
	for n.timers > 0 {
		n.idle.Wait()
	}
	n.mu.Unlock()
	return nil
}

// SendPriority implements transport: memnet frames are not written in
// pieces, so it is Send.
func (m *memMember) SendPriority(to peer.ID, kind byte, body []byte) bool {
	return m.Send(to, kind, body)
}

func (m *memMember) Send(to peer.ID, kind byte, body []byte) bool {
	n := m.node.net
	n.mu.Lock()
	defer n.mu.Unlock()
	if m.closed || !m.bonded[to] {
		return false
	}
	var drop bool
	var delay time.Duration
	if n.fault != nil {
		drop, delay = n.fault(m.node.self, to, kind)
	}
	if drop || (n.dropFrame != nil && n.dropFrame(m.node.self, to, kind, body)) {
		return true // lost on the wire
	}
	if n.rewriteFrame != nil {
		if nb := n.rewriteFrame(m.node.self, to, kind, body); nb != nil {
			body = nb
		}
	}
	body = append([]byte(nil), body...)
	deliver := func() {
		dst := n.nodes[to]
		if dst == nil {
			return
		}
		if dm := dst.members[m.spec.ID]; dm != nil && !dm.closed && dm.bonded[m.node.self] {
			dm.in.Deliver(m.node.self, kind, body)
		}
	}
	if delay <= 0 {
		deliver()
		return true
	}
	n.timers++
	time.AfterFunc(delay, func() {
		n.mu.Lock()
		defer n.mu.Unlock()
		deliver()
		n.timers--
		n.idle.Broadcast()
	})
	return true
}

func (m *memMember) Close() error {
	n := m.node.net
	n.mu.Lock()
	m.closeLocked()
	n.mu.Unlock()
	return nil
}

func (m *memMember) closeLocked() {
	if m.closed {
		return
	}
	m.closed = true
	n := m.node.net
	for p := range m.bonded {
		if dst := n.nodes[p]; dst != nil {
			if dm := dst.members[m.spec.ID]; dm != nil && dm.bonded[m.node.self] {
				delete(dm.bonded, m.node.self)
				dm.in.BondDown(m.node.self, 0)
			}
		}
	}
	clear(m.bonded)
	delete(m.node.members, m.spec.ID)
}

// fetchChunk implements snapshotNet: the holder's Service answers the
// encoded request directly, as its stream handler would.
func (nd *memNode) fetchChunk(ctx context.Context, holder peer.ID, req snapshotChunkRequest) (snapshotChunk, error) {
	n := nd.net
	n.mu.Lock()
	dst := n.nodes[holder]
	linked := n.linked(nd.self, holder)
	fault := n.chunkFault
	n.mu.Unlock()
	if dst == nil || !linked {
		return snapshotChunk{}, fmt.Errorf("memnet: no route to %s", holder)
	}
	if fault != nil {
		if err := fault(nd.self, holder, req); err != nil {
			return snapshotChunk{}, err
		}
	}
	if err := ctx.Err(); err != nil {
		return snapshotChunk{}, err
	}
	reply := dst.svc.serveSnapshotChunk(nd.self, encodeSnapshotChunkRequest(req))
	c, err := decodeSnapshotChunkReply(reply)
	if err == nil {
		n.mu.Lock()
		n.chunks[holder]++
		n.mu.Unlock()
	}
	return c, err
}

// bondedWith implements snapshotNet.
func (nd *memNode) bondedWith(group catalog.ID, p peer.ID) bool {
	n := nd.net
	n.mu.Lock()
	defer n.mu.Unlock()
	m := nd.members[group]
	return m != nil && m.bonded[p]
}

// chunksServed returns how many chunks holder served.
func (n *memNet) chunksServed(holder peer.ID) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.chunks[holder]
}

func (n *memNet) setChunkFault(f func(from, holder peer.ID, req snapshotChunkRequest) error) {
	n.mu.Lock()
	n.chunkFault = f
	n.mu.Unlock()
}
