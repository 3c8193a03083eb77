package collections_test

import (
	"crypto/rand"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/collections"
	"github.com/mosaik-go/mosaik/groups"
	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/node"
)

// The sync points of issue 16 on real hosts, beyond mosaik's suite:
// holders that stop answering, the TTL renewed by fetches, and reads served
// from the last state during a sync.

func groupOf(r syncReplica) string { return r.(interface{ GroupID() catalog.ID }).GroupID().Short() }

// hangSnapshots makes n stop answering snapshot chunk requests: a new
// stream is read and never answered, until the test ends, and the streams
// it serves already (a pipelined transfer's, which would go on) are
// reset.
func hangSnapshots(t testing.TB, n *node.Node) {
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	ids := []protocol.ID{groups.SnapshotProtocolID(n.Network()), groups.SnapshotPipelineProtocolID(n.Network())}
	for _, id := range ids {
		n.Host().SetStreamHandler(id, func(st network.Stream) {
			<-stop
			_ = st.Reset()
		})
	}
	for _, c := range n.Host().Network().Conns() {
		for _, st := range c.GetStreams() {
			if slices.Contains(ids, st.Protocol()) {
				_ = st.Reset()
			}
		}
	}
}

// A late reader fetches from two holders (the writer and a reader that
// holds the same snapshot); mid-transfer, every node that served it so far
// stops answering. The transfer does not stall: chunks time out and go to
// the other holder, or, when no holder is left, the transfer fails and
// raft sends the snapshot again, served by the holders that still answer.
func TestSync_HolderStopsAnsweringMidTransfer(t *testing.T) {
	f := newSyncFixture(t, mapSubject)
	name := freshName(t)
	w, r1 := f.open(t, f.w, name, true), f.open(t, f.r1, name, false)
	syncOnline(t, 15*time.Second, w, r1)
	v, err := mapSubject.fill(tctx(t, 30*time.Second), w, 0, 20_000, 1000)
	if err != nil {
		t.Fatal(err)
	}
	converge(t, mapSubject, 10*time.Second, v, mapSubject.want(20_000), r1)
	r2 := f.open(t, f.r2, name, false, collections.WithSync(collections.SyncConfig{ChunkBytes: 1 << 10, FetchTimeout: testutil.Scale(time.Second)}))
	id := groupOf(r2)
	served := func(n *node.Node) float64 {
		return groupMetric(t, f.metrics[n], "mosaik.groups.snapshot.bytes.served", id)
	}
	testutil.EventuallyEvery(t, 10*time.Second, time.Millisecond, func() bool {
		return groupMetric(t, f.metrics[f.r2], "mosaik.groups.snapshot.bytes.received", id) > 0
	}, "the late reader fetches no snapshot")
	if groupMetric(t, f.metrics[f.r2], "mosaik.groups.snapshot.syncs.received", id) > 0 {
		t.Fatal("the transfer finished before a holder could stop (make it longer)")
	}
	// One holder that served stops answering (the writer when both did);
	// the other must finish.
	hung, live := f.w, f.r1
	if served(f.w) == 0 {
		hung, live = f.r1, f.w
	}
	hangSnapshots(t, hung)
	before := served(live)
	converge(t, mapSubject, 40*time.Second, v, mapSubject.want(20_000), r2)
	after := served(live) - before
	if after == 0 {
		t.Fatal("the holder that kept answering served nothing after the other stopped: who finished the transfer?")
	}
	t.Logf("the writer stopped answering: %v; %v bytes came from the other holder after; %v failed transfers", hung == f.w, after,
		groupMetric(t, f.metrics[f.r2], "mosaik.groups.snapshot.syncs.failed", id))
}

