package streams

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/mosaik-go/mosaik/internal/testutil"
)

// stop waits for a callback that is running, and a timer that fires after
// stop runs nothing.
func TestTimerGroup_StopOwnsCallbacks(t *testing.T) {
	var g timerGroup
	started, release := make(chan struct{}), make(chan struct{})
	var finished atomic.Bool
	g.afterFunc(0, func() {
		close(started)
		<-release
		finished.Store(true)
	})
	<-started
	stopped := make(chan struct{})
	go func() { g.stop(); close(stopped) }()
	select {
	case <-stopped:
		t.Fatal("stop returned while a callback was running")
	case <-time.After(testutil.Scale(50 * time.Millisecond)): // a sleep: proving that stop keeps waiting
	}
	close(release)
	<-stopped
	if !finished.Load() {
		t.Fatal("stop returned before the callback finished")
	}
	var late atomic.Bool
	g.afterFunc(time.Millisecond, func() { late.Store(true) })
	testutil.Never(t, 100*time.Millisecond, 5*time.Millisecond, func() string {
		if late.Load() {
			return "a callback ran after stop"
		}
		return ""
	})
}
