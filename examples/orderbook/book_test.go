package main

import (
	"bytes"
	"slices"
	"testing"

	"github.com/mosaik-go/mosaik/groups"
)

func TestBook_PriceTimePriority(t *testing.T) {
	b := newBook()
	b.Apply(groups.ApplyContext{FirstIndex: 1}, []Order{
		{ID: "s1", Side: Sell, Price: 101, Qty: 5},
		{ID: "s2", Side: Sell, Price: 100, Qty: 3},
		{ID: "s3", Side: Sell, Price: 100, Qty: 4}, // same price as s2, later
		{ID: "b1", Side: Buy, Price: 100, Qty: 5},  // takes s2 then s3
		{ID: "b1", Side: Buy, Price: 200, Qty: 9},  // a re-sent id: ignored
		{ID: "bad", Side: Buy, Price: 100, Qty: 0}, // invalid: ignored
		{ID: "b2", Side: Buy, Price: 102, Qty: 10}, // takes s3's rest and s1, rests 3
	})
	want := []Fill{
		{Seq: 1, Buy: "b1", Sell: "s2", Price: 100, Qty: 3, Index: 4},
		{Seq: 2, Buy: "b1", Sell: "s3", Price: 100, Qty: 2, Index: 4},
		{Seq: 3, Buy: "b2", Sell: "s3", Price: 100, Qty: 2, Index: 7},
		{Seq: 4, Buy: "b2", Sell: "s1", Price: 101, Qty: 5, Index: 7},
	}
	got := b.Query(FillsSince{})
	if !slices.Equal(got.Fills, want) || got.Orders != 5 || got.Resting != 1 {
		t.Fatalf("fills %+v, orders %d, resting %d", got, got.Orders, got.Resting)
	}
	if rest := b.State.Bids; len(rest) != 1 || rest[0].ID != "b2" || rest[0].Qty != 3 {
		t.Fatalf("resting bids %+v, want b2 with 3", rest)
	}
	if tail := b.Query(FillsSince{After: 3}); len(tail.Fills) != 1 || tail.Fills[0].Seq != 4 {
		t.Fatalf("FillsSince{3} = %+v", tail.Fills)
	}

	// A snapshot restores the same book, which then matches the same way.
	var buf bytes.Buffer
	if err := b.Snapshot(&buf); err != nil {
		t.Fatal(err)
	}
	c := newBook()
	if err := c.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	next := []Order{{ID: "s4", Side: Sell, Price: 99, Qty: 4}, {ID: "b2", Side: Buy, Price: 1, Qty: 1}}
	b.Apply(groups.ApplyContext{FirstIndex: 8}, next)
	c.Apply(groups.ApplyContext{FirstIndex: 8}, next)
	if x, y := b.Query(FillsSince{}), c.Query(FillsSince{}); !slices.Equal(x.Fills, y.Fills) || x.Resting != y.Resting || x.Orders != y.Orders {
		t.Fatalf("restored book diverged: %+v vs %+v", x, y)
	}
}
