package dialer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/sec"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"
	"go.uber.org/goleak"

	"github.com/mosaik-go/mosaik/internal/testutil"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, testutil.LeakOptions()...)
}

// newHost is a TCP-only host on 127.0.0.1 with go-libp2p's default port
// reuse, as a mosaik node's TCP transport is.
func newHost(t *testing.T) host.Host {
	t.Helper()
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Security(noise.ID, noise.New), libp2p.Muxer(yamux.ID, yamux.DefaultTransport),
		libp2p.DisableRelay(), libp2p.DisableMetrics())
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func crossedErr(p peer.ID, addr string) error {
	return fmt.Errorf("failed to dial: %w", &swarm.DialError{Peer: p, DialErrors: []swarm.TransportError{{
		Address: ma.StringCast(addr),
		Cause:   errors.New("failed to negotiate security protocol: error reading handshake message: noise: message is too short"),
	}}})
}

func TestCrossed(t *testing.T) {
	p := peer.ID("p")
	tcpAddr, quicAddr := ma.StringCast("/ip4/127.0.0.1/tcp/1"), ma.StringCast("/ip4/127.0.0.1/udp/1/quic-v1")
	dialErr := func(a ma.Multiaddr, cause error) error {
		return &swarm.DialError{Peer: p, DialErrors: []swarm.TransportError{{Address: a, Cause: cause}}}
	}
	secFail := errors.New("failed to negotiate security protocol: error reading handshake message: noise: message is too short")
	for _, c := range []struct {
		name string
		err  error
		want bool
	}{
		{"crossed TCP dial, wrapped as host.Connect does", crossedErr(p, "/ip4/127.0.0.1/tcp/1"), true},
		{"one crossed address among others", &swarm.DialError{Peer: p, DialErrors: []swarm.TransportError{
			{Address: quicAddr, Cause: errors.New("timeout: no recent network activity")},
			{Address: tcpAddr, Cause: secFail},
		}}, true},
		{"security failure over QUIC (no simultaneous open)", dialErr(quicAddr, secFail), false},
		{"wrong peer ID", dialErr(tcpAddr, fmt.Errorf("failed to negotiate security protocol: %w", sec.ErrPeerIDMismatch{Expected: p, Actual: "q"})), false},
		{"handshake timeout", dialErr(tcpAddr, fmt.Errorf("failed to negotiate security protocol: %w", context.DeadlineExceeded)), false},
		{"peer closed the connection", dialErr(tcpAddr, fmt.Errorf("failed to negotiate security protocol: %w", io.EOF)), false},
		{"peer reset the connection", dialErr(tcpAddr, fmt.Errorf("failed to negotiate security protocol: read: %w", syscall.ECONNRESET)), false},
		{"no security protocol in common", dialErr(tcpAddr, errors.New("failed to negotiate security protocol: protocols not supported: [/noise]")), false},
		{"connection refused", dialErr(tcpAddr, syscall.ECONNREFUSED), false},
		{"dial backoff", &swarm.DialError{Peer: p, Cause: swarm.ErrDialBackoff}, false},
		{"not a dial error", errors.New("failed to negotiate security protocol"), false},
		{"context", context.DeadlineExceeded, false},
		{"nil", nil, false},
	} {
		if got := Crossed(c.err); got != c.want {
			t.Errorf("%s: Crossed = %v, want %v", c.name, got, c.want)
		}
	}
}

// scriptedHost fails its first dials with the given errors, then dials.
type scriptedHost struct {
	host.Host
	fail  []error
	calls atomic.Int32
}

func (s *scriptedHost) Connect(ctx context.Context, pi peer.AddrInfo) error {
	if n := int(s.calls.Add(1)); n <= len(s.fail) {
		return s.fail[n-1]
	}
	return s.Host.Connect(ctx, pi)
}

