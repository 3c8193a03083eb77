package streams_test

import (
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/catalog/discovery"
	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/node"
	"github.com/mosaik-go/mosaik/streams"
)

// rbSetRTT drives p's smoothed RTT in n's table to d: the table is an
// RFC 6298 EWMA (SRTT = 7/8 SRTT + 1/8 R), so 200 equal samples leave
// less than (7/8)^200 of the previous value.
func rbSetRTT(n *node.Node, p peer.ID, d time.Duration) {
	for range 200 {
		n.Discovery().RTT().Record(p, d, time.Now())
	}
}

// TestRobust_LowestRTTWithHysteresis: a consumer WithLowestRTT(1, 0.2) of
// a stream with two producers subscribes to the one with the lowest RTT,
// keeps it while the other is better by less than the 20 % margin, and
// switches when the other becomes much better.
//
// RTT samples are injected into the consumer node's RTT table. Real probes
// would pull them toward the loopback RTT, so they are kept out: the
// consumer node runs a one-hour RTTProbeInterval (its probe loop fires
// once at start, when its catalog is still empty: the producers bootstrap
// from it afterwards), and the consumer itself probes only producers
// without a sample, which never happens here since the samples are in
// before it is created. The producers do probe the consumer when they
// accept it, but that records into their own tables.
func TestRobust_LowestRTTWithHysteresis(t *testing.T) {
	const name = "robust-rtt"
	cnode, anode, bnode := rttNodes(t)
	a, b := anode.ID(), bnode.ID()
	prodA := mustProducer[int](t, anode, name)
	prodB := mustProducer[int](t, bnode, name)
	testutil.Eventually(t, 10*time.Second, func() bool {
		return len(cnode.Catalog().Producers(prodA.StreamID())) == 2
	}, "the consumer node does not see both producers")

	rbSetRTT(cnode, a, time.Millisecond)
	rbSetRTT(cnode, b, 50*time.Millisecond)
	cons := mustConsumer[int](t, cnode, name, streams.WithLowestRTT(1, 0.2))
	testutil.Eventually(t, 10*time.Second, func() bool {
		return rbOnlyConnected(cons.Producers(), a) && rbAllConnected(prodA.Consumers(), 1)
	}, "consumer did not subscribe to the fastest producer: %+v", testutil.Lazy(func() any { return cons.Producers() }))

	// evaluated waits until the consumer has re-evaluated its producers
	// after this call: its subscription to A then carries an entry of A newer
	// than the one in the catalog now (A's heartbeats bring new versions).
	evaluated := func(what string) {
		t.Helper()
		e, _ := cnode.Catalog().Get(a)
		v0 := e.Entry.Version
		testutil.Eventually(t, 10*time.Second, func() bool {
			ci, ok := rbSubscription(cons.Producers(), a)
			return !ok || ci.Entry.Entry.Version.Compare(v0) > 0
		}, "no re-evaluation after %s", what)
	}
	evaluated("the first subscription")
	if !rbOnlyConnected(cons.Producers(), a) || len(prodB.Consumers()) != 0 {
		t.Fatalf("A at 1 ms, B at 50 ms: consumer holds %+v, B has %d consumers; want A only", cons.Producers(), len(prodB.Consumers()))
	}

	// B better than A, but by less than the margin: 9 ms >= 10 ms × 0.8.
	rbSetRTT(cnode, a, 10*time.Millisecond)
	rbSetRTT(cnode, b, 9*time.Millisecond)
	evaluated("B became slightly better")
	if !rbOnlyConnected(cons.Producers(), a) || len(prodB.Consumers()) != 0 {
		t.Fatalf("A at 10 ms, B at 9 ms (within 20 %%): consumer holds %+v, B has %d consumers; want A kept", cons.Producers(), len(prodB.Consumers()))
	}

	// B far better: the consumer moves to it on the next catalog change
	// (a tag change on the consumer node triggers one at once).
	rbSetRTT(cnode, a, 100*time.Millisecond)
	rbSetRTT(cnode, b, 100*time.Microsecond)
	if err := cnode.AddTags("robust-rtt-trigger"); err != nil {
		t.Fatal(err)
	}
	took := testutil.Eventually(t, 10*time.Second, func() bool {
		return rbOnlyConnected(cons.Producers(), b) && rbAllConnected(prodB.Consumers(), 1) && len(prodA.Consumers()) == 0
	}, "consumer did not switch to B: %+v", testutil.Lazy(func() any { return cons.Producers() }))
	t.Logf("switched to B in %v", took)
	ctx := testCtx(t, 10*time.Second)
	if err := prodB.Send(ctx, 7); err != nil {
		t.Fatal(err)
	}
	if v, err := cons.Recv(ctx); err != nil || v != 7 {
		t.Fatalf("after the switch: %v, %v", v, err)
	}
}

// rttNodes starts the consumer node of the lowest-RTT tests, whose own
// RTT probes are kept out (a one-hour RTTProbeInterval: see
// TestRobust_LowestRTTWithHysteresis) so that the samples the tests set
// stay, and two producer nodes bootstrapped from it. tune changes the
// three nodes' discovery parameters.
func rttNodes(t *testing.T, tune ...func(*discovery.Params)) (cnode, anode, bnode *node.Node) {
	t.Helper()
	params := func(probe time.Duration) node.Option {
		p := discovery.TestParams()
		p.RTTProbeInterval = probe
		for _, f := range tune {
			f(&p)
		}
		return node.WithDiscoveryParams(p)
	}
	cnode = startNode(t, params(time.Hour))
	prod := []node.Option{node.WithBootstrapPeers(cnode.AddrInfo())}
	if len(tune) > 0 {
		prod = append(prod, params(discovery.TestParams().RTTProbeInterval))
	}
	anode, bnode = startNode(t, prod...), startNode(t, prod...)
	return cnode, anode, bnode
}
