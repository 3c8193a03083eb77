package groups

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/groups/pb"
	"github.com/mosaik-go/mosaik/internal/testutil"
)

// specParams are TestParams with a quiet-time snapshot, so that a filled
// leader holds a snapshot of its whole state, as a long-lived group does
// (once at least a quarter of SnapshotEntries, 50, were applied since the
// last one).
func specParams() Params {
	p := TestParams()
	p.SnapshotQuiet = 100 * time.Millisecond
	return p
}

func joinBulkParams(t testing.TB, s *Service, p Params) *bulkGroup {
	t.Helper()
	g, err := Join[bulkCmd, struct{}, bulkState](s, KeyFromSecret("bulk"), &bulk{}, WithParams(p))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Close() })
	return g
}

// snapshotted waits until g holds a snapshot of everything it applied.
func snapshotted(t testing.TB, g *bulkGroup) {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, func() bool {
		ch := make(chan bool, 1)
		if g.c.do(context.Background(), func() { ch <- g.c.snapIndex == g.c.applied && g.c.applied > 0 }) != nil {
			return false
		}
		return <-ch
	}, "no snapshot of the whole state")
}

// fillPastSnapshot fills the leader g with batches of 60 commands until
// it stored a snapshot at or past the last one, and returns its index.
// (A quiet-time snapshot needs 50 entries since the last snapshot, and a
// configuration change in the middle of a batch takes one of its own.)
func fillPastSnapshot(t testing.TB, g *bulkGroup) uint64 {
	t.Helper()
	for range 5 {
		last := fillBulk(t, g, 60, 4<<10)
		deadline := time.Now().Add(testutil.Scale(2 * time.Second))
		for time.Now().Before(deadline) {
			ch := make(chan bool, 1)
			if err := g.c.do(tctx(t, 5*time.Second), func() { ch <- g.c.snapIndex >= last }); err != nil {
				t.Fatal(err)
			}
			if <-ch {
				return last
			}
			time.Sleep(20 * time.Millisecond) // polling the group goroutine
		}
	}
	t.Fatal("no snapshot past the last command")
	return 0
}

// specCounts reads g's speculative transfer counters.
func specCounts(g *bulkGroup) (started, used, dropped int64) {
	s := &g.c.snap.specStats
	return s.started.Load(), s.used.Load(), s.dropped.Load()
}

// watchNet wraps a group's snapshot net: it records each request's
// anchor and may change a reply (lie) before the fetcher sees it.
type watchNet struct {
	snapshotNet
	mu      sync.Mutex
	anchors map[snapshotAnchor]int
	lie     func(holder peer.ID, req snapshotChunkRequest, c *snapshotChunk)
	holders map[peer.ID]int
	// before, when set, runs before each request is sent (outside mu).
	before func(ctx context.Context, holder peer.ID)
}

func (w *watchNet) fetchChunk(ctx context.Context, holder peer.ID, req snapshotChunkRequest) (snapshotChunk, error) {
	w.mu.Lock()
	w.anchors[req.Anchor]++
	w.holders[holder]++
	before := w.before
	w.mu.Unlock()
	if before != nil {
		before(ctx, holder)
	}
	c, err := w.snapshotNet.fetchChunk(ctx, holder, req)
	if err == nil && w.lie != nil {
		w.mu.Lock()
		w.lie(holder, req, &c)
		w.mu.Unlock()
	}
	return c, err
}

func (w *watchNet) requested() map[snapshotAnchor]int {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[snapshotAnchor]int, len(w.anchors))
	for a, n := range w.anchors {
		out[a] = n
	}
	return out
}

// watch puts a watchNet in front of g's snapshot net (before g bonds).
func watch(t testing.TB, g *bulkGroup) *watchNet {
	t.Helper()
	w := &watchNet{anchors: map[snapshotAnchor]int{}, holders: map[peer.ID]int{}}
	if err := g.c.do(tctx(t, 5*time.Second), func() {
		w.snapshotNet = g.c.snap.net
		g.c.snap.net = w
	}); err != nil {
		t.Fatal(err)
	}
	return w
}

