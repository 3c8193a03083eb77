package node_test

import (
	"testing"

	"github.com/libp2p/go-libp2p"

	"github.com/mosaik-go/mosaik/node"
)

func BenchmarkZZNew(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay(), libp2p.DisableMetrics())
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		n, err := node.New("zz-bench", node.WithHost(h))
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		_ = n.Close()
		_ = h.Close()
		b.StartTimer()
	}
}
