package main

import (
	"cmp"
	"io"
	"slices"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/groups"
)

// Side of an order.
type Side uint8

const (
	Buy  Side = 1
	Sell Side = 2
)

func (s Side) String() string {
	if s == Buy {
		return "buy"
	}
	return "sell"
}

// Order is what a trader sends on the orders stream and what the matchers
// put in the group's log.
type Order struct {
	ID     string // unique per trader: "<trader>-<n>"
	Trader string
	Side   Side
	Price  uint64 // in ticks
	Qty    uint64
}

// Fill is one match between a resting order and an incoming one. Seq
// numbers fills from 1 in the order the book made them: the same on every
// matcher.
type Fill struct {
	Seq   uint64
	Buy   string // order ids
	Sell  string
	Price uint64 // the resting order's price
	Qty   uint64
	Index uint64 // the log index of the order that made the fill
}

// FillsSince asks for the fills with Seq > After.
type FillsSince struct{ After uint64 }

// Fills answers FillsSince; Orders is how many distinct orders the book
// has taken, Resting how many rest in it.
type Fills struct {
	Fills   []Fill
	Orders  int
	Resting int
}

// book is a price-time priority limit order book: the group's state
// machine. It is deterministic (no clock, no randomness, no map
// iteration), as Apply must be.
type book struct {
	State bookState
}

// bookState is the whole state, CBOR-encoded as the snapshot.
type bookState struct {
	Bids  []Order // best first: highest price, then oldest
	Asks  []Order // best first: lowest price, then oldest
	Fills []Fill
	Seen  map[string]bool // order ids taken, so a re-sent order is a no-op
}

var _ groups.StateMachine[Order, FillsSince, Fills] = (*book)(nil)

func newBook() *book { return &book{State: bookState{Seen: map[string]bool{}}} }

// Signature names the state machine's type and semantics; it is part of
// the group id, so a matcher with another book version never bonds.
func (b *book) Signature() catalog.ID { return catalog.IDFromString("mosaik-go/examples/orderbook v1") }

func (b *book) Apply(ctx groups.ApplyContext, orders []Order) {
	for i, o := range orders {
		if o.Qty == 0 || o.Price == 0 || (o.Side != Buy && o.Side != Sell) || b.State.Seen[o.ID] {
			continue // invalid or already taken: a no-op on every matcher
		}
		b.State.Seen[o.ID] = true
		b.match(o, ctx.Index(i))
	}
}

// match crosses o against the opposite side, then rests what is left.
func (b *book) match(o Order, index uint64) {
	s := &b.State
	opp, crosses := &s.Asks, func(r Order) bool { return r.Price <= o.Price }
	if o.Side == Sell {
		opp, crosses = &s.Bids, func(r Order) bool { return r.Price >= o.Price }
	}
	for o.Qty > 0 && len(*opp) > 0 && crosses((*opp)[0]) {
		r := &(*opp)[0]
		q := min(o.Qty, r.Qty)
		f := Fill{Seq: uint64(len(s.Fills)) + 1, Price: r.Price, Qty: q, Index: index, Buy: o.ID, Sell: r.ID}
		if o.Side == Sell {
			f.Buy, f.Sell = r.ID, o.ID
		}
		s.Fills = append(s.Fills, f)
		o.Qty -= q
		r.Qty -= q
		if r.Qty == 0 {
			*opp = (*opp)[1:]
		}
	}
	if o.Qty == 0 {
		return
	}
	// Rest after every order at the same price (time priority).
	if o.Side == Buy {
		i, _ := slices.BinarySearchFunc(s.Bids, o, func(a, t Order) int { return cmp.Compare(t.Price, a.Price) + boolInt(a.Price == t.Price) })
		s.Bids = slices.Insert(s.Bids, i, o)
	} else {
		i, _ := slices.BinarySearchFunc(s.Asks, o, func(a, t Order) int { return cmp.Compare(a.Price, t.Price) + boolInt(a.Price == t.Price) })
		s.Asks = slices.Insert(s.Asks, i, o)
	}
}

// boolInt makes equal prices compare as "before the target", so a new
// order is inserted after every resting order at its price.
func boolInt(b bool) int {
	if b {
		return -1
	}
	return 0
}

func (b *book) Query(q FillsSince) Fills {
	s := &b.State
	out := Fills{Orders: len(s.Seen), Resting: len(s.Bids) + len(s.Asks)}
	if q.After < uint64(len(s.Fills)) {
		out.Fills = slices.Clone(s.Fills[q.After:])
	}
	return out
}

func (b *book) Snapshot(w io.Writer) error { return groups.CBOREncoder(w).Encode(&b.State) }

func (b *book) Restore(r io.Reader) error {
	var st bookState
	if err := groups.CBORDecoder(r).Decode(&st); err != nil {
		return err
	}
	if st.Seen == nil {
		st.Seen = map[string]bool{}
	}
	b.State = st
	return nil
}
