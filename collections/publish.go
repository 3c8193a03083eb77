package collections

import "sync"

// load returns the latest applied state, publishing it first when it
// changed since the last publication.
func (m *machine[S]) load() *published[S] {
	if !m.stale.Load() {
		return m.cur.Load()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.publishWorkLocked()
}

// publishWorkLocked publishes the working state when it is ahead of the
// published one: readers get it as it is, and work goes on with a clone
// of it. m.mu is held.
func (m *machine[S]) publishWorkLocked() *published[S] {
	if !m.stale.Load() {
		return m.cur.Load()
	}
	p := &published[S]{state: m.work, version: Version(m.version.Load()), size: int(m.size.Load())}
	m.work = m.k.clone(m.work)
	m.cur.Store(p)
	m.stale.Store(false)
	return p
}

// watch returns the current state and a channel closed at the next change.
func (m *machine[S]) watch() (*published[S], <-chan struct{}) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.watched = true
	return m.publishWorkLocked(), m.changed
}

// watchVersion is watch for the version alone, which needs no
// publication.
func (m *machine[S]) watchVersion() (Version, <-chan struct{}) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.watched = true
	return Version(m.version.Load()), m.changed
}

// notifyLocked wakes the watchers of the last change. A channel nobody
// took is kept, so that a change nobody waits for allocates nothing.
// m.mu is held.
func (m *machine[S]) notifyLocked() {
	if m.watched {
		close(m.changed)
		m.changed = make(chan struct{})
		m.watched = false
	}
}

// publish replaces the state with p (a restored snapshot, or the empty
// state) and publishes it at once; work goes on with a clone of it.
func (m *machine[S]) publish(p *published[S]) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.outcomes.clear()
	m.work = m.k.clone(p.state)
	// The state before its version: a reader that sees the new Version()
	// (or Len()) and then reads without the lock (not stale) must find
	// the new state, never the one before it.
	m.cur.Store(p)
	m.stale.Store(false)
	m.version.Store(uint64(p.version))
	m.size.Store(int64(p.size))
	m.notifyLocked()
}

// outcomeRing keeps the outcomes of the last commands whose kind reports
// them, by log index, for the callers waiting on them.
type outcomeRing struct {
	mu   sync.Mutex
	ring []outcomeAt // allocated on first use
}

type outcomeAt struct {
	index uint64
	out   outcome
}

const outcomeRingSize = 1024

func (r *outcomeRing) put(index uint64, o outcome) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ring == nil {
		r.ring = make([]outcomeAt, outcomeRingSize)
	}
	r.ring[index%outcomeRingSize] = outcomeAt{index, o}
}

// clear forgets every outcome: after a restore or a reset, the indexes
// they were kept for may hold other commands (a discarded log's indexes
// are reused by the cluster that won).
func (r *outcomeRing) clear() {
	r.mu.Lock()
	defer r.mu.Unlock()
	clear(r.ring)
}

// get returns the outcome at index, or 0 when it is no longer kept.
func (r *outcomeRing) get(index uint64) outcome {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ring == nil {
		return 0
	}
	if a := r.ring[index%outcomeRingSize]; a.index == index {
		return a.out
	}
	return 0
}
