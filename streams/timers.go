package streams

import (
	"sync"
	"time"
)

// timerGroup owns the time.AfterFunc callbacks of a handle, so that none
// runs after the handle's Close returns: stop makes later firings no-ops
// and waits for the callbacks already running. The zero value is ready.
type timerGroup struct {
	mu      sync.Mutex
	stopped bool
	running sync.WaitGroup
}

// afterFunc is time.AfterFunc with f owned by g. The timer may be stopped
// or reset as usual.
func (g *timerGroup) afterFunc(d time.Duration, f func()) *time.Timer {
	return time.AfterFunc(d, func() {
		g.mu.Lock()
		if g.stopped {
			g.mu.Unlock()
			return
		}
		g.running.Add(1)
		g.mu.Unlock()
		defer g.running.Done()
		f()
	})
}

// stop waits for running callbacks and disarms the rest. It must not be
// called from a callback, nor with a lock that a callback takes.
func (g *timerGroup) stop() {
	g.mu.Lock()
	g.stopped = true
	g.mu.Unlock()
	g.running.Wait()
}
