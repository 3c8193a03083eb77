package streams_test

import (
	"context"
	"testing"
	"time"

	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/streams"
)

type order struct {
	ID    int
	Price float64
}

func TestSmoke_SendToTwoConsumers(t *testing.T) {
	t.Parallel()
	nodes := connected(t, 3)
	prod, err := streams.NewProducer[order](nodes[0].Streams(), "orders")
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	var cons []*streams.Consumer[order]
	for _, n := range nodes[1:] {
		c, err := streams.NewConsumer[order](n.Streams(), "orders")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		cons = append(cons, c)
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return len(prod.Consumers()) == 2 && prod.IsOnline() }, "producer has %d consumers", testutil.Lazy(func() any { return len(prod.Consumers()) }))
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Scale(5*time.Second))
	defer cancel()
	for i := range 10 {
		if err := prod.Send(ctx, order{ID: i, Price: float64(i) * 1.5}); err != nil {
			t.Fatal(err)
		}
	}
	for ci, c := range cons {
		for i := range 10 {
			v, err := c.Recv(ctx)
			if err != nil {
				t.Fatalf("consumer %d: %v", ci, err)
			}
			if v.ID != i || v.Price != float64(i)*1.5 {
				t.Fatalf("consumer %d got %+v, want ID %d", ci, v, i)
			}
		}
	}
}
