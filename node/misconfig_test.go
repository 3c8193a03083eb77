package node_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/node"
)

// logBuffer collects JSON log records; safe for concurrent writers.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// count returns how many records have level and message msg.
func (b *logBuffer) count(level, msg string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, line := range strings.Split(b.buf.String(), "\n") {
		var r map[string]any
		if json.Unmarshal([]byte(line), &r) == nil && r["level"] == level && r["msg"] == msg {
			n++
		}
	}
	return n
}

func (b *logBuffer) logger() node.Option {
	return node.WithLogger(slog.New(slog.NewJSONHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})))
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// Two nodes with one key: the one started first sees the second's newer
// entries over the network and reports a duplicate identity; the second
// and the other peers do not.
func TestNode_DuplicateIdentity(t *testing.T) {
	sk, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	var firstLog logBuffer
	b := startNode(t, "dup-identity")
	first := startNode(t, "dup-identity", node.WithIdentity(sk), bootstrapOf(b), firstLog.logger())
	testutil.Eventually(t, 15*time.Second, func() bool { return allKnowAll([]*node.Node{b, first}) }, "no convergence")
	time.Sleep(2 * time.Millisecond) // entry versions start at the run's millisecond: start the second one later
	second := startNode(t, "dup-identity", node.WithIdentity(sk), bootstrapOf(b))
	testutil.Eventually(t, 20*time.Second, func() bool { return isClosed(first.DuplicateIdentity()) },
		"the first node never noticed the second with its key")
	if err := first.DuplicateIdentityErr(); !errors.Is(err, catalog.ErrDuplicateIdentity) {
		t.Fatalf("DuplicateIdentityErr = %v", err)
	}
	if n := firstLog.count("ERROR", "another process uses this node's identity: the network now ignores this node's entry"); n != 1 {
		t.Fatalf("%d error lines, want 1", n)
	}
	if isClosed(second.DuplicateIdentity()) || isClosed(b.DuplicateIdentity()) || second.DuplicateIdentityErr() != nil {
		t.Fatal("the second node or a peer reported a duplicate")
	}
}

// A node alone in its network warns once, after the configured delay; a
// node with a peer does not.
func TestNode_NoPeersWarning(t *testing.T) {
	const msg = "no other node of this network found"
	var alone, paired logBuffer
	startNode(t, "nobody-else-here", alone.logger(), node.WithNoPeersWarning(200*time.Millisecond))
	testutil.Eventually(t, 5*time.Second, func() bool { return alone.count("WARN", msg) == 1 }, "no warning from a lonely node")

	a := startNode(t, "two-here", node.WithNoPeersWarning(time.Second))
	startNode(t, "two-here", paired.logger(), bootstrapOf(a), node.WithNoPeersWarning(time.Second))
	testutil.Never(t, 2*time.Second, 100*time.Millisecond, func() string {
		if paired.count("WARN", msg) != 0 {
			return "a node with a peer warned that it has none"
		}
		return ""
	})
	if alone.count("WARN", msg) != 1 {
		t.Fatal("the lonely node warned more than once")
	}

	// Bootstrapped from a node of another network: the line names it.
	var mistyped logBuffer
	other := startNode(t, "the-real-name")
	startNode(t, "the-reel-name", mistyped.logger(), bootstrapOf(other), node.WithNoPeersWarning(time.Second))
	testutil.Eventually(t, 10*time.Second, func() bool { return mistyped.count("WARN", msg) == 1 }, "no warning")
	if !strings.Contains(mistyped.String(), `"other_networks":["`+catalog.IDFromString("the-real-name").Short()+`"]`) {
		t.Fatalf("the warning does not name the bootstrap peer's network:\n%s", mistyped.String())
	}
}