// On real hosts: a late joiner starts fetching the snapshot its first
// peer announces before the leader's MsgSnap arrives; the MsgSnap names
// the same bytes at the anchor of the joiner's configuration change, and
// the transfer in progress is the one installed (no second transfer).
func TestSnapshotSpec_UsedForMsgSnap(t *testing.T) {
	n0, n1 := newBondNode(t), newBondNode(t)
	meshed(t, n0)
	g0 := joinBulkParams(t, n0.svc, specParams())
	if err := g0.When().IsLeader(tctx(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	last := fillBulk(t, g0, 270, 4<<10) // ~1 MiB
	want := bulkOf(t, g0)
	snapshotted(t, g0)

	g1 := joinBulkParams(t, n1.svc, specParams())
	w := watch(t, g1)
	meshed(t, n0, n1)
	catchUp(t, g1, last, want)
	started, used, dropped := specCounts(g1)
	if started != 1 || used != 1 || dropped != 0 {
		t.Fatalf("speculative transfers: %d started, %d used, %d dropped; want 1, 1, 0", started, used, dropped)
	}
	// One transfer: every request names the announced anchor, none the
	// MsgSnap's (a later one, or the same).
	if reqs := w.requested(); len(reqs) != 1 {
		t.Fatalf("requests by anchor %v: want one anchor", reqs)
	}
	// The member follows the log after the snapshot.
	last = fillBulk(t, g0, 5, 100)
	if err := g1.When().Committed(tctx(t, 10*time.Second), last); err != nil {
		t.Fatal(err)
	}
	want = bulkOf(t, g0)
	testutil.Eventually(t, 10*time.Second, func() bool { return bulkOf(t, g1) == want }, "member did not follow the log")
}

// heldFrames is a fault hook that drops the frames of one kind sent to
// one peer (to) while held.
type heldFrames struct {
	kind byte
	held atomic.Bool
	to   atomic.Value // peer.ID
}

func holdFrames(kind byte) *heldFrames {
	h := &heldFrames{kind: kind}
	h.held.Store(true)
	h.to.Store(peer.ID(""))
	return h
}

func (h *heldFrames) hook(_, to peer.ID, _ catalog.ID, kind byte) Fault {
	if kind == h.kind && h.held.Load() && to == h.to.Load().(peer.ID) {
		return Fault{Action: FaultDrop}
	}
	return Fault{}
}

// asked reports how many chunk requests went to holder.
func (w *watchNet) asked(holder peer.ID) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.holders[holder]
}

// On real hosts: a member that announces the transfer's bytes only after
// the leader's MsgSnap took the speculative transfer over (its status
// held back until then) is still given to that transfer, at the anchor
// it announces, and serves chunks while the leader's are slow. Before,
// the members announcing after the MsgSnap were never asked, and the
// leader, busiest of all, served the whole snapshot.
func TestSnapshotSpec_AdoptedTakesLateHolders(t *testing.T) {
	statuses := holdFrames(kindStatus)
	n0, n2 := newBondNode(t), newBondNode(t, withSvcOpts(WithFaultHook(statuses.hook)))
	n1 := newBondNode(t)
	statuses.to.Store(n1.h.ID())
	meshed(t, n0)
	g0 := joinBulkParams(t, n0.svc, specParams())
	if err := g0.When().IsLeader(tctx(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	g2 := joinBulkParams(t, n2.svc, specParams())
	meshed(t, n0, n2)
	// n2 a member first (a writer learner: one voter and one learner
	// stay so): a configuration change after the fill would come after
	// the members' quiet-time snapshots.
	testutil.Eventually(t, 10*time.Second, func() bool {
		ch := make(chan int, 1)
		if g0.c.do(context.Background(), func() { ch <- len(g0.c.conf.GetLearners()) }) != nil {
			return false
		}
		return <-ch == 1
	}, "n2 not a member")
	last := fillBulk(t, g0, 270, 4<<10) // ~1 MiB
	if err := g2.When().Committed(tctx(t, 10*time.Second), last); err != nil {
		t.Fatal(err)
	}
	// n2 may have caught up from a snapshot of the leader's and applied
	// too few entries since to take one of its own: 60 more (a quarter of
	// SnapshotEntries is 50) make both members snapshot the same state.
	last = fillBulk(t, g0, 60, 4<<10)
	want := bulkOf(t, g0)
	if err := g2.When().Committed(tctx(t, 10*time.Second), last); err != nil {
		t.Fatal(err)
	}
	snapshotted(t, g0)
	snapshotted(t, g2)

	g1 := joinBulkParams(t, n1.svc, specParams())
	w := watch(t, g1)
	// The leader's chunks wait until n2 was asked for one (or the bound,
	// after which the test fails below), longer than a chunk may take.
	setFetch(t, g1, func(p *snapshotFetchParams) { p.ChunkTimeout = time.Minute })
	n0ID, n2ID := n0.h.ID(), n2.h.ID()
	bound := time.Now().Add(testutil.Scale(20 * time.Second))
	n2Asked := make(chan struct{})
	var once sync.Once
	w.before = func(ctx context.Context, holder peer.ID) {
		switch holder {
		case n2ID:
			once.Do(func() { close(n2Asked) })
		case n0ID:
			select {
			case <-n2Asked:
			case <-time.After(time.Until(bound)):
			case <-ctx.Done():
			}
		}
	}
	meshed(t, n0, n1, n2)
	// The MsgSnap arrives while the leader's first chunks wait: the
	// fetch takes the speculative transfer over. Then n2's statuses pass.
	testutil.Eventually(t, 10*time.Second, func() bool {
		ch := make(chan bool, 1)
		if g1.c.do(context.Background(), func() { ch <- g1.c.snap.adopted != nil }) != nil {
			return false
		}
		return <-ch
	}, "no MsgSnap took the speculative transfer over")
	// n2's statuses pass once n1 is bonded with it (the bond may take a
	// few dial attempts: both ends dial, the tie-break, the backoff).
	testutil.Eventually(t, 20*time.Second, func() bool {
		ch := make(chan bool, 1)
		if g1.c.do(context.Background(), func() { ps := g1.c.peers[n2ID]; ch <- ps != nil && ps.up }) != nil {
			return false
		}
		return <-ch
	}, "n1 not bonded with n2")
	statuses.held.Store(false)
	catchUp(t, g1, last, want)

	if w.asked(n2ID) == 0 {
		t.Fatalf("the member announcing the bytes after the MsgSnap was never asked (leader asked %d times)", w.asked(n0ID))
	}
	started, used, _ := specCounts(g1)
	if started != 1 || used != 1 {
		t.Fatalf("speculative transfers: %d started, %d used; want 1 and 1", started, used)
	}
}

// heldLeader starts n0, leading a bulk group filled past a snapshot of
// its whole state, and n1, to which n0's raft frames are held (dropped)
// until raftFrames.held is cleared: n1 sees n0's status, not its MsgSnap.
func heldLeader(t *testing.T) (raftFrames *heldFrames, n0, n1 *bondNode, g0 *bulkGroup) {
	t.Helper()
	raftFrames = holdFrames(kindRaft)
	n0, n1 = newBondNode(t, withSvcOpts(WithFaultHook(raftFrames.hook))), newBondNode(t)
	raftFrames.to.Store(n1.h.ID())
	meshed(t, n0)
	g0 = joinBulkParams(t, n0.svc, specParams())
	if err := g0.When().IsLeader(tctx(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	fillBulk(t, g0, 270, 4<<10)
	snapshotted(t, g0)
	return raftFrames, n0, n1, g0
}

// On real hosts: the MsgSnap names other bytes than the speculative
// transfer fetched (the leader's state moved on while its MsgSnap was
// held back), so the speculative transfer is dropped and the MsgSnap's
// snapshot fetched and installed.
func TestSnapshotSpec_DroppedForOtherSnapshot(t *testing.T) {
	raftFrames, n0, n1, g0 := heldLeader(t)

	g1 := joinBulkParams(t, n1.svc, specParams())
	w := watch(t, g1)
	meshed(t, n0, n1)
	testutil.Eventually(t, 10*time.Second, func() bool { s, _, _ := specCounts(g1); return s == 1 }, "no speculative transfer started")
	// The leader's state moves on and it snapshots it; then its raft
	// messages reach n1, and the snapshot it sends is the new one.
	last := fillPastSnapshot(t, g0)
	want := bulkOf(t, g0)
	raftFrames.held.Store(false)
	catchUp(t, g1, last, want)
	started, used, dropped := specCounts(g1)
	if started != 1 || used != 0 || dropped != 1 {
		t.Fatalf("speculative transfers: %d started, %d used, %d dropped; want 1, 0, 1", started, used, dropped)
	}
	if reqs := w.requested(); len(reqs) != 2 {
		t.Fatalf("requests by anchor %v: want two anchors (the speculative one, the MsgSnap's)", reqs)
	}
}

// On real hosts: the peer whose announcement started a speculative
// transfer serves other bytes than it announced (its first chunk is
// altered). The transfer's hash check fails, nothing of it is installed,
// and the MsgSnap's snapshot is fetched anew and installed.
func TestSnapshotSpec_LyingHolder(t *testing.T) {
	n0, n1 := newBondNode(t), newBondNode(t)
	meshed(t, n0)
	g0 := joinBulkParams(t, n0.svc, specParams())
	if err := g0.When().IsLeader(tctx(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	last := fillBulk(t, g0, 270, 4<<10)
	want := bulkOf(t, g0)
	snapshotted(t, g0)

	g1 := joinBulkParams(t, n1.svc, specParams())
	w := watch(t, g1)
	lied := false
	w.lie = func(_ peer.ID, req snapshotChunkRequest, c *snapshotChunk) {
		if lied || req.Offset != 0 {
			return
		}
		lied = true
		d := append([]byte(nil), c.Data...)
		d[len(d)-1] ^= 0xff
		c.Data = d
	}
	meshed(t, n0, n1)
	catchUp(t, g1, last, want)
	started, used, dropped := specCounts(g1)
	if !lied || started != 1 || used != 0 || dropped != 1 {
		t.Fatalf("lied %v; speculative transfers: %d started, %d used, %d dropped; want 1, 0, 1", lied, started, used, dropped)
	}
}

// On real hosts: after a speculative transfer failed (the holder serves
// other bytes than it announced), a status announcing new bytes starts
// none until a snapshot TTL has passed; a peer announcing ever new hashes
// cannot keep this node fetching for nothing. Once the TTL has passed,
// one starts again.
func TestSnapshotSpec_PausedAfterFailure(t *testing.T) {
	_, n0, n1, _ := heldLeader(t)

	sp := DefaultSnapshotParams()
	sp.TTL = 2 * time.Second
	g1, err := Join[bulkCmd, struct{}, bulkState](n1.svc, KeyFromSecret("bulk"), &bulk{}, WithParams(specParams()), WithSnapshotParams(sp))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g1.Close() })
	w := watch(t, g1)
	w.lie = func(_ peer.ID, _ snapshotChunkRequest, c *snapshotChunk) {
		d := append([]byte(nil), c.Data...)
		d[0] ^= 0xff
		c.Data = d
	}
	meshed(t, n0, n1)
	testutil.Eventually(t, 10*time.Second, func() bool { _, _, d := specCounts(g1); return d == 1 }, "the lied-to speculative transfer was not dropped")

	// n0's status again, announcing its snapshot under a hash not tried
	// yet; it returns once the group goroutine has taken it.
	rotate := func() {
		t.Helper()
		had := make(chan bool, 1)
		if err := g1.c.do(tctx(t, 5*time.Second), func() {
			ps := g1.c.peers[n0.h.ID()]
			if ps == nil || ps.status == nil {
				had <- false
				return
			}
			// New bytes of n0's whole state: its applied index is the
			// newest anchor's, as when it had just snapshotted.
			st := proto.Clone(ps.status).(*pb.CoreStatus)
			for _, a := range st.GetSnapshots() {
				if len(a.GetHash()) > 0 {
					a.Hash[0]++
				}
				st.Applied = max(st.GetApplied(), a.GetIndex())
			}
			ps.status = st
			g1.c.onStatusSnapshots(n0.h.ID(), ps)
			had <- true
		}); err != nil {
			t.Fatal(err)
		}
		if !<-had {
			t.Fatal("no status from n0")
		}
	}
	rotate()
	t.Log(specCounts(g1))
	if started, _, _ := specCounts(g1); started != 1 {
		t.Fatalf("%d speculative transfers started right after one failed; want 1", started)
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		rotate()
		started, _, _ := specCounts(g1)
		return started == 2
	}, "no speculative transfer started after the pause")
}
