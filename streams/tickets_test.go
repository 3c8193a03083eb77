package streams_test

import (
	"context"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/node"
	"github.com/mosaik-go/mosaik/policy"
	"github.com/mosaik-go/mosaik/streams"
)

// ticketIssuer is a libp2p key that issues signed tickets for the test
// network.
type ticketIssuer struct {
	key crypto.PrivKey
	id  peer.ID
}

func newIssuer(t *testing.T) ticketIssuer {
	t.Helper()
	k, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := peer.IDFromPrivateKey(k)
	return ticketIssuer{k, id}
}

// give issues a ticket of class for n, valid until exp, and adds it to n's
// entry (replacing any ticket of the class).
func (i ticketIssuer) give(t *testing.T, n *node.Node, class catalog.TicketClass, exp time.Time) {
	t.Helper()
	tk, err := policy.IssueSignedTicket(i.key, policy.SignedTicket{Subject: n.ID(), Network: n.Network(), Class: class, Expires: exp})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.ReplaceTicket(tk); err != nil {
		t.Fatal(err)
	}
}

func (i ticketIssuer) validator(n *node.Node, class catalog.TicketClass) policy.TicketValidator {
	return policy.NewSignedTicketValidator(n.Network(), i.id).WithClass(class)
}

// ticketNodes starts n nodes without a DHT and waits for convergence.
func ticketNodes(t *testing.T, n int) []*node.Node {
	t.Helper()
	return connected(t, n, node.WithoutDHT())
}

// connectedProducers lists the producers a consumer is connected to.
func connectedProducers[T any](c *streams.Consumer[T]) map[peer.ID]bool {
	out := map[peer.ID]bool{}
	for _, ch := range c.Producers() {
		if ch.State == streams.Connected {
			out[ch.Peer] = true
		}
	}
	return out
}

func connectedConsumers[T any](p *streams.Producer[T]) map[peer.ID]bool {
	out := map[peer.ID]bool{}
	for _, ch := range p.Consumers() {
		if ch.State == streams.Connected {
			out[ch.Peer] = true
		}
	}
	return out
}

// waitCatalogTicket waits until every node's catalog holds holder's entry
// with a ticket of class.
func waitCatalogTicket(t *testing.T, nodes []*node.Node, holder *node.Node, class catalog.TicketClass) {
	t.Helper()
	testutil.Eventually(t, 5*time.Second, func() bool {
		for _, n := range nodes {
			if n == holder {
				continue
			}
			e, ok := n.Catalog().Get(holder.ID())
			if !ok || len(e.Entry.TicketsOf(class)) == 0 {
				return false
			}
		}
		return true
	}, "ticket of %s not seen everywhere", testutil.Lazy(func() any { return holder.ID() }))
}

// holds asserts that cond stays true for d: the only way to check that
// something does not happen.
func holds(t *testing.T, d time.Duration, cond func() bool, msg string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if !cond() {
			t.Fatal(msg)
		}
		time.Sleep(50 * time.Millisecond) // sampling interval of a "stays true" check
	}
}

