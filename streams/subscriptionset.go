package streams

import (
	"context"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// subscriptionSet is the versioned set of a handle's subscriptions. Every
// change goes through update, which wakes waiters and re-evaluates the
// online condition and every condition that someone waits on, so waiters
// never poll and never miss an edge.
type subscriptionSet struct {
	mu      sync.Mutex
	version uint64
	subs    map[*subscription]struct{}
	changed chan struct{} // closed and replaced by every update
	closed  bool
	online  *Condition          // the handle's online condition
	watched map[*edges]struct{} // conditions that Wait was called on
	isOn    atomic.Bool
	prot    ConnProtector // nil: none
}

func newSubscriptionSet(prot ConnProtector) *subscriptionSet {
	return &subscriptionSet{subs: map[*subscription]struct{}{}, changed: make(chan struct{}), watched: map[*edges]struct{}{}, prot: prot}
}

// update runs f under the lock and publishes a new version.
func (s *subscriptionSet) update(f func()) {
	s.mu.Lock()
	f()
	s.version++
	close(s.changed)
	s.changed = make(chan struct{})
	if s.online != nil {
		s.isOn.Store(s.online.spec.evalLocked(s))
	}
	for e := range s.watched {
		e.observeLocked(s)
	}
	s.mu.Unlock()
}

func (s *subscriptionSet) add(sub *subscription) { s.update(func() { s.subs[sub] = struct{}{} }) }

func (s *subscriptionSet) remove(sub *subscription) {
	s.update(func() { delete(s.subs, sub) })
	s.protect(sub, true)
}

// setState changes a subscription's state (and its connection time) and
// publishes the change.
func (s *subscriptionSet) setState(sub *subscription, st State, err error) {
	s.update(func() {
		sub.mu.Lock()
		sub.state, sub.err = st, err
		if st == Connected {
			sub.since = time.Now()
		} else {
			sub.since = time.Time{}
		}
		sub.mu.Unlock()
	})
	s.protect(sub, false)
}

func (s *subscriptionSet) close() {
	s.update(func() { s.closed = true })
}

// unwatch forgets a condition's edge tracker; it runs once the Condition
// that owned it was garbage collected.
func (s *subscriptionSet) unwatch(e *edges) {
	s.mu.Lock()
	delete(s.watched, e)
	s.mu.Unlock()
}

func (s *subscriptionSet) infos() []SubscriptionInfo {
	s.mu.Lock()
	subs := slices.Collect(maps.Keys(s.subs))
	s.mu.Unlock()
	out := make([]SubscriptionInfo, 0, len(subs))
	for _, sub := range subs {
		out = append(out, sub.info())
	}
	slices.SortFunc(out, func(a, b SubscriptionInfo) int {
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

// waitOnline blocks until the online state is want (level-triggered: at
// once if it already is).
func (s *subscriptionSet) waitOnline(ctx context.Context, want bool) error {
	for {
		s.mu.Lock()
		changed, closed := s.changed, s.closed
		s.mu.Unlock()
		if s.isOn.Load() == want {
			return nil
		}
		if closed {
			return ErrClosed
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
