package main

import (
	"context"
	"io"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestOrderbook_EndToEnd runs the example as `go run` does, leader
// failover included, and checks the book: every order taken once, the
// fills consistent with the orders, the same book on every live matcher,
// and every fill on the tape.
func TestOrderbook_EndToEnd(t *testing.T) {
	cfg := defaultConfig()
	cfg.Network = "orderbook-test"
	cfg.Orders = 12
	sum, err := run(context.Background(), cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	total := cfg.Traders * cfg.Orders
	if sum.Orders != total {
		t.Errorf("book took %d orders, want %d", sum.Orders, total)
	}
	if !sum.Consistent {
		t.Error("the live matchers hold different books")
	}
	if len(sum.Leaders) != 2 || sum.Leaders[0] == sum.Leaders[1] {
		t.Errorf("leaders %v, want the first one replaced by another", sum.Leaders)
	}
	if sum.Taped != len(sum.Fills) {
		t.Errorf("tape has %d fills, the book %d", sum.Taped, len(sum.Fills))
	}
	if len(sum.Fills) == 0 {
		t.Fatal("no fills: the orders are meant to cross")
	}
	// Arrival order decides the fills, so check invariants, not a list.
	orders := map[string]Order{}
	for i := range cfg.Traders {
		for k := range cfg.Orders {
			o := orderOf(i, k)
			orders[o.ID] = o
		}
	}
	filled := map[string]uint64{}
	for i, f := range sum.Fills {
		if f.Seq != uint64(i+1) || f.Qty == 0 {
			t.Fatalf("fill %d: %+v", i, f)
		}
		b, s := orders[f.Buy], orders[f.Sell]
		if b.Side != Buy || s.Side != Sell || b.Price < f.Price || s.Price > f.Price {
			t.Errorf("fill %+v does not cross buy %+v and sell %+v", f, b, s)
		}
		filled[f.Buy] += f.Qty
		filled[f.Sell] += f.Qty
	}
	for id, q := range filled {
		if q > orders[id].Qty {
			t.Errorf("order %s filled %d of %d", id, q, orders[id].Qty)
		}
	}
	if sum.Took > cfg.Timeout || sum.Setup <= 0 {
		t.Errorf("setup %v, took %v", sum.Setup, sum.Took)
	}
}
