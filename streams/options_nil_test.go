package streams_test

import (
	"errors"
	"testing"
	"time"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/policy"
	"github.com/mosaik-go/mosaik/streams"
)

// A nil ticket check or validator is refused when the handle is made. It
// was accepted, and the first peer to connect panicked the process in the
// goroutine that admits it (found by the policy review).
func TestOptions_NilTicketsRefused(t *testing.T) {
	n := startNode(t)
	for name, opt := range map[string]streams.HandleOption{
		"WithTickets(nil)":          streams.WithTickets(nil),
		"WithTicketValidators(nil)": streams.WithTicketValidators(nil),
		"WithTickets(Require(nil))": streams.WithTickets(policy.Require(nil)),
	} {
		t.Run(name, func(t *testing.T) {
			if p, err := streams.NewProducer[int](n.Streams(), "nil-tickets", opt); err == nil {
				_ = p.Close()
				t.Fatal("NewProducer accepted a nil ticket check")
			}
			if c, err := streams.NewConsumer[int](n.Streams(), "nil-tickets", opt); err == nil {
				_ = c.Close()
				t.Fatal("NewConsumer accepted a nil ticket check")
			}
		})
	}
	// policy.Require(nil) used elsewhere refuses; it does not panic.
	var e catalog.Entry
	if _, err := policy.Require(nil).Check(&e, time.Now()); !errors.Is(err, policy.ErrNoValidTicket) {
		t.Errorf("Require(nil).Check = %v, want ErrNoValidTicket", err)
	}
}
