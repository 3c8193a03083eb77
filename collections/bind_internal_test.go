package collections

import (
	"context"
	"errors"
	"testing"
	"time"
)

// bind's context ends with cause ErrTerminated when the handle closes
// (what execute and Sync report then), and stop ends it without.
func TestCore_BindEndsWithTheHandle(t *testing.T) {
	c := newTestCore()
	ctx, stop := c.bind(context.Background())
	defer stop()
	c.end(ErrTerminated) // what close does
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the bound context did not end when the handle closed")
	}
	if !errors.Is(closedErr(ctx), ErrTerminated) {
		t.Fatalf("cause %v, want ErrTerminated", context.Cause(ctx))
	}
	c2 := newTestCore()
	ctx2, stop2 := c2.bind(context.Background())
	stop2()
	if ctx2.Err() == nil || closedErr(ctx2) != nil {
		t.Fatalf("after stop: err %v, closed %v; want ended, not by a close", ctx2.Err(), closedErr(ctx2))
	}
}

func newTestCore() *core[int] {
	c := &core[int]{}
	c.life, c.end = context.WithCancelCause(context.Background())
	c.closed = c.life.Done()
	return c
}
