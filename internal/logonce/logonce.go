// Package logonce deduplicates log lines: a warning about a refusal or a
// misconfiguration is logged once per cause, not once per retry, while the
// memory it takes stays bounded whatever keys the network makes up.
package logonce

import (
	"sync"
	"time"
)

// Set remembers the keys logged within the last window, at most max of
// them. It is safe for concurrent use and never blocks.
type Set struct {
	window time.Duration
	max    int

	mu   sync.Mutex
	seen map[string]time.Time
}

// New returns a set that allows a key again window after it was last
// allowed, and holds at most max keys (max < 1 means 1024).
func New(window time.Duration, max int) *Set {
	if max < 1 {
		max = 1024
	}
	return &Set{window: window, max: max, seen: map[string]time.Time{}}
}

// Allow reports whether key was not allowed within the window before now,
// and if so records it. When the set is full, expired keys are dropped
// first, then arbitrary ones: a flood of new keys may then repeat a line,
// which is better than unbounded memory.
func (s *Set) Allow(key string, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if at, ok := s.seen[key]; ok && now.Sub(at) < s.window {
		return false
	}
	if len(s.seen) >= s.max {
		for k, at := range s.seen {
			if now.Sub(at) >= s.window {
				delete(s.seen, k)
			}
		}
		for k := range s.seen {
			if len(s.seen) < s.max {
				break
			}
			delete(s.seen, k)
		}
	}
	s.seen[key] = now
	return true
}

// Forget allows key again at once: the cause went away (a peer was
// reached), so a new occurrence is news.
func (s *Set) Forget(key string) {
	s.mu.Lock()
	delete(s.seen, key)
	s.mu.Unlock()
}
