package streams

import (
	"context"
	"runtime"
	"slices"

	"github.com/mosaik-go/mosaik/catalog"
)

// Condition is a predicate over a handle's connected subscriptions: at
// least MinimumOf of them whose remote entries satisfy every predicate (or,
// after Unmet, the opposite). Get one from Producer.Subscribed or
// Consumer.Subscribed. Builder methods return a new Condition and leave the
// receiver unchanged.
//
// Safe for concurrent use. Wait is edge-triggered and counts every rise
// (not met, then met) from its first call on, including rises that happen
// while no Wait is running. Do not copy a Condition value; share the
// pointer.
type Condition struct {
	set  *subscriptionSet
	spec condSpec
	// edges counts the condition's rises from the first Wait on; nil
	// before. Guarded by set.mu.
	edges *edges
}

// condSpec is what a Condition evaluates. It is immutable once built.
type condSpec struct {
	min    int
	preds  []func(*catalog.Entry) bool
	invert bool
}

// edges tracks the rises of one Condition. The subscription set evaluates
// it on every update (under its lock), so a rise is counted even when it
// is undone before the next Wait looks.
type edges struct {
	spec    condSpec
	met     bool   // the value at the last update
	rises   uint64 // generation: rises seen so far
	taken   uint64 // the generation the last returning Wait consumed
	waiting int    // Waits blocked now (tests wait on it)
}

func (e *edges) observeLocked(s *subscriptionSet) {
	met := e.spec.evalLocked(s)
	if met && !e.met {
		e.rises++
	}
	e.met = met
}

func newCondition(s *subscriptionSet, min int) *Condition {
	return &Condition{set: s, spec: condSpec{min: min}}
}

func (c *Condition) with(f func(*condSpec)) *Condition {
	n := &Condition{set: c.set, spec: c.spec}
	n.spec.preds = slices.Clone(c.spec.preds)
	f(&n.spec)
	return n
}

// MinimumOf sets how many matching connected subscriptions are needed.
func (c *Condition) MinimumOf(n int) *Condition {
	return c.with(func(s *condSpec) { s.min = n })
}

// WithTags requires the remote peer to carry every one of tags.
func (c *Condition) WithTags(tags ...catalog.Tag) *Condition {
	ts := slices.Clone(tags)
	return c.with(func(s *condSpec) {
		s.preds = append(s.preds, func(e *catalog.Entry) bool { return e.HasTags(ts...) })
	})
}

// WithPredicate adds a predicate over the remote peer's entry. It must be
// fast and must not block; it is called with internal locks held.
func (c *Condition) WithPredicate(f func(*catalog.Entry) bool) *Condition {
	return c.with(func(s *condSpec) { s.preds = append(s.preds, f) })
}

// Unmet inverts the condition (idempotent: Unmet().Unmet() is Unmet()).
func (c *Condition) Unmet() *Condition {
	return c.with(func(s *condSpec) { s.invert = true })
}

// IsMet evaluates the condition now.
func (c *Condition) IsMet() bool {
	c.set.mu.Lock()
	defer c.set.mu.Unlock()
	return c.spec.evalLocked(c.set)
}

func (s *condSpec) evalLocked(set *subscriptionSet) bool {
	n := 0
	for sub := range set.subs {
		sub.mu.Lock()
		ok := sub.state == Connected
		e := sub.entry
		sub.mu.Unlock()
		if !ok {
			continue
		}
		for _, p := range s.preds {
			if e == nil || !p(&e.Entry) {
				ok = false
				break
			}
		}
		if ok {
			n++
		}
	}
	return (n >= s.min) != s.invert
}

// Wait blocks until the condition rises: goes from not met to met. The
// first Wait on a Condition returns at once if it is met. After that, each
// rise releases the Waits running when it happens; a rise that happened
// since the last Wait returned (even if the condition fell again since)
// makes the next Wait return at once. Several rises between two Waits
// release one Wait. It returns ErrClosed when the handle closes and no rise
// is pending.
func (c *Condition) Wait(ctx context.Context) error {
	// The set forgets the edge tracker once c is collected (see below).
	// Nothing below refers to c, so without this a Condition that only
	// this call holds, as in p.Subscribed().MinimumOf(2).Wait(ctx), could
	// be collected mid-Wait and the Wait would miss the rise.
	defer runtime.KeepAlive(c)
	s := c.set
	s.mu.Lock()
	if c.edges == nil {
		c.edges = &edges{spec: c.spec}
		if c.edges.met = c.spec.evalLocked(s); c.edges.met {
			c.edges.rises = 1
		}
		s.watched[c.edges] = struct{}{}
		// The set holds the tracker, not the Condition, so a Condition
		// dropped by its user is collected and its tracker forgotten.
		runtime.AddCleanup(c, s.unwatch, c.edges)
	}
	e := c.edges
	target := e.taken + 1
	for {
		if e.rises >= target {
			e.taken = e.rises
			s.mu.Unlock()
			return nil
		}
		if s.closed {
			s.mu.Unlock()
			return ErrClosed
		}
		changed := s.changed
		e.waiting++
		s.mu.Unlock()
		var err error
		select {
		case <-changed:
		case <-ctx.Done():
			err = ctx.Err()
		}
		s.mu.Lock()
		e.waiting--
		if err != nil {
			s.mu.Unlock()
			return err
		}
	}
}
