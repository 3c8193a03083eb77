package node_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/network"

	"github.com/mosaik-go/mosaik/internal/testutil"
)

// timeoutErr is what identify reports when its exchange hits its deadline
// (yamux's "i/o deadline reached" is such a net.Error).
type timeoutErr struct{}

func (timeoutErr) Error() string { return "i/o deadline reached" }
func (timeoutErr) Timeout() bool { return true }

// TestMuteLink_IdentifyTimeoutClosesAndRedials: identify runs once per
// connection, and gossipsub and the catalog sync start on a connection only
// once it completed, so a connection whose identify timed out (a loaded
// host) carried nothing for as long as it lasted: a newcomer whose only
// connection it was stayed cut off (TestChurn_ThirtyNodes, under load, had a
// node connected to a live peer for 82 s with an empty catalog). Now the
// connection is closed and the bootstrap loop dials again. Identify's
// failure is emitted on the host's bus here, as the identify service emits
// it; a failure that is no timeout (a connection closed under identify,
// another one healthy) closes nothing.
func TestMuteLink_IdentifyTimeoutClosesAndRedials(t *testing.T) {
	const nw = "mute-link"
	a := startNode(t, nw)
	b := startNode(t, nw, bootstrapOf(a))
	c := startNode(t, nw, bootstrapOf(a))
	testutil.Eventually(t, 10*time.Second, func() bool {
		_, ok := b.Catalog().Get(a.ID())
		_, okc := b.Catalog().Get(c.ID())
		return ok && okc
	}, "b never learned a and c")
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Scale(10*time.Second))
	defer cancel()
	if err := b.Host().Connect(ctx, c.AddrInfo()); err != nil {
		t.Fatal(err)
	}
	em, err := b.Host().EventBus().Emitter(new(event.EvtPeerIdentificationFailed))
	if err != nil {
		t.Fatal(err)
	}
	defer em.Close()
	toA, toC := b.Host().Network().ConnsToPeer(a.ID()), b.Host().Network().ConnsToPeer(c.ID())

	// Not a timeout, for a: nothing closed. Then a timeout, for c: closed,
	// then dialed again (c is b's catalog peer: the top-up dials it). The
	// service takes events in order, so once c's is counted a's was seen.
	if err := em.Emit(event.EvtPeerIdentificationFailed{Peer: a.ID(), Reason: errors.New("connection closed")}); err != nil {
		t.Fatal(err)
	}
	if err := em.Emit(event.EvtPeerIdentificationFailed{Peer: c.ID(), Reason: fmt.Errorf("identify: %w", timeoutErr{})}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return b.Discovery().Stats().MuteLinksClosed == 1 },
		"the timed-out identify closed nothing: stats %+v", testutil.Lazy(func() any { return b.Discovery().Stats() }))
	for _, conn := range toC {
		if !conn.IsClosed() {
			t.Errorf("connection %s to c is still open", conn.ID())
		}
	}
	for _, conn := range toA {
		if conn.IsClosed() {
			t.Errorf("connection %s to a was closed on a failure that was no timeout", conn.ID())
		}
	}
	testutil.Eventually(t, 15*time.Second, func() bool {
		return b.Host().Network().Connectedness(c.ID()) == network.Connected
	}, "b did not dial c again")
}
