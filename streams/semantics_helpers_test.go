package streams_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/node"
	"github.com/mosaik-go/mosaik/streams"
)

// Helpers of the semantics_* tests. Their names carry a "sem" prefix so
// they cannot collide with helpers other test files of the package add.

// semNodes starts one node per tag set (nil for an untagged node), all
// bootstrapped from the first and without a DHT, and waits until every
// catalog holds every node.
func semNodes(t testing.TB, tags ...[]string) []*node.Node {
	t.Helper()
	var nodes []*node.Node
	for i, ts := range tags {
		opts := []node.Option{node.WithoutDHT(), node.WithTags(ts...)}
		if i > 0 {
			opts = append(opts, node.WithBootstrapPeers(nodes[0].AddrInfo()))
		}
		nodes = append(nodes, startNode(t, opts...))
	}
	testutil.Eventually(t, 15*time.Second, func() bool {
		for _, a := range nodes {
			for _, b := range nodes {
				if _, ok := a.Catalog().Get(b.ID()); !ok {
					return false
				}
			}
		}
		return true
	}, "%d nodes did not converge", len(nodes))
	return nodes
}

// semFastBackoff is a constant 100 ms reconnect policy, so tests that
// wait for a retry stay fast.
func semFastBackoff() backoff.BackOff { return backoff.NewConstantBackOff(100 * time.Millisecond) }

// semInfo returns the subscription to peer p in infos.
func semInfo(infos []streams.SubscriptionInfo, p peer.ID) (streams.SubscriptionInfo, bool) {
	for _, ci := range infos {
		if ci.Peer == p {
			return ci, true
		}
	}
	return streams.SubscriptionInfo{}, false
}

// semConnected reports whether infos hold a Connected subscription to p.
func semConnected(infos []streams.SubscriptionInfo, p peer.ID) bool {
	ci, ok := semInfo(infos, p)
	return ok && ci.State == streams.Connected
}

// semConnectedPeers returns the peers of the Connected subscriptions in infos.
func semConnectedPeers(infos []streams.SubscriptionInfo) []peer.ID {
	var out []peer.ID
	for _, ci := range infos {
		if ci.State == streams.Connected {
			out = append(out, ci.Peer)
		}
	}
	return out
}

// semCode returns the close code carried by err, if it is a *CodeError.
func semCode(err error) (streams.Code, bool) {
	var ce *streams.CodeError
	if errors.As(err, &ce) {
		return ce.Code, true
	}
	return 0, false
}

// semRecv receives one datum within d or fails the test.
func semRecv[T any](t testing.TB, c *streams.Consumer[T], d time.Duration) T {
	t.Helper()
	v, err := c.Recv(testCtx(t, d))
	if err != nil {
		t.Fatalf("Recv: %v", err)
	}
	return v
}

// semSend sends one datum within d or fails the test.
func semSend[T any](t testing.TB, p *streams.Producer[T], v T, d time.Duration) {
	t.Helper()
	if err := p.Send(testCtx(t, d), v); err != nil {
		t.Fatalf("Send: %v", err)
	}
}

// semWait waits for cond's next not-met to met edge within d.
func semWait(t testing.TB, c *streams.Condition, d time.Duration, what string) {
	t.Helper()
	if err := c.Wait(testCtx(t, d)); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

// semNotYet asserts that cond.Wait does not return within d: the
// condition has no pending edge. It also records an unmet observation,
// which re-arms a Condition that already fired.
func semNotYet(t testing.TB, c *streams.Condition, d time.Duration, what string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if err := c.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("%s: Wait returned %v, want no edge within %v", what, err, d)
	}
}
