package streams_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/node"
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

// TestRobust_RefusalRetriesOnRelevantChange: after a final refusal the
// consumer retries only when the refusing producer's entry (or its own)
// changes in content, never on heartbeats, which bump every version; and
// even then not before the refusal backoff.
func TestRobust_RefusalRetriesOnRelevantChange(t *testing.T) {
	const name = "robust-refusal-retry"
	const backoffMin = 3 * time.Second // ±50 % jitter: at least 1.5 s
	sp := streams.DefaultParams()
	sp.HandshakeTimeout, sp.CloseTimeout = 2*time.Second, 2*time.Second
	// RefusalRetryMax well past the test: no retry without a change.
	sp.RefusalRetryMin, sp.RefusalRetryMax = backoffMin, time.Minute
	nodes := connected(t, 2, node.WithoutDHT(), node.WithStreamsParams(sp))
	pnode, cnode := nodes[0], nodes[1]
	var allow atomic.Bool
	mustProducer[int](t, pnode, name, streams.WithRequire(func(catalog.PeerInfo) bool { return allow.Load() }))
	cons := mustConsumer[int](t, cnode, name)
	rejected := func() uint64 { return pnode.Streams().Stats().Rejected }
	testutil.Eventually(t, 10*time.Second, func() bool { return rejected() >= 1 }, "no NotAllowed")
	first, n := time.Now(), rejected()

	// A relevant change at once: the retry waits for the backoff.
	if err := pnode.SetTags("reconfigured"); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 15*time.Second, func() bool { return rejected() > n },
		"the consumer did not retry after the producer's entry changed")
	if el := time.Since(first); el < backoffMin/2-300*time.Millisecond {
		t.Errorf("retried %v after the refusal, want the backoff (at least %v)", el, backoffMin/2)
	}
	n = rejected()

	// Heartbeats of both nodes change the catalog, not the entries' content.
	// The window outlasts the backoff (at most 1.5 x backoffMin), so that a
	// retry on any change would show.
	start := time.Now()
	got, changes := rbCountOverChanges(t, cnode, 4, rejected)
	for time.Since(start) < backoffMin*2 {
		g, c := rbCountOverChanges(t, cnode, 1, rejected)
		got, changes = got+g, changes+c
	}
	if got != 0 {
		t.Errorf("the consumer retried %d times over %d unrelated catalog changes, want 0", got, changes)
	}

	// Admitted once the producer's entry changes again.
	allow.Store(true)
	if err := pnode.SetTags("reconfigured", "open"); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 15*time.Second, func() bool { return connectedProducers(cons)[pnode.ID()] },
		"the consumer did not subscribe after the producer's entry changed: %+v", testutil.Lazy(func() any { return cons.Producers() }))
	if d := rejected() - n; d > 1 {
		t.Errorf("%d refusals between the change and the subscription, want at most 1", d)
	}
}

// TestRobust_QuietSubscriptionSurvivesALinkFailure: a subscription that
// stayed up without a datum for longer than the backoff's MaxElapsedTime
// is reconnected after a link failure, not given up: the give-up time
// counts failing, not quiet connected time. Before the fix the backoff
// restarted only after a datum, so the first failure after MaxElapsedTime
// (5 min by default) ended the subscription for good.
func TestRobust_QuietSubscriptionSurvivesALinkFailure(t *testing.T) {
	const name = "robust-quiet"
	nodes := connected(t, 2, node.WithoutDHT())
	pnode, cnode := nodes[0], nodes[1]
	mustProducer[int](t, pnode, name)
	cons := mustConsumer[int](t, cnode, name, streams.WithBackoff(func() backoff.BackOff {
		b := backoff.NewExponentialBackOff()
		b.InitialInterval, b.MaxElapsedTime = 100*time.Millisecond, time.Second
		b.Reset()
		return b
	}))
	testutil.Eventually(t, 10*time.Second, func() bool { return connectedProducers(cons)[pnode.ID()] }, "not subscribed")
	// Quiet and connected for longer than MaxElapsedTime and than the
	// session length that restarts the backoff (5 s): the scenario's
	// duration, not a synchronisation.
	time.Sleep(6 * time.Second)
	if !connectedProducers(cons)[pnode.ID()] {
		t.Fatalf("the quiet subscription ended by itself: %+v", cons.Producers())
	}
	if err := cnode.Host().Network().ClosePeer(pnode.ID()); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		ps := cons.Producers()
		return len(ps) == 1 && ps[0].State == streams.Connected && ps[0].Stats.Reconnects >= 1
	}, "the consumer did not reconnect after the link failure: %+v", testutil.Lazy(func() any { return cons.Producers() }))
}

