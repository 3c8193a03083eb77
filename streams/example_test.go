package streams_test

import (
	"context"
	"fmt"
	"time"

	"github.com/mosaik-go/mosaik/node"
	"github.com/mosaik-go/mosaik/policy"
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

// Producers are open by default; a node-wide default policy restricts all
// of them at once, and a producer with its own policy opts out.
func ExamplePolicy() {
	n, err := node.New("example-net", node.WithListenAddrs("/ip4/127.0.0.1/tcp/0"),
		node.WithDefaultStreamPolicy(streams.Policy{Require: []streams.Predicate{policy.HasTags("trader")}}))
	if err != nil {
		panic(err)
	}
	defer n.Close() // closes the producers below too

	orders, err := streams.NewProducer[string](n.Streams(), "orders") // traders only
	if err != nil {
		panic(err)
	}
	defer orders.Close()
	news, err := streams.NewProducer[string](n.Streams(), "news",
		streams.WithPolicy(streams.Policy{})) // anyone in the network
	if err != nil {
		panic(err)
	}
	defer news.Close()
}

// A Condition waits for an edge: here, for a second consumer to subscribe.
// Waits from several goroutines are fine, and a rise that happens between
// two Waits is not missed.
func ExampleCondition_Wait() {
	ctx := context.Background()
	n, err := node.New("example-net", node.WithListenAddrs("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		panic(err)
	}
	defer n.Close()
	prod, err := streams.NewProducer[string](n.Streams(), "quotes")
	if err != nil {
		panic(err)
	}
	defer prod.Close()
	two := prod.Subscribed().MinimumOf(2)
	go func() {
		for two.Wait(ctx) == nil {
			fmt.Println("two consumers or more")
		}
	}()
}

// A producer keeps its last datums so that consumers resume without loss
// after a short outage; a consumer that saved its positions resumes from
// them after its own restart.
func ExampleWithReplay() {
	n, err := node.New("example-net", node.WithListenAddrs("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		panic(err)
	}
	defer n.Close()
	// At most 100 000 datums and 64 MiB, each kept for a minute.
	prod, err := streams.NewProducer[string](n.Streams(), "orders",
		streams.WithReplay(streams.Replay{Datums: 100_000, Bytes: 64 << 20, Age: time.Minute}))
	if err != nil {
		panic(err)
	}
	defer prod.Close()

	var saved []streams.Position // e.g. read back from a file at start-up
	cons, err := streams.NewConsumer[string](n.Streams(), "orders", streams.WithResumeFrom(saved...))
	if err != nil {
		panic(err)
	}
	defer cons.Close()
	// ... after processing datums, save where the application stands:
	saved = cons.Positions()
	_ = saved
}
