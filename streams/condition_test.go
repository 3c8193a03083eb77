package streams

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/mosaik-go/mosaik/internal/testutil"
)

// condFixture is a subscription set with one subscription whose state the
// test flips, and the "at least one connected" condition over it.
type condFixture struct {
	set  *subscriptionSet
	sub  *subscription
	cond *Condition
}

func newCondFixture() *condFixture {
	f := &condFixture{set: newSubscriptionSet(nil), sub: &subscription{state: Connecting}}
	f.set.add(f.sub)
	f.cond = newCondition(f.set, 1)
	return f
}

func (f *condFixture) up()   { f.set.setState(f.sub, Connected, nil) }
func (f *condFixture) down() { f.set.setState(f.sub, Connecting, nil) }

func (f *condFixture) waiting() int {
	f.set.mu.Lock()
	defer f.set.mu.Unlock()
	if f.cond.edges == nil {
		return 0
	}
	return f.cond.edges.waiting
}

func shortCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Scale(d))
	t.Cleanup(cancel)
	return ctx
}

// A rise that is undone before the next Wait still releases that Wait: the
// edge is counted when it happens, not when Wait looks.
func TestCondition_Wait_SeesFlipBetweenCalls(t *testing.T) {
	f := newCondFixture()
	f.up()
	if err := f.cond.Wait(shortCtx(t, time.Second)); err != nil {
		t.Fatalf("first Wait on a met condition: %v", err)
	}
	f.down()
	f.up()
	f.down() // unmet again by the time Wait looks
	if err := f.cond.Wait(shortCtx(t, 5*time.Second)); err != nil {
		t.Fatalf("Wait after an unseen rise: %v", err)
	}
	// The rise was consumed: the next Wait blocks until a new one.
	if err := f.cond.Wait(shortCtx(t, 100*time.Millisecond)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait without a new rise: %v, want deadline exceeded", err)
	}
	f.up()
	if err := f.cond.Wait(shortCtx(t, 5*time.Second)); err != nil {
		t.Fatalf("Wait after a new rise: %v", err)
	}
}

// Waits on one Condition from many goroutines are safe (run with -race) and
// a rise releases every Wait that is blocked when it happens.
func TestCondition_Wait_Concurrent(t *testing.T) {
	f := newCondFixture()
	const n = 8
	for round := range 3 {
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for range n {
			wg.Go(func() { errs <- f.cond.Wait(shortCtx(t, 10*time.Second)) })
		}
		testutil.Eventually(t, 10*time.Second, func() bool { return f.waiting() == n },
			"round %d: %d of %d Waits blocked", round, testutil.Lazy(func() any { return f.waiting() }), n)
		f.up()
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("round %d: Wait: %v", round, err)
			}
		}
		f.down()
	}
}

// Close releases blocked Waits with ErrClosed; ctx ends them with its error.
func TestCondition_Wait_CloseAndCancel(t *testing.T) {
	f := newCondFixture()
	if err := f.cond.Wait(shortCtx(t, 50*time.Millisecond)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait on an unmet condition: %v, want deadline exceeded", err)
	}
	done := make(chan error, 1)
	go func() { done <- f.cond.Wait(context.Background()) }()
	testutil.Eventually(t, 10*time.Second, func() bool { return f.waiting() == 1 }, "Wait not blocked")
	f.set.close()
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("Wait across close: %v, want ErrClosed", err)
	}
}

// A Condition that nothing but its own running Wait refers to, as in
// p.Subscribed().MinimumOf(2).Wait(ctx), is not collected while Wait blocks:
// its edge tracker stays registered, so the rise releases the Wait. (The
// tracker used to be dropped by the collector mid-Wait, and the Wait then
// missed the rise for good.)
func TestCondition_Wait_TemporaryConditionSurvivesGC(t *testing.T) {
	set := newSubscriptionSet(nil)
	sub := &subscription{state: Connecting}
	set.add(sub)
	done := make(chan error, 1)
	go func() { done <- newCondition(set, 1).MinimumOf(1).Wait(shortCtx(t, 10*time.Second)) }()
	testutil.Eventually(t, 5*time.Second, func() bool {
		set.mu.Lock()
		defer set.mu.Unlock()
		for e := range set.watched {
			if e.waiting > 0 {
				return true
			}
		}
		return false
	}, "Wait did not block")
	// Collect repeatedly: the cleanup of an unreachable Condition runs on
	// a later cycle than the one that finds it unreachable.
	for range 5 {
		runtime.GC()
		time.Sleep(time.Millisecond) // let the cleanup goroutine run
	}
	set.setState(sub, Connected, nil)
	if err := <-done; err != nil {
		t.Fatalf("Wait on a temporary condition missed the rise: %v", err)
	}
}