func TestTickets_ConsumerSubscribesOnlyToTicketedProducer(t *testing.T) {
	nodes := ticketNodes(t, 4) // consumer, valid, expired, none
	iss := newIssuer(t)
	class := catalog.IDFromString("test.producer.ticket")
	iss.give(t, nodes[1], class, time.Now().Add(time.Hour))
	iss.give(t, nodes[2], class, time.Now().Add(-time.Minute))
	waitCatalogTicket(t, nodes, nodes[1], class)
	waitCatalogTicket(t, nodes, nodes[2], class)
	for _, n := range nodes[1:] {
		p, err := streams.NewProducer[int](n.Streams(), "ticketed")
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
	}
	c, err := streams.NewConsumer[int](nodes[0].Streams(), "ticketed", streams.WithTicketValidators(iss.validator(nodes[0], class)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	testutil.Eventually(t, 5*time.Second, func() bool { return connectedProducers(c)[nodes[1].ID()] }, "not subscribed to the ticketed producer")
	holds(t, time.Second, func() bool { return len(c.Producers()) == 1 }, "subscribed to a producer without a valid ticket")
}

func TestTickets_ProducerAcceptsOnlyTicketedConsumer(t *testing.T) {
	nodes := ticketNodes(t, 3) // producer, ticketed consumer, unticketed consumer
	iss := newIssuer(t)
	class := catalog.IDFromString("test.consumer.ticket")
	iss.give(t, nodes[1], class, time.Now().Add(time.Hour))
	waitCatalogTicket(t, nodes, nodes[1], class)
	p, err := streams.NewProducer[int](nodes[0].Streams(), "gated", streams.WithTicketValidators(iss.validator(nodes[0], class)))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for _, n := range nodes[1:] {
		c, err := streams.NewConsumer[int](n.Streams(), "gated")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return connectedConsumers(p)[nodes[1].ID()] }, "ticketed consumer not accepted")
	holds(t, time.Second, func() bool { return !connectedConsumers(p)[nodes[2].ID()] }, "unticketed consumer accepted")
	if nodes[0].Streams().Stats().Rejected == 0 {
		t.Error("the rejection of the unticketed consumer was not counted")
	}
}

func TestTickets_TwoValidatorsNeedBothTickets(t *testing.T) {
	nodes := ticketNodes(t, 4) // consumer; producers with both, only A, only B
	a, b := newIssuer(t), newIssuer(t)
	ca, cb := catalog.IDFromString("class.a"), catalog.IDFromString("class.b")
	exp := time.Now().Add(time.Hour)
	a.give(t, nodes[1], ca, exp)
	b.give(t, nodes[1], cb, exp)
	a.give(t, nodes[2], ca, exp)
	b.give(t, nodes[3], cb, exp)
	waitCatalogTicket(t, nodes, nodes[1], cb)
	waitCatalogTicket(t, nodes, nodes[2], ca)
	waitCatalogTicket(t, nodes, nodes[3], cb)
	for _, n := range nodes[1:] {
		p, err := streams.NewProducer[int](n.Streams(), "two")
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
	}
	c, err := streams.NewConsumer[int](nodes[0].Streams(), "two",
		streams.WithTicketValidators(a.validator(nodes[0], ca), b.validator(nodes[0], cb)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	testutil.Eventually(t, 5*time.Second, func() bool { return connectedProducers(c)[nodes[1].ID()] }, "not subscribed to the producer with both tickets")
	holds(t, time.Second, func() bool { return len(c.Producers()) == 1 }, "subscribed to a producer with one ticket only")

	// And on the producer side.
	p, err := streams.NewProducer[int](nodes[0].Streams(), "two-back",
		streams.WithTicketValidators(a.validator(nodes[0], ca), b.validator(nodes[0], cb)))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for _, n := range nodes[1:] {
		c, err := streams.NewConsumer[int](n.Streams(), "two-back")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return connectedConsumers(p)[nodes[1].ID()] }, "consumer with both tickets not accepted")
	holds(t, time.Second, func() bool { return len(connectedConsumers(p)) == 1 }, "consumer with one ticket accepted")
}

// A ticket that expires during a subscription cuts it within 100 ms of the
// expiry, at the producer (which holds the consumer's ticket) and at the
// consumer (which holds the producer's).
func TestTickets_ExpiryCutsSubscription(t *testing.T) {
	for _, side := range []string{"producer", "consumer"} {
		t.Run(side, func(t *testing.T) {
			nodes := ticketNodes(t, 2) // producer, consumer
			iss := newIssuer(t)
			class := catalog.IDFromString("expiring")
			holder := nodes[1]
			if side == "consumer" {
				holder = nodes[0]
			}
			exp := time.Now().Add(testutil.Scale(2 * time.Second)).Truncate(time.Millisecond)
			iss.give(t, holder, class, exp)
			waitCatalogTicket(t, nodes, holder, class)
			var (
				popts []streams.ProducerOption
				copts []streams.ConsumerOption
			)
			v := streams.WithTicketValidators(iss.validator(nodes[0], class))
			if side == "producer" {
				popts = append(popts, v)
			} else {
				copts = append(copts, v)
			}
			p, err := streams.NewProducer[int](nodes[0].Streams(), "expiring", popts...)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			c, err := streams.NewConsumer[int](nodes[1].Streams(), "expiring", copts...)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			testutil.Eventually(t, 2*time.Second, func() bool { return len(connectedConsumers(p)) == 1 }, "not subscribed before expiry")
			if time.Now().After(exp) {
				t.Fatal("a subscription formed although the ticket had expired")
			}
			cut := func() bool {
				if side == "producer" {
					return len(connectedConsumers(p)) == 0
				}
				return len(connectedProducers(c)) == 0
			}
			testutil.Eventually(t, 5*time.Second, cut, "subscription not cut at expiry")
			if late := time.Since(exp); late > testutil.Scale(100*time.Millisecond)+50*time.Millisecond {
				t.Errorf("cut %v after the expiry, want within 100 ms", late)
			}
		})
	}
}

// A ticket renewed before it expires keeps the subscription: no cut, no
// reconnect, no gap in sequence numbers.
func TestTickets_RenewalKeepsSubscription(t *testing.T) {
	nodes := ticketNodes(t, 2) // producer, consumer
	iss := newIssuer(t)
	class := catalog.IDFromString("renewed")
	exp := time.Now().Add(testutil.Scale(2 * time.Second))
	iss.give(t, nodes[1], class, exp)
	waitCatalogTicket(t, nodes, nodes[1], class)
	p, err := streams.NewProducer[int](nodes[0].Streams(), "renewed", streams.WithTicketValidators(iss.validator(nodes[0], class)))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := streams.NewConsumer[int](nodes[1].Streams(), "renewed")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Scale(20*time.Second))
	defer cancel()
	if err := p.WaitOnline(ctx); err != nil {
		t.Fatal(err)
	}
	// Renew well before the expiry; the producer must see the new entry.
	iss.give(t, nodes[1], class, exp.Add(time.Hour))
	testutil.Eventually(t, time.Second, func() bool {
		e, ok := nodes[0].Catalog().Get(nodes[1].ID())
		if !ok {
			return false
		}
		got, err := policy.ValidateTickets(&e.Entry, []policy.TicketValidator{iss.validator(nodes[0], class)}, time.Now())
		return err == nil && got.After(exp)
	}, "renewed ticket not seen by the producer")
	// Send across the old expiry and well past it.
	sent := 0
	for time.Now().Before(exp.Add(testutil.Scale(500 * time.Millisecond))) {
		if err := p.Send(ctx, sent); err != nil {
			t.Fatalf("Send %d: %v", sent, err)
		}
		sent++
		time.Sleep(5 * time.Millisecond) // pace the stream across the expiry
	}
	for i := range sent {
		v, err := c.Recv(ctx)
		if err != nil {
			t.Fatalf("Recv %d: %v", i, err)
		}
		if v != i {
			t.Fatalf("got %d, want %d", v, i)
		}
	}
	prods := c.Producers()
	if len(prods) != 1 || prods[0].Stats.Gaps != 0 || prods[0].Stats.Reconnects != 0 {
		t.Fatalf("subscription broke across the renewal: %+v", prods)
	}
	if cons := p.Consumers(); len(cons) != 1 || cons[0].State != streams.Connected {
		t.Fatalf("producer lost the consumer: %+v", cons)
	}
}
