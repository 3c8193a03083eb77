package streams_test

import (
	"errors"
	"testing"
	"time"

	"github.com/mosaik-go/mosaik/catalog/discovery"
	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/node"
	"github.com/mosaik-go/mosaik/policy"
	"github.com/mosaik-go/mosaik/streams"
)

// A node-wide default policy applies to every producer of the node that
// sets none; WithPolicy replaces it; WithRequire adds to it.
func TestDefaultPolicy_NodeWide(t *testing.T) {
	t.Parallel()
	pol := streams.Policy{Require: []streams.Predicate{policy.HasTags("trusted")}}
	n0 := startNode(t, node.WithoutDHT(), node.WithDefaultStreamPolicy(pol))
	trusted := startNode(t, node.WithoutDHT(), node.WithTags("trusted", "eu"), node.WithBootstrapPeers(n0.AddrInfo()))
	stranger := startNode(t, node.WithoutDHT(), node.WithTags("eu"), node.WithBootstrapPeers(n0.AddrInfo()))
	nodes := []*node.Node{n0, trusted, stranger}
	testutil.Eventually(t, 15*time.Second, func() bool {
		for _, a := range nodes {
			for _, b := range nodes {
				if _, ok := a.Catalog().Get(b.ID()); !ok {
					return false
				}
			}
		}
		return true
	}, "nodes did not converge")

	guarded := mustProducer[string](t, n0, "guarded")
	opened := mustProducer[string](t, n0, "opened", streams.WithPolicy(streams.Policy{}))
	narrowed := mustProducer[string](t, n0, "narrowed", streams.WithRequire(policy.HasTags("eu")))
	var strangers []*streams.Consumer[string]
	for _, name := range []string{"guarded", "opened", "narrowed"} {
		mustConsumer[string](t, trusted, name)
		strangers = append(strangers, mustConsumer[string](t, stranger, name))
	}
	testutil.Eventually(t, 15*time.Second, func() bool {
		return semConnected(guarded.Consumers(), trusted.ID()) && semConnected(narrowed.Consumers(), trusted.ID()) &&
			semConnected(opened.Consumers(), trusted.ID()) && semConnected(opened.Consumers(), stranger.ID()) &&
			semRefused(strangers[0], n0) && semRefused(strangers[2], n0)
	}, "want the trusted node on every producer, the stranger on the opened one only and refused by the others; "+
		"guarded %+v, opened %+v, narrowed %+v", testutil.Lazy(func() any { return guarded.Consumers() }), testutil.Lazy(func() any { return opened.Consumers() }), testutil.Lazy(func() any { return narrowed.Consumers() }))
	semNever(t, "the guarded producer", semNoneOf(guarded.Consumers, false, stranger.ID()))
	semNever(t, "the narrowed producer", semNoneOf(narrowed.Consumers, false, stranger.ID()))
}

// semRefused reports whether c's link to producer node p ended with
// NotAllowed.
func semRefused(c *streams.Consumer[string], p *node.Node) bool {
	ci, ok := semInfo(c.Producers(), p.ID())
	if !ok || ci.Err == nil {
		return false
	}
	code, ok := semCode(ci.Err)
	return ok && code == streams.CodeNotAllowed
}

// Service.Close closes the producers and consumers created on it: the
// producer delivers what it queued, both report ErrClosed, the stream is
// withdrawn, and no new handle can be made on the closed service.
func TestService_CloseClosesHandles(t *testing.T) {
	t.Parallel()
	nodes := connected(t, 2, node.WithoutDHT())
	n0, n1 := nodes[0], nodes[1]
	prod := mustProducer[int](t, n0, "svc-close")
	remote := mustConsumer[int](t, n1, "svc-close")
	mustProducer[int](t, n1, "svc-close-back")
	local := mustConsumer[int](t, n0, "svc-close-back")
	semWait(t, prod.Subscribed(), 10*time.Second, "the remote consumer")
	for i := range 3 {
		semSend(t, prod, i, 5*time.Second)
	}
	if err := n0.Streams().Close(); err != nil {
		t.Fatal(err)
	}
	if err := prod.Send(testCtx(t, time.Second), 9); !errors.Is(err, streams.ErrClosed) {
		t.Errorf("Send after Service.Close: %v, want ErrClosed", err)
	}
	if _, err := local.Recv(testCtx(t, 5*time.Second)); !errors.Is(err, streams.ErrClosed) {
		t.Errorf("local consumer's Recv after Service.Close: %v, want ErrClosed", err)
	}
	for i := range 3 {
		if v := semRecv(t, remote, 5*time.Second); v != i {
			t.Fatalf("remote consumer got %d, want %d", v, i)
		}
	}
	if n0.Catalog().Local().Entry.Produces(prod.StreamID()) {
		t.Error("the closed producer's stream is still advertised")
	}
	if _, err := streams.NewProducer[int](n0.Streams(), "late"); !errors.Is(err, streams.ErrClosed) {
		t.Errorf("NewProducer on a closed service: %v, want ErrClosed", err)
	}
	if _, err := streams.NewConsumer[int](n0.Streams(), "late"); !errors.Is(err, streams.ErrClosed) {
		t.Errorf("NewConsumer on a closed service: %v, want ErrClosed", err)
	}
	if len(n0.Streams().Handles()) != 0 {
		t.Errorf("handles left on the closed service: %+v", n0.Streams().Handles())
	}
}

// A producer that refused the consumer for good is listed in Producers()
// as Terminated for Params.RefusalRetention, then no longer; the refusal
// itself stays (no retry) while neither catalog entry changes.
func TestConsumer_RefusalAgesOut(t *testing.T) {
	t.Parallel()
	quiet := discovery.TestParams() // no heartbeat changes an entry during the test
	quiet.AnnounceInterval = 10 * time.Minute
	quiet.Catalog.PurgeAfter = time.Hour
	sp := streams.DefaultParams()
	sp.HandshakeTimeout, sp.CloseTimeout, sp.RefusalRetention = 2*time.Second, 2*time.Second, 300*time.Millisecond
	nodes := connected(t, 2, node.WithoutDHT(), node.WithDiscoveryParams(quiet), node.WithStreamsParams(sp))
	n0, n1 := nodes[0], nodes[1]
	mustProducer[string](t, n0, "refused", streams.WithRequire(policy.HasTags("validator")))
	cons := mustConsumer[string](t, n1, "refused")
	testutil.Eventually(t, 10*time.Second, func() bool { return semRefused(cons, n0) },
		"the consumer was not refused: %+v", testutil.Lazy(func() any { return cons.Producers() }))
	testutil.Eventually(t, 10*time.Second, func() bool { _, listed := semInfo(cons.Producers(), n0.ID()); return !listed },
		"the refusal is still listed after RefusalRetention: %+v", testutil.Lazy(func() any { return cons.Producers() }))
	rejected := n0.Streams().Stats().Rejected
	semNever(t, "the aged-out refusal", func() string {
		if _, listed := semInfo(cons.Producers(), n0.ID()); listed {
			return "listed again"
		}
		if n0.Streams().Stats().Rejected != rejected {
			return "retried without a catalog change"
		}
		return ""
	})
}