// A crossed dial is dialed again with the peer's dial backoff cleared (the
// swarm backs off an address whose dial failed).
func TestConnect_RetriesACrossedDial(t *testing.T) {
	a, b := newHost(t), newHost(t)
	defer a.Close()
	defer b.Close()
	pi := peer.AddrInfo{ID: b.ID(), Addrs: b.Addrs()}
	a.Network().(*swarm.Swarm).Backoff().AddBackoff(b.ID(), b.Addrs()[0])
	h := &scriptedHost{Host: a, fail: []error{crossedErr(b.ID(), b.Addrs()[0].String())}}
	if err := Connect(context.Background(), h, pi); err != nil {
		t.Fatalf("Connect after a crossed dial: %v", err)
	}
	if n := h.calls.Load(); n != 2 {
		t.Fatalf("%d dials, want 2", n)
	}
}

// Any other failure is returned from the first dial, and retries stop at
// three.
func TestConnect_OtherFailuresAreNotRetried(t *testing.T) {
	a, b := newHost(t), newHost(t)
	defer a.Close()
	pi := peer.AddrInfo{ID: b.ID(), Addrs: b.Addrs()}
	_ = b.Close() // nothing listens there now: connection refused
	h := &scriptedHost{Host: a}
	if err := Connect(context.Background(), h, pi); err == nil || Crossed(err) {
		t.Fatalf("Connect to a closed port: %v", err)
	}
	if n := h.calls.Load(); n != 1 {
		t.Fatalf("%d dials, want 1", n)
	}
	crossed := crossedErr(b.ID(), pi.Addrs[0].String())
	h = &scriptedHost{Host: a, fail: []error{crossed, crossed, crossed, crossed, crossed}}
	if err := Connect(context.Background(), h, pi); !Crossed(err) {
		t.Fatalf("Connect after four crossed dials: %v, want the last one", err)
	}
	if n := h.calls.Load(); n != 1+retries {
		t.Fatalf("%d dials, want %d", n, 1+retries)
	}
}

// Two hosts that dial each other at the same moment both end up
// connected. Without the retry about one pair in twenty fails on loopback
// (both dials fail the security handshake), so among 100 pairs some do.
func TestConnect_SimultaneousDialsConnect(t *testing.T) {
	const pairs = 100
	for i := range pairs {
		a, b := newHost(t), newHost(t)
		var ea, eb error
		var wg sync.WaitGroup
		start := make(chan struct{})
		ctx, cancel := context.WithTimeout(context.Background(), testutil.Scale(10*time.Second))
		wg.Go(func() { <-start; ea = Connect(ctx, a, peer.AddrInfo{ID: b.ID(), Addrs: b.Addrs()}) })
		wg.Go(func() { <-start; eb = Connect(ctx, b, peer.AddrInfo{ID: a.ID(), Addrs: a.Addrs()}) })
		close(start)
		wg.Wait()
		cancel()
		_, _ = a.Close(), b.Close()
		if ea != nil || eb != nil {
			t.Fatalf("pair %d of %d: %v / %v", i+1, pairs, ea, eb)
		}
	}
}

// cancellingHost cancels the dial's context as its first dial fails, as
// a caller that gives up during the pause would.
type cancellingHost struct {
	scriptedHost
	cancel context.CancelFunc
}

func (c *cancellingHost) Connect(ctx context.Context, pi peer.AddrInfo) error {
	c.cancel()
	return c.scriptedHost.Connect(ctx, pi)
}

// A context that ends during the pause ends Connect at once, with both the
// dial's error and the context's.
func TestConnect_ContextEndsThePause(t *testing.T) {
	a := newHost(t)
	defer a.Close()
	p := peer.ID("elsewhere")
	ctx, cancel := context.WithCancel(context.Background())
	h := &cancellingHost{scriptedHost: scriptedHost{Host: a, fail: []error{crossedErr(p, "/ip4/127.0.0.1/tcp/1")}}, cancel: cancel}
	err := Connect(ctx, h, peer.AddrInfo{ID: p})
	if !errors.Is(err, context.Canceled) || !Crossed(err) {
		t.Fatalf("Connect cancelled during the pause: %v", err)
	}
	if n := h.calls.Load(); n != 1 {
		t.Fatalf("%d dials, want 1", n)
	}
}
