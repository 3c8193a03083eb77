package node

import (
	"testing"

	dht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// Several addresses of one bootstrap peer become one peer to dial, with
// every address once, in order of first mention.
func TestBootstrap_MergedByPeer(t *testing.T) {
	const a, b = "12D3KooWGzj43YNKNvspepdRsvR1AUW4vPqSGUqSgFAUN7ZYLUse", "12D3KooWRBy97UB99e3J6hiPesre1MZeuNQvfan4gBziswrRJsNK"
	var cfg config
	opt := WithBootstrap(
		"/ip4/127.0.0.1/tcp/4001/p2p/"+a,
		"/ip4/127.0.0.1/tcp/4002/p2p/"+b,
		"/ip4/127.0.0.1/udp/4001/quic-v1/p2p/"+a,
		"/ip4/127.0.0.1/tcp/4001/p2p/"+a,
	)
	if err := opt(&cfg); err != nil {
		t.Fatal(err)
	}
	got := mergeByPeer(cfg.bootstrap)
	idA, _ := peer.Decode(a)
	idB, _ := peer.Decode(b)
	want := []peer.AddrInfo{
		{ID: idA, Addrs: []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/4001"), ma.StringCast("/ip4/127.0.0.1/udp/4001/quic-v1")}},
		{ID: idB, Addrs: []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/4002")}},
	}
	if len(got) != len(want) {
		t.Fatalf("merged into %d peers, want %d: %v", len(got), len(want), got)
	}
	for i := range want {
		if got[i].ID != want[i].ID || len(got[i].Addrs) != len(want[i].Addrs) {
			t.Fatalf("peer %d: %v, want %v", i, got[i], want[i])
		}
		for j := range want[i].Addrs {
			if !got[i].Addrs[j].Equal(want[i].Addrs[j]) {
				t.Fatalf("peer %d address %d: %v, want %v", i, j, got[i].Addrs[j], want[i].Addrs[j])
			}
		}
	}
}

// Options that contradict each other are an error, not a silent choice.
func TestOptions_Contradictions(t *testing.T) {
	d := new(dht.IpfsDHT)
	for _, opts := range [][]Option{
		{WithDHT(d), WithoutDHT()},
		{WithDHT(d), WithDHTOptions(dht.Mode(dht.ModeClient))},
		{WithoutDHT(), WithDHTOptions(dht.Mode(dht.ModeClient))},
	} {
		var cfg config
		for _, o := range opts {
			if err := o(&cfg); err != nil {
				t.Fatal(err)
			}
		}
		if err := cfg.checkOptions(); err == nil {
			t.Errorf("%d contradicting options accepted", len(opts))
		}
	}
	var cfg config
	for _, o := range []Option{WithoutDHT(), WithBootstrap()} {
		_ = o(&cfg)
	}
	if err := cfg.checkOptions(); err != nil {
		t.Errorf("WithoutDHT alone: %v", err)
	}
}
