package streams_test

import (
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/node"
	"github.com/mosaik-go/mosaik/streams"
)

// TestRobust_UnknownPeerSyncsAndRetries: a consumer that learned of a
// producer out of band, and that the producer has never heard of, is
// first rejected with 401 UnknownPeer, syncs catalogs with the producer,
// retries and is admitted.
//
// Setup. Neither node is bootstrapped to the other, both run without
// gossip and without DHT, so nothing but the consumer's explicit SyncWith
// can tell the producer about the consumer:
//   - the consumer node also has DisableSync: it neither serves syncs nor
//     starts one when it connects (SyncWith still works as the initiator);
//   - the producer node keeps sync *enabled*: SyncWith needs a responder,
//     and with DisableSync the producer registers no sync handler at all,
//     so the consumer's SyncWith would fail and its receiver would give up
//     (see TestRobust_UnknownPeerWithoutSyncResponder). The producer never
//     starts a sync itself either: it syncs on a new connection only with
//     peers that serve the sync protocol, which the consumer does not.
//
// Both use a one-minute PurgeAfter: the producer's entry is fed to the
// consumer's catalog by hand and no heartbeat refreshes it there, so the
// test profile's 3 s would purge it mid-test on a loaded machine.
func TestRobust_UnknownPeerSyncsAndRetries(t *testing.T) {
	const name = "robust-unknown"
	pp := rbLongLivedParams()
	pp.DisableGossip = true
	cp := pp
	cp.DisableSync = true
	pnode := startNode(t, node.WithDiscoveryParams(pp), node.WithoutDHT())
	cnode := startNode(t, node.WithDiscoveryParams(cp), node.WithoutDHT())
	prod := mustProducer[int](t, pnode, name)

	// The consumer learns of the producer out of band: its signed entry
	// (taken after NewProducer, so it advertises the stream) and addresses.
	cnode.Host().Peerstore().AddAddrs(pnode.ID(), pnode.Host().Addrs(), time.Hour)
	if _, err := cnode.Discovery().Store().Merge(pnode.Discovery().Local(), time.Now()); err != nil {
		t.Fatalf("feeding the producer's entry to the consumer: %v", err)
	}
	if _, known := pnode.Catalog().Get(cnode.ID()); known {
		t.Fatal("the producer already knows the consumer")
	}
	rejected0, accepted0 := pnode.Streams().Stats().Rejected, pnode.Streams().Stats().Accepted

	cons := mustConsumer[int](t, cnode, name,
		streams.WithBackoff(func() backoff.BackOff { return backoff.NewConstantBackOff(200 * time.Millisecond) }))
	took := testutil.Eventually(t, 15*time.Second, func() bool {
		return rbOnlyConnected(cons.Producers(), pnode.ID()) && rbAllConnected(prod.Consumers(), 1)
	}, "consumer not admitted: %+v", testutil.Lazy(func() any { return cons.Producers() }))
	t.Logf("admitted after %v; receiver %+v", took, cons.Producers()[0].Stats)

	if _, known := pnode.Catalog().Get(cnode.ID()); !known {
		t.Error("the producer's catalog does not hold the consumer after the sync")
	}
	if got := pnode.Streams().Stats().Rejected - rejected0; got != 1 {
		t.Errorf("producer rejected %d subscriptions, want exactly 1 (the 401)", got)
	}
	if got := pnode.Streams().Stats().Accepted - accepted0; got != 1 {
		t.Errorf("producer accepted %d subscriptions, want 1", got)
	}
	if st := cons.Producers()[0].Stats; st.Reconnects != 1 {
		t.Errorf("receiver reconnected %d times, want 1 (after the 401 and the sync)", st.Reconnects)
	}
	if got := cons.Stats().Reconnects; got != 1 {
		t.Errorf("the consumer's totals count %d reconnections, want the receiver's 1", got)
	}
	ctx := testCtx(t, 10*time.Second)
	for i := range 5 {
		if err := prod.Send(ctx, i); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 5 {
		if v, err := cons.Recv(ctx); err != nil || v != i {
			t.Fatalf("datum %d: %v, %v", i, v, err)
		}
	}
}

// TestRobust_UnknownPeerWithoutSyncResponder: as above, but the producer
// serves no catalog sync either (DisableSync), so after the 401 the
// consumer's SyncWith fails and its receiver gives up on the producer. A
// producer given up on is re-attempted on the next catalog change (mosaik:
// "a terminated producer is re-attempted only on the next catalog
// change"), not at once: the test counts the producer's rejections over
// three catalog changes on the consumer node (local heartbeats, every
// 250-750 ms in the test profile) and allows one attempt per change plus
// slack.
func TestRobust_UnknownPeerWithoutSyncResponder(t *testing.T) {
	const name = "robust-unknown-nosync"
	pp := rbLongLivedParams()
	pp.DisableGossip, pp.DisableSync = true, true
	pnode := startNode(t, node.WithDiscoveryParams(pp), node.WithoutDHT())
	cnode := startNode(t, node.WithDiscoveryParams(pp), node.WithoutDHT())
	prod := mustProducer[int](t, pnode, name)
	cnode.Host().Peerstore().AddAddrs(pnode.ID(), pnode.Host().Addrs(), time.Hour)
	if _, err := cnode.Discovery().Store().Merge(pnode.Discovery().Local(), time.Now()); err != nil {
		t.Fatal(err)
	}
	_ = mustConsumer[int](t, cnode, name,
		streams.WithBackoff(func() backoff.BackOff { return backoff.NewConstantBackOff(200 * time.Millisecond) }))
	testutil.Eventually(t, 10*time.Second, func() bool { return pnode.Streams().Stats().Rejected >= 1 }, "no 401")

	start := time.Now()
	got, changes := rbCountOverChanges(t, cnode, 3, func() uint64 { return pnode.Streams().Stats().Rejected })
	t.Logf("%d rejections in %v (%d catalog changes on the consumer node)", got, time.Since(start), changes)
	if len(prod.Consumers()) != 0 {
		t.Errorf("producer admitted an unknown consumer: %+v", prod.Consumers())
	}
	// Regression (fixed): the consumer re-subscribes in a hot loop (about 800 attempts a
	// second here, each a 401, a failed sync and a new stream): a receiver
	// that gives up pokes the worker (consumer.go, receive's deferred
	// c.poke()), whose evaluate starts a new receiver at once for the still
	// eligible producer, and a new receiver's first attempt skips backoff.
	if got > changes+2 {
		t.Errorf("the producer saw %d subscriptions over %d catalog changes, want at most one per change (+2)", got, changes)
	}
}
