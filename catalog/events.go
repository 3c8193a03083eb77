package catalog

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik"
)

// EventKind says what happened to a peer.
type EventKind int

const (
	// PeerDiscovered: a peer entered the catalog.
	PeerDiscovered EventKind = iota + 1
	// PeerUpdated: a known peer's entry changed (including heartbeats).
	PeerUpdated
	// PeerDeparted: a peer left, by departure notice or by purge.
	PeerDeparted
)

func (k EventKind) String() string {
	switch k {
	case PeerDiscovered:
		return "PeerDiscovered"
	case PeerUpdated:
		return "PeerUpdated"
	case PeerDeparted:
		return "PeerDeparted"
	}
	return fmt.Sprintf("EventKind(%d)", int(k))
}

// Event is a change to a remote peer's entry. Changes of the local entry are
// not events.
type Event struct {
	Kind EventKind
	Peer peer.ID
	// Entry is the new entry, or for PeerDeparted the last one known.
	Entry *SignedEntry
	// Old is the entry this change replaced (PeerUpdated) or removed
	// (PeerDeparted, where it equals Entry); nil for PeerDiscovered.
	// Consumers compare Old and Entry to react only to what changed.
	Old *SignedEntry
	// Purged is set on PeerDeparted when the peer went silent and was
	// purged, rather than announcing its departure.
	Purged bool
	// Evicted is set on PeerDeparted when the catalog was full and the
	// peer made room for a new one (see [Keeper]).
	Evicted bool
}

// ErrClosed is returned by a closed subscription or store.
var ErrClosed = fmt.Errorf("catalog: %w", mosaik.ErrClosed)

// ErrLagged is matched (errors.Is) by a [*LagError].
var ErrLagged = errors.New("catalog: subscriber lagged")

// LagError reports that a subscriber fell behind and Missed events were
// dropped (the oldest ones). The subscription stays usable.
type LagError struct{ Missed uint64 }

func (e *LagError) Error() string {
	return fmt.Sprintf("catalog: subscriber lagged, %d events dropped", e.Missed)
}
func (e *LagError) Is(target error) bool { return target == ErrLagged }

// Subscription delivers catalog events in order. Its buffer is bounded:
// when full, the oldest event is dropped and the next call to Next reports
// the loss as a [*LagError] before continuing. It is safe for concurrent
// use; Close may be called any number of times.
type Subscription struct {
	store  *Store
	mu     sync.Mutex
	buf    []Event
	head   int
	n      int
	missed uint64
	closed bool
	notify chan struct{} // one pending wake-up for waiters in Next
	done   chan struct{} // closed by Close: wakes every waiter
}

func newSubscription(s *Store, size int) *Subscription {
	return &Subscription{store: s, buf: make([]Event, size), notify: make(chan struct{}, 1), done: make(chan struct{})}
}

// push never blocks; it is called with the store lock held.
func (s *Subscription) push(ev Event) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	if s.n == len(s.buf) {
		s.buf[s.head] = Event{}
		s.head = (s.head + 1) % len(s.buf)
		s.n--
		s.missed++
	}
	s.buf[(s.head+s.n)%len(s.buf)] = ev
	s.n++
	s.mu.Unlock()
	s.wake()
}

// Next blocks until an event is available, ctx ends or the subscription is
// closed. After a loss it first returns a [*LagError]; buffered events are
// still delivered after Close, then [ErrClosed].
func (s *Subscription) Next(ctx context.Context) (Event, error) {
	for {
		s.mu.Lock()
		if s.missed > 0 {
			m := s.missed
			s.missed = 0
			s.mu.Unlock()
			return Event{}, &LagError{Missed: m}
		}
		if s.n > 0 {
			ev := s.buf[s.head]
			s.buf[s.head] = Event{}
			s.head = (s.head + 1) % len(s.buf)
			s.n--
			more := s.n > 0
			s.mu.Unlock()
			if more { // pass the wake-up on to another waiter
				s.wake()
			}
			return ev, nil
		}
		closed := s.closed
		s.mu.Unlock()
		if closed {
			return Event{}, ErrClosed
		}
		select {
		case <-s.notify:
		case <-s.done:
		case <-ctx.Done():
			return Event{}, ctx.Err()
		}
	}
}

func (s *Subscription) wake() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// markClosed closes the subscription; it reports whether it was open.
func (s *Subscription) markClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.closed = true
	close(s.done)
	return true
}

// Close ends the subscription and releases it from the store. It is
// idempotent and always returns nil; the error is there so that a
// Subscription is an io.Closer like every other owner in mosaik.
func (s *Subscription) Close() error {
	if s.markClosed() {
		s.store.unsubscribe(s)
	}
	return nil
}
