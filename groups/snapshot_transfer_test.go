package groups

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"go.etcd.io/raft/v3/raftpb"
	"lukechampine.com/blake3"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/groups/pb"
	"github.com/mosaik-go/mosaik/internal/testutil"
)

// bulk is a state machine whose state is far larger than its log: each
// command appends N deterministic bytes, so a few hundred small entries
// make megabytes of snapshot.
type bulk struct{ data []byte }

type bulkCmd struct {
	Seed uint64
	N    int
}

type bulkState struct {
	Len  int
	Hash [32]byte
}

func (*bulk) Signature() catalog.ID { return catalog.IDFromString("test-bulk") }
func (b *bulk) Apply(actx ApplyContext, cmds []bulkCmd) {
	for i, c := range cmds {
		x := c.Seed ^ actx.Index(i)
		var w [8]byte
		for n := 0; n < c.N; n += 8 {
			x ^= x << 13
			x ^= x >> 7
			x ^= x << 17
			binary.LittleEndian.PutUint64(w[:], x)
			b.data = append(b.data, w[:min(8, c.N-n)]...)
		}
	}
}
func (b *bulk) Query(struct{}) bulkState {
	return bulkState{Len: len(b.data), Hash: blake3.Sum256(b.data)}
}
func (b *bulk) Snapshot(w io.Writer) error {
	_, err := w.Write(b.data)
	return err
}
func (b *bulk) Restore(r io.Reader) error {
	d, err := io.ReadAll(r)
	b.data = d
	return err
}

type bulkGroup = Group[bulkCmd, struct{}, bulkState]

func joinBulk(t testing.TB, s *Service) *bulkGroup {
	t.Helper()
	g, err := Join[bulkCmd, struct{}, bulkState](s, KeyFromSecret("bulk"), &bulk{}, WithParams(TestParams()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Close() })
	return g
}

// fillBulk executes count commands of size bytes each on the leader g, in
// batches, and returns the last index.
func fillBulk(t testing.TB, g *bulkGroup, count, size int) uint64 {
	t.Helper()
	var last uint64
	for done := 0; done < count; {
		n := min(30, count-done)
		cmds := make([]bulkCmd, n)
		for i := range cmds {
			cmds[i] = bulkCmd{Seed: uint64(done + i + 1), N: size}
		}
		r, err := g.ExecuteMany(tctx(t, 20*time.Second), cmds)
		if err != nil {
			t.Fatal(err)
		}
		last, done = r.Last, done+n
	}
	return last
}

func bulkOf(t testing.TB, g *bulkGroup) bulkState {
	t.Helper()
	v, _, err := g.Query(tctx(t, 5*time.Second), struct{}{}, Weak)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// setFetch changes a group's chunked-transfer parameters (before it
// fetches anything).
func setFetch(t testing.TB, g *bulkGroup, f func(*snapshotFetchParams)) {
	t.Helper()
	if err := g.c.do(tctx(t, 5*time.Second), func() { f(&g.c.snap.params) }); err != nil {
		t.Fatal(err)
	}
}

// catchUp waits until g applied up to last and holds the leader's state.
func catchUp(t testing.TB, g *bulkGroup, last uint64, want bulkState) {
	t.Helper()
	if err := g.When().Committed(tctx(t, 30*time.Second), last); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return bulkOf(t, g) == want }, "state differs from the leader's")
	if f := firstIndex(g); f <= 1 {
		t.Fatalf("log starts at %d: no snapshot was installed", f)
	}
}

