package groups

import (
	"context"
	"testing"
	"time"
)

// panicCapCounter is capCounter whose Apply panics on -1.
type panicCapCounter struct{ capCounter }

func (p *panicCapCounter) Apply(actx ApplyContext, cmds []int64) {
	for _, v := range cmds {
		if v == -1 {
			panic("test: bad command")
		}
	}
	p.capCounter.Apply(actx, cmds)
}

// The group ends on its own (a state machine panic) while a captured
// snapshot is being written on another goroutine. run's deferred clean-up
// waits for that goroutine (snapWG), which hands its result back on
// c.calls, or gives up when the group ends. It gave up only on c.quit,
// which only stop() closes: with callers filling the calls queue
// meanwhile, it blocked for good, run never returned and c.done never
// closed, so callers waiting on done, the group's terminal state (view)
// and a new Join of the group (ended()) hung until someone called Close.
func TestCore_GroupEndsWhileSnapshotWrittenAndCallsFull(t *testing.T) {
	for _, fill := range []bool{false, true} {
		t.Run(map[bool]string{false: "control", true: "queueFull"}[fill], func(t *testing.T) { groupEndsWhileSnapshotWritten(t, fill) })
	}
}

func groupEndsWhileSnapshotWritten(t *testing.T, fill bool) {
	m := &panicCapCounter{capCounter{started: make(chan int64, 1), release: make(chan struct{})}}
	c := leadingSnapCore(t, m)
	for range 20 {
		if c.snapBuilding != 0 {
			break
		}
		c.execute([][]byte{{0x01}}, func(uint64) {}, func(error) {})
		c.step(t)
	}
	if c.snapBuilding == 0 {
		t.Fatal("no snapshot being written")
	}
	<-m.started // the writer runs, blocked on release
	c.start(nullTransport{})
	t.Cleanup(func() {
		select {
		case <-c.quit:
		default:
			close(c.quit)
		}
		<-c.done
	})
	// A command the state machine panics on ends the group on this node.
	if err := c.do(context.Background(), func() { c.execute([][]byte{{0x20}}, nil, func(error) {}) }); err != nil {
		t.Fatal(err)
	}
	// Callers keep coming (an Execute each): the loop is gone, the queue fills.
	deadline := time.Now().Add(5 * time.Second)
	for fill && len(c.calls) < cap(c.calls) && time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		_ = c.do(ctx, func() {})
		cancel()
	}
	t.Logf("calls queued: %d of %d", len(c.calls), cap(c.calls))
	close(m.release) // the snapshot is written
	select {
	case <-c.done:
	case <-time.After(3 * time.Second):
		t.Fatalf("the group ended (state machine panic) but done is not closed 3 s later: " +
			"run's clean-up waits (snapWG) for the snapshot writer, which blocks on the full calls queue")
	}
}
