package policy

import (
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/catalog"
)

// TicketValidator checks tickets of one class. Implementations must be
// pure and safe for concurrent use: they are called on the accept path and
// on every catalog change, with the time passed in.
type TicketValidator interface {
	// Class is the ticket class this validator understands; it is offered
	// only the peer's tickets of this class.
	Class() catalog.TicketClass
	// Validate checks one ticket held by peer at now. It returns when the
	// ticket expires, or the zero time for a ticket that never expires.
	Validate(ticket []byte, holder peer.ID, now time.Time) (expires time.Time, err error)
}

// ErrNoValidTicket is returned when a peer holds no valid ticket of a
// required class.
var ErrNoValidTicket = errors.New("policy: no valid ticket")

// Never is the expiry of a ticket that does not expire (the zero time).
var Never time.Time

// ValidateTicket returns the expiry of the best ticket of v's class that
// e holds: among valid tickets, the one expiring latest (never beats any
// time). It fails with ErrNoValidTicket, wrapping the last ticket's error.
func ValidateTicket(e *catalog.Entry, v TicketValidator, now time.Time) (time.Time, error) {
	if v == nil {
		// Refused, not a panic: Require(nil) reaches here from the
		// goroutines that admit peers.
		return time.Time{}, fmt.Errorf("%w: nil ticket validator", ErrNoValidTicket)
	}
	var (
		best    time.Time
		found   bool
		lastErr error
	)
	for _, t := range e.TicketsOf(v.Class()) {
		exp, err := v.Validate(t, e.PeerID, now)
		if err != nil {
			lastErr = err
			continue
		}
		if !found || later(exp, best) {
			best, found = exp, true
		}
	}
	if !found {
		if lastErr == nil {
			return time.Time{}, fmt.Errorf("%w of class %s", ErrNoValidTicket, v.Class().Short())
		}
		return time.Time{}, fmt.Errorf("%w of class %s: %w", ErrNoValidTicket, v.Class().Short(), lastErr)
	}
	return best, nil
}

// ValidateTickets checks e against every validator: all must pass, and the
// effective expiry is the earliest of theirs (zero: never). No validators
// means no requirement.
func ValidateTickets(e *catalog.Entry, vs []TicketValidator, now time.Time) (time.Time, error) {
	var earliest time.Time
	for _, v := range vs {
		exp, err := ValidateTicket(e, v, now)
		if err != nil {
			return time.Time{}, err
		}
		if !exp.IsZero() && (earliest.IsZero() || exp.Before(earliest)) {
			earliest = exp
		}
	}
	return earliest, nil
}

// later reports whether a expires after b, where the zero time is never.
func later(a, b time.Time) bool {
	switch {
	case a.IsZero():
		return !b.IsZero()
	case b.IsZero():
		return false
	}
	return a.After(b)
}

// Requirement bundles ticket validators for streams: a peer must hold a
// valid ticket for each. It implements streams' TicketCheck.
type Requirement []TicketValidator

// Require returns the requirement that a peer holds a valid ticket for
// every validator.
func Require(vs ...TicketValidator) Requirement { return Requirement(vs) }

// Check implements streams.TicketCheck.
func (r Requirement) Check(e *catalog.Entry, now time.Time) (time.Time, error) {
	return ValidateTickets(e, r, now)
}
