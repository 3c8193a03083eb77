package discovery

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/internal/testutil"
)

// A sync asked for while one with the same peer is in flight is not
// dropped nor run beside it: the running one syncs once more when done
// (a settle sync must not be lost to a connect sync still running).
func TestSyncRetrying_OnceMoreWhenAskedMeanwhile(t *testing.T) {
	nw := catalog.IDFromString("discovery-test/retry-again")
	s, _ := loneService(t, nw, func(p *Params) { p.DisableSync = true })
	x, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = x.Close() })
	var open, streams atomic.Int32
	release := make(chan struct{})
	for _, id := range s.protos {
		x.SetStreamHandler(id, func(st network.Stream) {
			if open.Add(1) > 1 {
				t.Error("two syncs with one peer at once")
			}
			if streams.Add(1) == 1 {
				<-release // the first stays in flight until the second is asked for
			}
			open.Add(-1)
			_ = st.ResetWithError(CodeDifferentNetwork) // ends the chain: no retry
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Scale(5*time.Second))
	defer cancel()
	if err := s.h.Connect(ctx, peer.AddrInfo{ID: x.ID(), Addrs: x.Addrs()}); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { s.syncRetrying(x.ID(), fromSync); close(done) }()
	testutil.Eventually(t, 5*time.Second, func() bool { return streams.Load() == 1 }, "the first sync did not reach x")
	s.syncRetrying(x.ID(), fromSettleSync) // returns at once: one is running
	if n := streams.Load(); n != 1 {
		t.Fatalf("%d syncs reached x while the first was in flight; want 1", n)
	}
	close(release)
	select {
	case <-done:
	case <-time.After(testutil.Scale(5 * time.Second)):
		t.Fatal("the retry chain did not end")
	}
	if n := streams.Load(); n != 2 {
		t.Fatalf("%d syncs reached x; want 2 (the first, then the one asked for meanwhile)", n)
	}
}
