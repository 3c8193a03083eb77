package streams_test

import (
	"context"
	"fmt"
	"time"

	"github.com/mosaik-go/mosaik/node"
	"github.com/mosaik-go/mosaik/streams"
)

// Two nodes on one machine: one produces prices, the other consumes them.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	loopback := node.WithListenAddrs("/ip4/127.0.0.1/tcp/0")
	a, err := node.New("example-net", loopback, node.WithFastProfile())
	if err != nil {
		panic(err)
	}
	defer a.Close()
	b, err := node.New("example-net", loopback, node.WithFastProfile(), node.WithBootstrapPeers(a.AddrInfo()))
	if err != nil {
		panic(err)
	}
	defer b.Close()

	type Price struct {
		Symbol string
		Cents  int64
	}
	prod, err := streams.NewProducer[Price](a.Streams(), "prices")
	if err != nil {
		panic(err)
	}
	defer prod.Close()
	cons, err := streams.NewConsumer[Price](b.Streams(), "prices")
	if err != nil {
		panic(err)
	}
	defer cons.Close()

	// Send waits until the consumer has found and subscribed to the producer.
	if err := prod.Send(ctx, Price{"ETH", 312_45}); err != nil {
		panic(err)
	}
	p, err := cons.Recv(ctx)
	if err != nil {
		panic(err)
	}
	fmt.Println(p.Symbol, p.Cents)
	// Output: ETH 31245
}
