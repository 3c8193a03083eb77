package streams_test

import (
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/network"

	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/node"
	"github.com/mosaik-go/mosaik/streams"
)

// TestAttach_RefusedLeavesNothing: a streams service refused on a host
// whose streams protocol someone else handles leaves no dispatcher for
// that host behind (it kept an empty one, and with it the host, for the
// life of the process); once the protocol is free, a node starts on it.
func TestAttach_RefusedLeavesNothing(t *testing.T) {
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay(), libp2p.DisableMetrics())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	h.SetStreamHandler(streams.ProtocolID, func(st network.Stream) { _ = st.Reset() })
	opts := []node.Option{node.WithHost(h), node.WithFastProfile(), node.WithLogger(testutil.Logger())}
	if n, err := node.New("streams-test", opts...); err == nil {
		_ = n.Close()
		t.Fatal("node.New on a host whose streams protocol is taken succeeded")
	} else if !strings.Contains(err.Error(), "someone else") {
		t.Fatalf("node.New: %v, want the protocol-taken refusal", err)
	}
	if streams.HostAttached(h) {
		t.Error("the refused service left a dispatcher holding the host")
	}
	h.RemoveStreamHandler(streams.ProtocolID)
	n, err := node.New("streams-test", opts...)
	if err != nil {
		t.Fatalf("node.New once the protocol is free: %v", err)
	}
	if !streams.HostAttached(h) {
		t.Error("a running service has no dispatcher")
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if streams.HostAttached(h) {
		t.Error("a closed service left its dispatcher")
	}
}
