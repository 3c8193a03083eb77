package streams

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/catalog"
)

// State is the state of one subscription, seen from either end.
type State int

const (
	// Connecting: the consumer is (re)connecting or waiting out a backoff.
	Connecting State = iota + 1
	// Connected: the handshake succeeded and data flows.
	Connected
	// Terminated: the subscription ended for good.
	Terminated
)

func (s State) String() string {
	switch s {
	case Connecting:
		return "Connecting"
	case Connected:
		return "Connected"
	case Terminated:
		return "Terminated"
	}
	return "State(?)"
}

// Stats counts one subscription's traffic, or a handle's aggregate. It
// is a snapshot: plain numbers, copied out of the live counters.
type Stats struct {
	Datums      uint64    // datums sent (producer) or received (consumer)
	Bytes       uint64    // payload bytes of those datums
	Dropped     uint64    // datums dropped for this consumer (producer side, drop mode)
	Gaps        uint64    // datums the consumer saw skipped in the sequence numbers
	Reconnects  uint64    // reconnections after the first connect (consumer side)
	ConnectedAt time.Time // when the current connection was established; zero if none
}

// Uptime is the time since ConnectedAt, or 0 when not connected.
func (s Stats) Uptime() time.Duration {
	if s.ConnectedAt.IsZero() {
		return 0
	}
	return time.Since(s.ConnectedAt)
}

// SubscriptionInfo is a snapshot of one subscription: at a producer, one
// consumer of its stream; at a consumer, its link to one producer.
type SubscriptionInfo struct {
	Stream StreamID
	Peer   peer.ID              // the remote end
	Entry  *catalog.SignedEntry // the remote's catalog entry when the subscription was (re)evaluated
	State  State
	Stats  Stats
	// Err is why the subscription last failed or ended (nil while healthy).
	Err error
}

// StreamID is a catalog stream ID.
type StreamID = catalog.StreamID

// subscription is the live state behind a SubscriptionInfo, shared by the
// goroutines that run it and the snapshots that read it.
type subscription struct {
	stream StreamID
	peer   peer.ID
	mu     sync.Mutex
	entry  *catalog.SignedEntry
	state  State
	err    error
	since  time.Time

	datums, bytes, dropped, gaps, reconnects atomic.Uint64

	protected, gone bool // under mu: see subscriptionSet.protect

	// pos is where the application stands in this producer's datums
	// (consumer side; shared by the producer's successive receivers).
	pos *posCell
}

func (c *subscription) info() SubscriptionInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	return SubscriptionInfo{Stream: c.stream, Peer: c.peer, Entry: c.entry, State: c.state, Err: c.err, Stats: Stats{
		Datums: c.datums.Load(), Bytes: c.bytes.Load(), Dropped: c.dropped.Load(), Gaps: c.gaps.Load(),
		Reconnects: c.reconnects.Load(), ConnectedAt: c.since,
	}}
}