// TestRobust_RefusalIsRetriedWithoutAChange: a verdict can change with
// time alone (here a predicate that admits from a moment on, as a ticket's
// not-before does): a refusal that no entry change answers is retried once
// RefusalRetryMax has passed. It used to wait for a change of either
// entry's content, so it lasted for good.
func TestRobust_RefusalIsRetriedWithoutAChange(t *testing.T) {
	const name = "robust-refusal-time"
	sp := streams.DefaultParams()
	sp.RefusalRetryMin, sp.RefusalRetryMax = 500*time.Millisecond, 2*time.Second
	nodes := connected(t, 2, node.WithoutDHT(), node.WithStreamsParams(sp))
	pnode, cnode := nodes[0], nodes[1]
	var from atomic.Int64
	from.Store(time.Now().Add(time.Hour).UnixNano())
	mustProducer[int](t, pnode, name, streams.WithRequire(func(catalog.PeerInfo) bool { return time.Now().UnixNano() >= from.Load() }))
	cons := mustConsumer[int](t, cnode, name)
	rejected := func() uint64 { return pnode.Streams().Stats().Rejected }
	testutil.Eventually(t, 10*time.Second, func() bool { return rejected() >= 1 }, "no NotAllowed")
	refused := time.Now()
	from.Store(refused.UnixNano()) // admitted from now on; no entry changes
	testutil.Eventually(t, 15*time.Second, func() bool { return connectedProducers(cons)[pnode.ID()] },
		"the consumer did not retry the producer without an entry change: %+v", testutil.Lazy(func() any { return cons.Producers() }))
	t.Logf("subscribed %v after the refusal (RefusalRetryMax %v)", time.Since(refused).Round(time.Millisecond), sp.RefusalRetryMax)
}

// TestRobust_CutAfterOurChangeIsRetriedOnOurNextHeartbeat: the producer
// cut the subscription (NotAllowed) on a copy of the consumer's entry that
// the consumer has changed since it was accepted, as when a renewed ticket
// reaches the producer after the old one's expiry timer fired. The
// consumer's next heartbeat carries its entry again, so it retries once
// then, with no change of content and long before RefusalRetryMax. It
// used to wait for a change of either entry's content, for good.
func TestRobust_CutAfterOurChangeIsRetriedOnOurNextHeartbeat(t *testing.T) {
	const name = "robust-refusal-stale"
	sp := streams.DefaultParams()
	sp.RefusalRetryMin, sp.RefusalRetryMax = 500*time.Millisecond, time.Hour
	nodes := connected(t, 2, node.WithoutDHT(), node.WithStreamsParams(sp))
	pnode, cnode := nodes[0], nodes[1]
	var allow atomic.Bool
	allow.Store(true)
	prod := mustProducer[int](t, pnode, name, streams.WithRequire(func(catalog.PeerInfo) bool { return allow.Load() }))
	cons := mustConsumer[int](t, cnode, name)
	testutil.Eventually(t, 10*time.Second, func() bool { return connectedConsumers(prod)[cnode.ID()] }, "not admitted")
	// The consumer changes its entry; the producer judges it (stand-in for
	// the expiry timer firing on the old entry) and cuts.
	allow.Store(false)
	if err := cnode.AddTags("renewed"); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		ps := cons.Producers()
		return len(ps) == 1 && ps[0].State == streams.Terminated
	}, "the producer did not cut the consumer: %+v", testutil.Lazy(func() any { return cons.Producers() }))
	allow.Store(true) // the renewed entry would pass: no entry changes from here
	testutil.Eventually(t, 15*time.Second, func() bool { return connectedConsumers(prod)[cnode.ID()] },
		"the consumer did not retry on its next heartbeat: %+v", testutil.Lazy(func() any { return cons.Producers() }))
}