// A holder keeps a snapshot for its TTL after the last chunk it served: a
// transfer that takes many TTLs (one small chunk at a time) completes
// without a failure, because every fetch renews it.
func TestSync_TTLRevivedByFetches(t *testing.T) {
	f := newSyncFixture(t, mapSubject)
	name := freshName(t)
	// A TTL well above a loaded machine's stalls (a 100 ms one expired
	// between two chunks at load 12, a 300 ms one at load 8 with the
	// package's other tests running), and chunks small enough that the
	// transfer still takes many TTLs (16 B: pipelined requests made 128 B
	// chunks twice as quick as a stream per chunk did, and 32 B ones took
	// 2.9 s, under 3 TTLs, on a quiet machine).
	ttl := time.Second
	w := f.open(t, f.w, name, true, collections.WithSync(collections.SyncConfig{SnapshotTTL: ttl}))
	syncOnline(t, 15*time.Second, w)
	v, err := mapSubject.fill(tctx(t, 30*time.Second), w, 0, 40_000, 1000)
	if err != nil {
		t.Fatal(err)
	}
	sp := collections.SyncConfig{ChunkBytes: 16}.SnapshotParams()
	sp.Window, sp.PerHolder = 1, 1
	start := time.Now()
	r2 := f.open(t, f.r2, name, false, collections.WithGroupOptions(groups.WithSnapshotParams(sp)))
	converge(t, mapSubject, 90*time.Second, v, mapSubject.want(40_000), r2)
	took := time.Since(start)
	id := groupOf(r2)
	if failed := groupMetric(t, f.metrics[f.r2], "mosaik.groups.snapshot.syncs.failed", id); failed != 0 {
		t.Fatalf("%v transfers failed", failed)
	}
	if got := groupMetric(t, f.metrics[f.r2], "mosaik.groups.snapshot.syncs.received", id); got != 1 {
		t.Fatalf("%v snapshots received, want 1", got)
	}
	if took < 3*ttl {
		t.Fatalf("the transfer took %v, under 3 TTLs of %v: it proves nothing", took, ttl)
	}
	t.Logf("transfer of one 16-byte chunk at a time took %v (%.0f TTLs)", took, float64(took)/float64(ttl))
}

// A reader restarted with its data dir serves its old state at once, and
// keeps serving it, whole, while it fetches a snapshot of the state the
// writer reached meanwhile: the collection publishes the new state only
// once the snapshot is fully restored.
func TestSync_ReadsServedFromLastStateDuringSync(t *testing.T) {
	f := newSyncFixture(t, mapSubject)
	name := freshName(t)
	rdir := t.TempDir()
	rkey, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rn := f.startNode(t, node.WithIdentity(rkey), node.WithDataDir(rdir), node.WithBootstrapPeers(f.w.AddrInfo()))
	w, r := f.open(t, f.w, name, true), f.open(t, rn, name, false)
	syncOnline(t, 15*time.Second, w, r)
	v1, err := mapSubject.fill(tctx(t, 30*time.Second), w, 0, 2000, 100)
	if err != nil {
		t.Fatal(err)
	}
	converge(t, mapSubject, 10*time.Second, v1, mapSubject.want(2000), r)
	_ = r.Close()
	if err := rn.Close(); err != nil {
		t.Fatal(err)
	}
	// Far past the compaction window: the reader needs a snapshot.
	v2, err := mapSubject.fill(tctx(t, 30*time.Second), w, 2000, 22_000, 1000)
	if err != nil {
		t.Fatal(err)
	}

	rn = f.startNode(t, node.WithIdentity(rkey), node.WithDataDir(rdir), node.WithBootstrapPeers(f.w.AddrInfo()))
	r = f.open(t, rn, name, false, collections.WithSync(collections.SyncConfig{ChunkBytes: 1 << 10}))
	id := groupOf(r)
	m := mapReader(r)
	// Every state published is whole: 100-entry steps up to 2000 (the
	// old state, from disk), 1000-entry steps after (the snapshot, then
	// the log). A partly restored snapshot would show another size.
	whole := func() error {
		n := m.Len()
		if (n <= 2000 && n%100 != 0) || (n > 2000 && (n-2000)%1000 != 0) {
			return fmt.Errorf("a state of %d entries", n)
		}
		if n > 0 {
			if v, ok := m.Get(uint64(n - 1)); !ok || v != uint64(n-1)*10 {
				return fmt.Errorf("len %d, last key holds %v/%v", n, v, ok)
			}
		}
		return mapSubject.probe(r)
	}
	var oldDuringFetch, reads int
	deadline := time.Now().Add(testutil.Scale(40 * time.Second))
	for r.Version() < v2 {
		fetching := groupMetric(t, f.metrics[rn], "mosaik.groups.snapshot.bytes.received", id) > 0 &&
			groupMetric(t, f.metrics[rn], "mosaik.groups.snapshot.syncs.received", id) == 0
		n := m.Len()
		if err := whole(); err != nil {
			t.Fatalf("read %d: %v", reads, err)
		}
		if fetching && n >= 2000 && m.Len() <= 2000 {
			oldDuringFetch++
		}
		reads++
		if time.Now().After(deadline) {
			t.Fatalf("the reader is at %d after %d reads, want %d", r.Version(), reads, v2)
		}
		time.Sleep(time.Millisecond) // a reader polling; the metrics reads are the heavy part
	}
	converge(t, mapSubject, 10*time.Second, v2, mapSubject.want(22_000), r)
	if oldDuringFetch == 0 {
		t.Fatalf("no read during the transfer returned the old state (%d reads)", reads)
	}
	t.Logf("%d of %d reads returned the old state while the snapshot was fetched", oldDuringFetch, reads)
}
