package streams_test

import (
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/node"
	"github.com/mosaik-go/mosaik/streams"
)

type rbRun struct {
	Run int
	I   int
}

// TestRobust_ProducerCrashAndRestart: a producer node crashes (its host
// dies without a departure notice) and comes back with the same key, on a
// new port, producing the same stream. The consumer, retrying with a fast
// backoff, resubscribes to the new run by itself and receives its datums
// in order, the first one flagged with a GapRestart. TestMain's goleak check covers what the crashed node and the
// retrying receiver leave behind.
func TestRobust_ProducerCrashAndRestart(t *testing.T) {
	const name = "robust-restart"
	key, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	cnode := startNode(t)
	pnode := startNode(t, node.WithIdentity(key), node.WithBootstrapPeers(cnode.AddrInfo()))
	prod := mustProducer[rbRun](t, pnode, name)
	cons := mustConsumer[rbRun](t, cnode, name,
		streams.WithBackoff(func() backoff.BackOff { return backoff.NewConstantBackOff(200 * time.Millisecond) }))
	pid := pnode.ID()
	testutil.Eventually(t, 10*time.Second, func() bool {
		return rbOnlyConnected(cons.Producers(), pid) && rbAllConnected(prod.Consumers(), 1)
	}, "first run: no subscription")
	ctx := testCtx(t, 30*time.Second)
	for i := range 10 {
		if err := prod.Send(ctx, rbRun{Run: 1, I: i}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 10 {
		if v, err := cons.Recv(ctx); err != nil || v != (rbRun{1, i}) {
			t.Fatalf("first run, datum %d: %+v, %v", i, v, err)
		}
	}

	// Crash: the host dies; nothing is announced. Then the dead run's
	// remains are cleaned up (a crashed process leaves no goroutines).
	oldAddrs := pnode.Host().Addrs()
	crashed := time.Now()
	if err := pnode.Host().Close(); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		infos := cons.Producers()
		return len(infos) == 0 || (infos[0].State != streams.Connected)
	}, "consumer did not notice the crash")
	_ = prod.Close()
	_ = pnode.Close()
	// Stay down while the consumer retries (and fails) twice, so the
	// restart is found by retrying, not by a lucky first attempt.
	testutil.Eventually(t, 10*time.Second, func() bool {
		infos := cons.Producers()
		return len(infos) == 1 && infos[0].Stats.Reconnects >= 2 && infos[0].Err != nil
	}, "consumer did not keep retrying the crashed producer: %+v", testutil.Lazy(func() any { return cons.Producers() }))
	t.Logf("while down the consumer holds %+v", cons.Producers())

	// Restart with the same key, a new port and the same stream.
	pnode2 := startNode(t, node.WithIdentity(key), node.WithBootstrapPeers(cnode.AddrInfo()))
	if pnode2.ID() != pid {
		t.Fatalf("restarted node has ID %s, want %s", pnode2.ID(), pid)
	}
	if addrs := pnode2.Host().Addrs(); len(addrs) > 0 && len(oldAddrs) > 0 && addrs[0].Equal(oldAddrs[0]) {
		t.Logf("restarted node reuses the address %s", addrs[0])
	}
	prod2 := mustProducer[rbRun](t, pnode2, name)
	took := testutil.Eventually(t, 15*time.Second, func() bool {
		return rbOnlyConnected(cons.Producers(), pid) && rbAllConnected(prod2.Consumers(), 1)
	}, "consumer did not resubscribe to the restarted producer: %+v", testutil.Lazy(func() any { return cons.Producers() }))
	t.Logf("resubscribed %v after the restart; receiver %+v", took, cons.Producers()[0].Stats)
	for i := range 100 {
		if err := prod2.Send(ctx, rbRun{Run: 2, I: i}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 100 {
		d, err := cons.RecvDatum(ctx)
		if err != nil || d.Value != (rbRun{2, i}) || d.Seq != uint64(i+1) {
			t.Fatalf("second run, datum %d: %+v, %v", i, d, err)
		}
		// The first datum of the new run says the producer restarted: the
		// end of the crashed run (after seq 10) may be lost, uncounted, and
		// nothing of the new run was missed.
		want := (*streams.Gap)(nil)
		if i == 0 {
			want = &streams.Gap{Cause: streams.GapRestart, Missed: 0, After: 10}
		}
		if (d.Gap == nil) != (want == nil) || (d.Gap != nil && *d.Gap != *want) {
			t.Fatalf("second run, datum %d: gap %v, want %v", i, d.Gap, want)
		}
	}
	if _, err := cons.TryRecv(); err == nil {
		t.Error("consumer holds a datum nobody sent")
	}
	if st := cons.Producers()[0].Stats; st.Gaps != 0 {
		t.Errorf("receiver stats after the restart %+v, want no counted gap (nothing of the new run was missed)", st)
	}
	if e, ok := cnode.Catalog().Get(pid); !ok || e.Entry.Version.StartMS < crashed.UnixMilli() {
		t.Errorf("consumer's catalog does not hold the new run's entry (present %v)", ok)
	}
}