// A node whose only peer came and went (a short-lived command at a
// bootstrap node) has seen its network: it does not warn that it found no
// node of it.
func TestNode_NoPeersWarningAfterAVisit(t *testing.T) {
	const msg = "no other node of this network found"
	// The visitor comes and goes within the waits below (3.5 s each,
	// scaled as they are), so before the warning's delay (8 s, scaled) has
	// passed: the check then finds an empty catalog.
	delay := testutil.Scale(8 * time.Second)
	var left logBuffer
	b := startNode(t, "came-and-went", left.logger(), node.WithNoPeersWarning(delay))
	began := time.Now()
	visitor := startNode(t, "came-and-went", bootstrapOf(b))
	testutil.Eventually(t, 3500*time.Millisecond, func() bool { return b.Catalog().Len() == 1 }, "the visitor never reached the node")
	_ = visitor.Close()
	testutil.Eventually(t, 3500*time.Millisecond, func() bool { return b.Catalog().Len() == 0 }, "the visitor's departure never reached the node")
	if time.Since(began) >= delay {
		t.Fatalf("the visit took %v, past the warning's delay: the check below would prove nothing", time.Since(began))
	}
	testutil.Never(t, delay-time.Since(began)+500*time.Millisecond, 100*time.Millisecond, func() string {
		if left.count("WARN", msg) != 0 {
			return "a node whose peer departed warned that it never found one"
		}
		return ""
	})
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// An unreachable bootstrap peer is one Warn line, however often it is
// redialed.
func TestNode_BootstrapUnreachableWarning(t *testing.T) {
	dead := startNode(t, "bootstrap-warn")
	// TCP only: a dial of a closed QUIC port waits for its timeout, a closed
	// TCP port fails at once.
	var addrs []ma.Multiaddr
	for _, a := range dead.Host().Addrs() {
		if _, err := a.ValueForProtocol(ma.P_TCP); err == nil {
			addrs = append(addrs, a)
		}
	}
	pi := peer.AddrInfo{ID: dead.ID(), Addrs: addrs}
	if err := dead.Close(); err != nil {
		t.Fatal(err)
	}
	var log logBuffer
	startNode(t, "bootstrap-warn", log.logger(), node.WithBootstrapPeers(pi), node.WithNoPeersWarning(0))
	testutil.Eventually(t, 15*time.Second, func() bool { return log.count("DEBUG", "bootstrap dial failed") >= 2 },
		"the bootstrap peer was not redialed")
	if n := log.count("WARN", "bootstrap peer unreachable; retrying with backoff"); n != 1 {
		t.Fatalf("%d Warn lines after 3 failed dials, want 1", n)
	}
}

// TestBootstrap_SelfInListSkipped: one bootstrap list given to every node
// of a network names each node too. A node skips itself: it dialed itself
// for good, logging its own address as an unreachable bootstrap peer
// (found by the node review).
func TestBootstrap_SelfInListSkipped(t *testing.T) {
	other := startNode(t, "bootstrap-self", node.WithoutDHT())
	k, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	// A fixed address to name ourselves by: a free port, then reused.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	self := ma.StringCast(fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", l.Addr().(*net.TCPAddr).Port))
	_ = l.Close()
	var logs logBuffer
	n, err := node.New("bootstrap-self", node.WithIdentity(k), node.WithListenAddrs(self.String()), node.WithFastProfile(), node.WithoutDHT(),
		logs.logger(), node.WithBootstrapPeers(peer.AddrInfo{ID: id, Addrs: []ma.Multiaddr{self}}, other.AddrInfo()))
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	testutil.Eventually(t, 10*time.Second, func() bool { return allKnowAll([]*node.Node{n, other}) }, "the node did not meet its other bootstrap peer")
	if got := logs.count("DEBUG", "the bootstrap list names this node: skipped"); got != 1 {
		t.Errorf("%d records of the skip, want 1", got)
	}
	if got := logs.count("WARN", "bootstrap peer unreachable; retrying with backoff"); got != 0 {
		t.Errorf("%d warnings of an unreachable bootstrap peer: the node dialed itself", got)
	}
}

// TestNew_UnboundListenAddrWarned: libp2p starts when at least one listen
// address can be bound; the others were dropped without a word (found by
// the node review). Now each is named in a warning.
func TestNew_UnboundListenAddrWarned(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	busy := fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", l.Addr().(*net.TCPAddr).Port)
	const msg = "listen addresses could not be bound; the node runs without them"
	for _, tc := range []struct {
		name   string
		listen []string
		warned bool
	}{
		{"one busy", []string{busy, "/ip4/127.0.0.1/udp/0/quic-v1"}, true},
		{"all free", []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs logBuffer
			n, err := node.New("unbound-listen", node.WithListenAddrs(tc.listen...), node.WithoutDHT(), node.WithFastProfile(), logs.logger())
			if err != nil {
				t.Fatal(err)
			}
			defer n.Close()
			if got := logs.count("WARN", msg); (got == 1) != tc.warned {
				t.Fatalf("%d warnings of unbound addresses, want warned %v; listening on %v", got, tc.warned, n.Host().Network().ListenAddresses())
			}
			if tc.warned {
				logs.mu.Lock()
				named := strings.Contains(logs.buf.String(), busy)
				logs.mu.Unlock()
				if !named {
					t.Errorf("the warning does not name %s", busy)
				}
			}
		})
	}
}
