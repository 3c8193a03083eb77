package streams_test

import (
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/streams"
)

// TestRobust_RefusedConsumerDoesNotHammer: a producer whose require
// predicate refuses a consumer answers NotAllowed (10403), a final code:
// the consumer's receiver gives up, and the producer is re-attempted at
// most once per catalog change on the consumer node (mosaik: "a
// terminated producer is re-attempted only on the next catalog change"),
// whatever the consumer's backoff.
func TestRobust_RefusedConsumerDoesNotHammer(t *testing.T) {
	const name = "robust-refused"
	nodes := connected(t, 2)
	pnode, cnode := nodes[0], nodes[1]
	prod := mustProducer[int](t, pnode, name, streams.WithRequire(func(catalog.PeerInfo) bool { return false }))
	_ = mustConsumer[int](t, cnode, name,
		streams.WithBackoff(func() backoff.BackOff { return backoff.NewConstantBackOff(200 * time.Millisecond) }))
	testutil.Eventually(t, 10*time.Second, func() bool { return pnode.Streams().Stats().Rejected >= 1 }, "no NotAllowed")
	start := time.Now()
	got, changes := rbCountOverChanges(t, cnode, 3, func() uint64 { return pnode.Streams().Stats().Rejected })
	t.Logf("%d NotAllowed rejections in %v (%d catalog changes on the consumer node)", got, time.Since(start), changes)
	if n := len(prod.Consumers()); n != 0 {
		t.Errorf("producer admitted %d refused consumers", n)
	}
	// Regression (fixed): hot loop, as in TestRobust_UnknownPeerWithoutSyncResponder: on a
	// final code the receiver returns, its deferred c.poke() (consumer.go)
	// re-runs evaluate at once, which starts a new receiver whose first
	// attempt skips backoff.
	if got > changes+2 {
		t.Errorf("the producer refused %d subscriptions over %d catalog changes, want at most one per change (+2)", got, changes)
	}
}
