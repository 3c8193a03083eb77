package discovery_test

import (
	"context"
	"errors"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/catalog/discovery"
	"github.com/mosaik-go/mosaik/internal/testutil"
)

// probe calls Probe once: a probe already in flight (the service's own
// RTT loop probes catalog peers too) is joined, not refused.
func probe(t *testing.T, svc *discovery.Service, p peer.ID) (time.Duration, error) {
	t.Helper()
	return svc.Probe(context.Background(), p)
}

func TestProbe_RecordsRTT(t *testing.T) {
	nw := catalog.IDFromString("discovery-test/probe")
	a := newNode(t, nw)
	b := newNode(t, nw)
	connect(t, a.h, b.h)
	testutil.Eventually(t, 5*time.Second, func() bool { return knows(a.svc, b.h.ID()) }, "A does not know B")

	rtt, err := probe(t, a.svc, b.h.ID())
	if err != nil {
		t.Fatalf("Probe: %v", err)
	}
	if rtt <= 0 {
		t.Fatalf("Probe returned RTT %v", rtt)
	}
	got, ok := a.svc.RTT().Get(b.h.ID())
	if !ok || got <= 0 {
		t.Fatalf("RTT table holds %v, %v", got, ok)
	}
	st, _ := a.svc.RTT().Stats(b.h.ID())
	if st.Samples == 0 || st.Last.IsZero() {
		t.Errorf("RTT stats %+v", st)
	}
	info, ok := a.svc.PeerInfo(b.h.ID())
	if !ok {
		t.Fatal("PeerInfo: B unknown")
	}
	if !info.RTTKnown || info.RTT <= 0 || info.Entry.PeerID() != b.h.ID() {
		t.Errorf("PeerInfo = %+v", info)
	}
	if _, ok := a.svc.PeerInfo(peer.ID("nobody")); ok {
		t.Error("PeerInfo of an unknown peer")
	}
}

// blackhole accepts TCP connections and never answers, so a libp2p dial to
// it hangs in the security handshake until its context ends.
func blackhole(t *testing.T) ma.Multiaddr {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
	)
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	})
	t.Cleanup(func() {
		_ = l.Close()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	a, err := ma.NewMultiaddr("/ip4/127.0.0.1/tcp/" + strconv.Itoa(l.Addr().(*net.TCPAddr).Port))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestProbe_UnreachablePeerFailsWithinPingTimeout(t *testing.T) {
	nw := catalog.IDFromString("discovery-test/probe-unreachable")
	p := discovery.TestParams()
	a := newNode(t, nw)

	t.Run("no address", func(t *testing.T) {
		_, id := newKey(t)
		start := time.Now()
		if _, err := a.svc.Probe(context.Background(), id); err == nil {
			t.Fatal("Probe of a peer without addresses succeeded")
		}
		if took := time.Since(start); took > p.PingTimeout+testutil.Scale(time.Second) {
			t.Errorf("Probe failed after %v, PingTimeout is %v", took, p.PingTimeout)
		}
	})

	t.Run("blackhole", func(t *testing.T) {
		_, id := newKey(t)
		a.h.Peerstore().AddAddr(id, blackhole(t), time.Minute)
		start := time.Now()
		_, err := a.svc.Probe(context.Background(), id)
		took := time.Since(start)
		if err == nil {
			t.Fatal("Probe of a silent peer succeeded")
		}
		t.Logf("probe failed after %v: %v", took, err)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Probe = %v, want the PingTimeout deadline", err)
		}
		if took > p.PingTimeout+testutil.Scale(time.Second) {
			t.Errorf("Probe failed after %v, PingTimeout is %v", took, p.PingTimeout)
		}
		if _, ok := a.svc.RTT().Get(id); ok {
			t.Error("a failed probe recorded an RTT")
		}
	})

	t.Run("caller context", func(t *testing.T) {
		_, id := newKey(t)
		a.h.Peerstore().AddAddr(id, blackhole(t), time.Minute)
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		start := time.Now()
		if _, err := a.svc.Probe(ctx, id); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Probe = %v, want context.DeadlineExceeded", err)
		}
		if took := time.Since(start); took > testutil.Scale(time.Second) {
			t.Errorf("Probe ignored the caller's context: failed after %v", took)
		}
	})
}
