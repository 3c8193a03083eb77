package streams

import (
	"context"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/catalog"
)

// State is the state of one channel (a subscription, seen from either end).
type State int

const (
	// Connecting: the consumer is (re)connecting or waiting out a backoff.
	Connecting State = iota + 1
	// Connected: the handshake succeeded and data flows.
	Connected
	// Terminated: the channel ended for good.
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

// Stats counts one channel's traffic, or a handle's aggregate.
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

// ChannelInfo is a snapshot of one channel.
type ChannelInfo struct {
	Stream StreamID
	Peer   peer.ID              // the remote end
	Entry  *catalog.SignedEntry // the remote's catalog entry when the channel was (re)evaluated
	State  State
	Stats  Stats
	// Err is why the channel last failed or ended (nil while healthy).
	Err error
}

// StreamID is a catalog stream ID.
type StreamID = catalog.StreamID

// channel is the live, shared state behind a ChannelInfo.
type channel struct {
	stream StreamID
	peer   peer.ID
	mu     sync.Mutex
	entry  *catalog.SignedEntry
	state  State
	err    error
	since  time.Time

	datums, bytes, dropped, gaps, reconnects atomic.Uint64

	protected, gone bool // under mu: see hub.protect
}

func (c *channel) info() ChannelInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	return ChannelInfo{Stream: c.stream, Peer: c.peer, Entry: c.entry, State: c.state, Err: c.err, Stats: Stats{
		Datums: c.datums.Load(), Bytes: c.bytes.Load(), Dropped: c.dropped.Load(), Gaps: c.gaps.Load(),
		Reconnects: c.reconnects.Load(), ConnectedAt: c.since,
	}}
}

// hub is the versioned set of a handle's channels: conditions wait on it
// without polling.
type hub struct {
	mu      sync.Mutex
	version uint64
	chans   map[*channel]struct{}
	changed chan struct{}
	closed  bool
	online  *Condition // evaluates the online condition
	isOn    atomic.Bool
	prot    ConnProtector // nil: none
}

func newHub(prot ConnProtector) *hub {
	return &hub{chans: map[*channel]struct{}{}, changed: make(chan struct{}), prot: prot}
}

// update runs f under the lock and publishes a new version.
func (h *hub) update(f func()) {
	h.mu.Lock()
	f()
	h.version++
	close(h.changed)
	h.changed = make(chan struct{})
	if h.online != nil {
		h.isOn.Store(h.online.evalLocked(h))
	}
	h.mu.Unlock()
}

func (h *hub) add(c *channel) { h.update(func() { h.chans[c] = struct{}{} }) }
func (h *hub) remove(c *channel) {
	h.update(func() { delete(h.chans, c) })
	h.protect(c, true)
}

// setState changes a channel's state (and its connection time) and
// publishes the change.
func (h *hub) setState(c *channel, s State, err error) {
	h.update(func() {
		c.mu.Lock()
		c.state, c.err = s, err
		if s == Connected {
			c.since = time.Now()
		} else {
			c.since = time.Time{}
		}
		c.mu.Unlock()
	})
	h.protect(c, false)
}

func (h *hub) close() {
	h.update(func() { h.closed = true })
}

func (h *hub) infos() []ChannelInfo {
	h.mu.Lock()
	chans := slices.Collect(maps.Keys(h.chans))
	h.mu.Unlock()
	out := make([]ChannelInfo, 0, len(chans))
	for _, c := range chans {
		out = append(out, c.info())
	}
	slices.SortFunc(out, func(a, b ChannelInfo) int {
		switch {
		case a.Peer < b.Peer:
			return -1
		case a.Peer > b.Peer:
			return 1
		}
		return 0
	})
	return out
}

// When observes a producer's or consumer's channels and online state.
type When struct{ h *hub }

// IsOnline reports whether the handle is online now.
func (w When) IsOnline() bool { return w.h.isOn.Load() }

// Online blocks until the handle is online (at once if it is).
func (w When) Online(ctx context.Context) error { return w.waitOnline(ctx, true) }

// Offline blocks until the handle is offline (at once if it is).
func (w When) Offline(ctx context.Context) error { return w.waitOnline(ctx, false) }

func (w When) waitOnline(ctx context.Context, want bool) error {
	for {
		w.h.mu.Lock()
		ch, closed := w.h.changed, w.h.closed
		w.h.mu.Unlock()
		if w.h.isOn.Load() == want {
			return nil
		}
		if closed {
			return ErrClosed
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Subscribed is the condition "at least one connected channel".
func (w When) Subscribed() *Condition { return &Condition{h: w.h, min: 1} }

// Unsubscribed is Subscribed().Unmet().
func (w When) Unsubscribed() *Condition { return w.Subscribed().Unmet() }

// Condition is a predicate over a handle's connected channels: at least
// MinimumOf of them whose remote entries satisfy every predicate (or, after
// Unmet, the opposite). Builder methods return a new Condition and leave the
// receiver unchanged. Wait tracks edges per Condition value: do not call
// Wait on one value from several goroutines at once.
type Condition struct {
	h       *hub
	min     int
	preds   []func(*catalog.Entry) bool
	invert  bool
	wasMet  bool
	started bool
}

func (c *Condition) clone() *Condition {
	n := *c
	n.preds = slices.Clone(c.preds)
	n.wasMet, n.started = false, false
	return &n
}

// MinimumOf sets how many matching connected channels are needed.
func (c *Condition) MinimumOf(n int) *Condition { n2 := c.clone(); n2.min = n; return n2 }

// WithTags requires the remote peer to carry every one of tags.
func (c *Condition) WithTags(tags ...catalog.Tag) *Condition {
	n := c.clone()
	ts := slices.Clone(tags)
	n.preds = append(n.preds, func(e *catalog.Entry) bool { return e.HasTags(ts...) })
	return n
}

// WithPredicate adds a predicate over the remote peer's entry. It must be
// fast and must not block; it is called with internal locks held.
func (c *Condition) WithPredicate(f func(*catalog.Entry) bool) *Condition {
	n := c.clone()
	n.preds = append(n.preds, f)
	return n
}

// Unmet inverts the condition (idempotent: Unmet().Unmet() is Unmet()).
func (c *Condition) Unmet() *Condition { n := c.clone(); n.invert = true; return n }

// IsMet evaluates the condition now.
func (c *Condition) IsMet() bool {
	c.h.mu.Lock()
	defer c.h.mu.Unlock()
	return c.evalLocked(c.h)
}

func (c *Condition) evalLocked(h *hub) bool {
	n := 0
	for ch := range h.chans {
		ch.mu.Lock()
		ok := ch.state == Connected
		e := ch.entry
		ch.mu.Unlock()
		if !ok {
			continue
		}
		for _, p := range c.preds {
			if e == nil || !p(&e.Entry) {
				ok = false
				break
			}
		}
		if ok {
			n++
		}
	}
	return (n >= c.min) != c.invert
}

// Wait blocks until the condition goes from not met to met. A new
// Condition that is already met returns at once; after returning, Wait
// re-arms and returns again only once the condition has been seen unmet
// and then met. It returns ErrClosed when the handle closes.
func (c *Condition) Wait(ctx context.Context) error {
	for {
		c.h.mu.Lock()
		met := c.evalLocked(c.h)
		ch, closed := c.h.changed, c.h.closed
		c.h.mu.Unlock()
		if met && !c.wasMet {
			c.wasMet = true
			return nil
		}
		if !met {
			c.wasMet = false
		}
		if closed {
			return ErrClosed
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
