package discovery

import (
	"context"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/internal/testutil"
)

// A bump frame write blocked on a push peer that does not read ends when
// the service closes, not when SyncTimeout passes: Close waits for its
// push writers (review probe: Close took 18 s with SyncTimeout 20 s).
func TestSendBumps_CloseEndsABlockedWrite(t *testing.T) {
	nw := catalog.IDFromString("discovery-test/push-close")
	s, _ := loneService(t, nw, func(p *Params) { p.SyncTimeout = time.Minute })
	x, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = x.Close() })
	hold, opened := make(chan struct{}), make(chan struct{}, 1)
	defer close(hold)
	x.SetStreamHandler(BumpProtocol(nw), func(st network.Stream) {
		opened <- struct{}{}
		<-hold // never reads
		_ = st.Reset()
	})
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Scale(5*time.Second))
	defer cancel()
	if err := s.h.Connect(ctx, peer.AddrInfo{ID: x.ID(), Addrs: x.Addrs()}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		// Far more than the receive window of a stream nobody reads.
		_, err := s.sendBumps(nil, x.ID(), make([]byte, 8<<20))
		done <- err
	}()
	select {
	case <-opened:
	case <-ctx.Done():
		t.Fatal("no push stream opened")
	}
	start := time.Now()
	_ = s.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("the blocked write succeeded")
		}
	case <-time.After(testutil.Scale(5 * time.Second)):
		t.Fatal("Close did not end a write blocked on a peer that does not read")
	}
	t.Logf("write ended %v after Close", time.Since(start))
}