// compactedLeader starts node "0" on n, leading the bulk group under p
// with ~920 KiB of state (4 chunks of 256 KiB) and a compacted log, so a
// joiner needs a snapshot. It returns the service, the group, the last
// index and the state.
func compactedLeader(t testing.TB, n *memNet, p Params) (*Service, *bulkGroup, uint64, bulkState) {
	t.Helper()
	s0 := n.service(t, "0", false)
	g0 := joinBulkParams(t, s0, p)
	if err := g0.When().IsLeader(tctx(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	last := fillBulk(t, g0, 230, 4<<10)
	want := bulkOf(t, g0)
	if f := firstIndex(g0); f <= 1 {
		t.Fatalf("leader did not compact (first index %d)", f)
	}
	return s0, g0, last, want
}

// A late joiner past the compaction window fetches the snapshot in chunks
// (the leader sends only a descriptor), and the next joiner fetches its
// snapshot from that member, which took the same snapshot when the
// joiner was added, while the leader refuses to serve it.
func TestSnapshotTransfer_FromNonLeaderHolder(t *testing.T) {
	n := newMemNet()
	s0, g0, last, want := compactedLeader(t, n, TestParams())

	s1 := n.service(t, "1", false)
	g1 := joinBulk(t, s1)
	catchUp(t, g1, last, want)
	if c := n.chunksServed(s0.self); c < 4 {
		t.Fatalf("leader served %d chunks, want at least 4", c)
	}

	n.setChunkFault(func(from, holder peer.ID, _ snapshotChunkRequest) error {
		if from == "node-2" && holder == s0.self {
			return errors.New("leader refuses (test)")
		}
		return nil
	})
	g2 := joinBulk(t, n.service(t, "2", false))
	catchUp(t, g2, last, want)
	if c := n.chunksServed(s1.self); c < 4 {
		t.Fatalf("the non-leader holder served %d chunks, want at least 4", c)
	}
	// The new members serve and follow the log after their snapshot.
	last = fillBulk(t, g0, 5, 100)
	want = bulkOf(t, g0)
	for _, g := range []*bulkGroup{g1, g2} {
		if err := g.When().Committed(tctx(t, 10*time.Second), last); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, 10*time.Second, func() bool { return bulkOf(t, g) == want }, "member did not follow the log")
	}
}

// A holder that dies in the middle of a transfer: the chunks left go to
// the next holder (the leader) and the snapshot completes.
func TestSnapshotTransfer_HolderDiesMidTransfer(t *testing.T) {
	n := newMemNet()
	s0, _, last, want := compactedLeader(t, n, TestParams())
	s1 := n.service(t, "1", false)
	g1 := joinBulk(t, s1)
	catchUp(t, g1, last, want)
	leaderBefore := n.chunksServed(s0.self)

	// n2 fetches one chunk at a time, holders in order: n1, then the
	// leader. The leader refuses until n1 served a chunk (so the transfer
	// that counts lists n1 first); n1 dies after two chunks.
	var mu sync.Mutex
	var byN1, refusedAfter int
	dead := false
	n.setChunkFault(func(from, holder peer.ID, _ snapshotChunkRequest) error {
		if from != "node-2" {
			return nil
		}
		mu.Lock()
		defer mu.Unlock()
		switch {
		case holder == s1.self && (dead || byN1 == 2):
			dead = true
			return errors.New("holder died (test)")
		case holder == s1.self:
			byN1++
		case holder == s0.self && byN1 == 0:
			return errors.New("leader busy (test)")
		case holder == s0.self && !dead:
			refusedAfter++ // the leader was asked while n1 still served
		}
		return nil
	})
	s2 := n.newService("2", true)
	s2.log = testutil.Logger().With("node", "2")
	t.Cleanup(func() { _ = s2.Close() })
	g2 := joinBulk(t, s2)
	setFetch(t, g2, func(p *snapshotFetchParams) { p.Window, p.PerHolder = 1, 1 })
	n.heal()
	catchUp(t, g2, last, want)
	mu.Lock()
	defer mu.Unlock()
	if byN1 != 2 || !dead {
		t.Fatalf("n1 served %d chunks (dead %v), want 2 then death", byN1, dead)
	}
	if refusedAfter != 0 {
		t.Fatalf("the leader was asked %d times while n1 served, want 0", refusedAfter)
	}
	if got := n.chunksServed(s0.self) - leaderBefore; got < 2 {
		t.Fatalf("leader served %d chunks after n1 died, want at least 2", got)
	}
}

// The holder side refuses peers that are not bonded in the snapshot's
// group, and anchors or hashes it does not hold.
func TestSnapshotTransfer_ServeRefusals(t *testing.T) {
	n := newMemNet()
	s0 := n.service(t, "0", false)
	g0 := joinBulk(t, s0)
	if err := g0.When().IsLeader(tctx(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	data := []byte("snapshot bytes")
	a := snapshotAnchor{Index: 7, Term: 2}
	g0.c.snap.cache.put(a, data, time.Now())
	req := snapshotChunkRequest{Anchor: a, MaxBytes: 4, Hash: blake3.Sum256(data)}
	refusal := func(from peer.ID, r snapshotChunkRequest) snapshotCode {
		_, err := decodeSnapshotChunkReply(s0.serveSnapshotChunk(from, encodeSnapshotChunkRequest(r)))
		var ref *snapshotRefusedError
		if !errors.As(err, &ref) {
			t.Fatalf("want a refusal, got %v", err)
		}
		return ref.Code
	}
	if c := refusal("stranger", req); c != snapshotUnavailable {
		t.Fatalf("stranger: code %v, want unavailable", c)
	}
	s1 := n.service(t, "1", false)
	joinBulk(t, s1)
	testutil.Eventually(t, 5*time.Second, func() bool { return s0.net.(*memNode).bondedWith(g0.ID(), s1.self) }, "no bond")
	c, err := decodeSnapshotChunkReply(s0.serveSnapshotChunk(s1.self, encodeSnapshotChunkRequest(req)))
	if err != nil || string(c.Data) != "snap" {
		t.Fatalf("bonded member: %q, %v", c.Data, err)
	}
	other := req
	other.Hash[0] ^= 1
	if c := refusal(s1.self, other); c != snapshotUnknownAnchor {
		t.Fatalf("other hash: code %v, want unknown anchor", c)
	}
	other = req
	other.Anchor.Index++
	if c := refusal(s1.self, other); c != snapshotUnknownAnchor {
		t.Fatalf("other anchor: code %v, want unknown anchor", c)
	}
	if c := refusal(s1.self, snapshotChunkRequest{Anchor: a, Hash: req.Hash}); c != snapshotBadRequest {
		t.Fatalf("max_bytes 0: code %v, want bad request", c)
	}
}

// A follower whose transfers fail and whose SnapshotFailed frames are
// lost still gets new snapshots: the leader reports the pending one failed
// once the follower's status shows it fetches nothing.
func TestSnapshotTransfer_LostFailureReport(t *testing.T) {
	n := newMemNet()
	s0 := n.service(t, "0", false)
	g0 := joinBulk(t, s0)
	if err := g0.When().IsLeader(tctx(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	last := fillBulk(t, g0, 230, 1<<10)
	want := bulkOf(t, g0)
	n.setFault(func(_, _ peer.ID, kind byte) (bool, time.Duration) { return kind == kindSnapFailed, 0 })
	var mu sync.Mutex
	failures := 0
	n.setChunkFault(func(_, _ peer.ID, _ snapshotChunkRequest) error {
		mu.Lock()
		defer mu.Unlock()
		if failures < 2 {
			failures++
			return errors.New("holder unreachable (test)")
		}
		return nil
	})
	g1 := joinBulk(t, n.service(t, "1", false))
	catchUp(t, g1, last, want)
	mu.Lock()
	defer mu.Unlock()
	if failures != 2 {
		t.Fatalf("%d failed transfers, want 2", failures)
	}
}

// Closing a group while its snapshot fetch hangs on a holder ends the
// fetch: Close returns, and the group goroutine does not wait for the
// holder.
func TestSnapshotTransfer_CloseCancelsFetch(t *testing.T) {
	n := newMemNet()
	s0 := n.service(t, "0", false)
	g0 := joinBulk(t, s0)
	if err := g0.When().IsLeader(tctx(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	fillBulk(t, g0, 230, 1<<10)
	release := make(chan struct{})
	asked := make(chan struct{}, 1)
	n.setChunkFault(func(_, _ peer.ID, _ snapshotChunkRequest) error {
		select {
		case asked <- struct{}{}:
		default:
		}
		<-release
		return errors.New("released (test)")
	})
	t.Cleanup(func() { close(release) })
	s1 := n.newService("1", false)
	g1 := joinBulk(t, s1)
	select {
	case <-asked:
	case <-tctx(t, 10*time.Second).Done():
		t.Fatal("no chunk was requested")
	}
	closed := make(chan error, 1)
	go func() { closed <- errors.Join(g1.Close(), s1.Close()) }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-tctx(t, 5*time.Second).Done():
		t.Fatal("Close waited for a hanging chunk request")
	}
}

// After a transfer fails its hash check, the next transfer of the same
// bytes asks the sender (the leader) alone: chunks are checked only as a
// whole, so the holder that served bad bytes is unknown, and the same
// holder list failed the same way for good when one of them did (review
// probe: 248 failed transfers in 15 s, none installed). Other bytes, and
// the same bytes once a transfer succeeded, use every holder again.
func TestSnapshotTransfer_HashMismatchRetriesFromTheLeaderAlone(t *testing.T) {
	c := handCore(t, "a")
	a := snapshotAnchor{Index: 100, Term: 3}
	for _, p := range []peer.ID{"b", "c"} {
		c.peers[p] = &peerState{up: true, status: &pb.CoreStatus{Snapshots: []*pb.CoreAnchor{{Index: a.Index, Term: a.Term}}}}
	}
	d := describeSnapshot(a, "test", []byte("the snapshot"))
	if hs, retry := c.fetchHolders(a, "leader", d.Hash); retry || !slices.Equal(hs, []peer.ID{"b", "c", "leader"}) {
		t.Fatalf("holders %v (retry %v), want b, c, then the leader", hs, retry)
	}
	data, err := encodeSnapshotDescriptor(d)
	if err != nil {
		t.Fatal(err)
	}
	m := &raftpb.Message{Type: raftpb.MessageType_MsgSnap.Enum(), Snapshot: &raftpb.Snapshot{Data: data, Metadata: &raftpb.SnapshotMetadata{Index: new(a.Index), Term: new(a.Term)}}}
	c.onSnapFetched("leader", c.epoch, m, nil, fmt.Errorf("%w at %v", errSnapshotHash, a))
	if hs, retry := c.fetchHolders(a, "leader", d.Hash); !retry || !slices.Equal(hs, []peer.ID{"leader"}) {
		t.Fatalf("after a hash mismatch: holders %v (retry %v), want the leader alone", hs, retry)
	}
	other := describeSnapshot(a, "test", []byte("other bytes"))
	if hs, _ := c.fetchHolders(a, "leader", other.Hash); len(hs) != 3 {
		t.Fatalf("other bytes: holders %v, want all three", hs)
	}
	c.onSnapFetched("leader", c.epoch, m, nil, errors.New("a holder timed out"))
	if _, retry := c.fetchHolders(a, "leader", d.Hash); !retry {
		t.Fatal("a failure other than the hash check forgot the mismatch")
	}
}
