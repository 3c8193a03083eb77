package catalog

import (
	"context"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestSubscription_EventsInOrder(t *testing.T) {
	s, _ := newTestStore(t)
	sub := s.Subscribe(0)
	defer sub.Close()
	a, b := newTestPeer(t), newTestPeer(t)
	ea1 := a.seal(t, testNetwork, ver(t0, t0), nil)
	ea2 := a.seal(t, testNetwork, ver(t0, t0.Add(time.Millisecond)), nil)
	eb := b.seal(t, testNetwork, ver(t0, t0), nil)
	for _, e := range []*SignedEntry{ea1, ea2, eb} {
		if _, err := s.Merge(e, t0); err != nil {
			t.Fatal(err)
		}
	}
	if ok, err := s.Depart(&Departure{PeerID: a.id, Network: testNetwork, LastVersion: ea2.Entry.Version, Timestamp: t0}, t0); !ok || err != nil {
		t.Fatal(ok, err)
	}
	s.Purge(t0.Add(time.Hour))

	want := []Event{
		{Kind: PeerDiscovered, Peer: a.id, Entry: ea1},
		{Kind: PeerUpdated, Peer: a.id, Entry: ea2, Old: ea1},
		{Kind: PeerDiscovered, Peer: b.id, Entry: eb},
		{Kind: PeerDeparted, Peer: a.id, Entry: ea2, Old: ea2},
		{Kind: PeerDeparted, Peer: b.id, Entry: eb, Old: eb, Purged: true},
	}
	for i, w := range want {
		if got := nextEvent(t, sub); got != w {
			t.Fatalf("event %d = %v %s purged=%v, want %v %s purged=%v", i, got.Kind, got.Peer, got.Purged, w.Kind, w.Peer, w.Purged)
		}
	}
	noEvent(t, sub)

	// A subscription sees only events after it was made.
	late := s.Subscribe(0)
	defer late.Close()
	noEvent(t, late)
}

func TestSubscription_OverflowDropsOldest(t *testing.T) {
	s, _ := newTestStore(t)
	sub := s.Subscribe(2)
	defer sub.Close()
	entries := make([]*SignedEntry, 5)
	for i := range entries {
		entries[i] = newTestPeer(t).seal(t, testNetwork, NewVersion(t0), nil)
		if _, err := s.Merge(entries[i], t0); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout(5*time.Second))
	defer cancel()
	_, err := sub.Next(ctx)
	if !errors.Is(err, ErrLagged) {
		t.Fatalf("first Next after overflow = %v, want ErrLagged", err)
	}
	var lag *LagError
	if !errors.As(err, &lag) || lag.Missed != 3 {
		t.Fatalf("lag = %#v, want Missed = 3", lag)
	}
	if IsRejected(err) || errors.Is(err, ErrClosed) {
		t.Fatal("a lag is neither a rejection nor a close")
	}
	// The subscription stays usable and delivers the newest events.
	for _, want := range entries[3:] {
		if ev := nextEvent(t, sub); ev.Entry != want {
			t.Fatalf("after the lag got %s, want %s", ev.Peer, want.PeerID())
		}
	}
	noEvent(t, sub)

	// The missed count restarts after it was reported.
	for range 3 {
		if _, err := s.Merge(newTestPeer(t).seal(t, testNetwork, NewVersion(t0), nil), t0); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := sub.Next(ctx); !errors.As(err, &lag) || lag.Missed != 1 {
		t.Fatalf("second lag = %v, want Missed = 1", err)
	}
}

func TestSubscription_DefaultBuffer(t *testing.T) {
	p := TestParams()
	p.EventBuffer = 3
	s, _ := newTestStoreWith(t, p)
	sub := s.Subscribe(0) // 0 = Params.EventBuffer
	defer sub.Close()
	for range 4 {
		if _, err := s.Merge(newTestPeer(t).seal(t, testNetwork, NewVersion(t0), nil), t0); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var lag *LagError
	if _, err := sub.Next(ctx); !errors.As(err, &lag) || lag.Missed != 1 {
		t.Fatalf("Next = %v, want a lag of 1 with a buffer of 3", err)
	}
}

func TestSubscription_CloseDeliversBufferedThenClosed(t *testing.T) {
	s, _ := newTestStore(t)
	sub := s.Subscribe(0)
	e1 := newTestPeer(t).seal(t, testNetwork, NewVersion(t0), nil)
	e2 := newTestPeer(t).seal(t, testNetwork, NewVersion(t0), nil)
	for _, e := range []*SignedEntry{e1, e2} {
		if _, err := s.Merge(e, t0); err != nil {
			t.Fatal(err)
		}
	}
	// A Subscription closes like every other owner, idempotently.
	var closer io.Closer = sub
	for range 2 {
		if err := closer.Close(); err != nil {
			t.Fatalf("Close = %v, want nil", err)
		}
	}
	if _, err := s.Merge(newTestPeer(t).seal(t, testNetwork, NewVersion(t0), nil), t0); err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent(t, sub); ev.Entry != e1 {
		t.Fatal("first buffered event lost")
	}
	if ev := nextEvent(t, sub); ev.Entry != e2 {
		t.Fatal("second buffered event lost")
	}
	for range 2 {
		if _, err := sub.Next(context.Background()); !errors.Is(err, ErrClosed) {
			t.Fatalf("Next after the buffer drained = %v, want ErrClosed", err)
		}
	}
}

func TestSubscription_ContextEnds(t *testing.T) {
	s, _ := newTestStore(t)
	sub := s.Subscribe(0)
	defer sub.Close()

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := sub.Next(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled ctx: %v", err)
	}
	dctx, dcancel := context.WithDeadline(context.Background(), t0) // long past
	defer dcancel()
	if _, err := sub.Next(dctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("expired ctx: %v", err)
	}

	// A blocked Next returns when its ctx is cancelled.
	bctx, bcancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		_, err := sub.Next(bctx)
		done <- err
	}()
	bcancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("blocked Next = %v", err)
		}
	case <-time.After(testTimeout(5 * time.Second)):
		t.Fatal("blocked Next did not return on cancel")
	}
}

func TestSubscription_NextWakesOnEvent(t *testing.T) {
	s, _ := newTestStore(t)
	sub := s.Subscribe(0)
	defer sub.Close()
	type result struct {
		ev  Event
		err error
	}
	done := make(chan result)
	go func() {
		ev, err := sub.Next(context.Background())
		done <- result{ev, err}
	}()
	e := newTestPeer(t).seal(t, testNetwork, NewVersion(t0), nil)
	if _, err := s.Merge(e, t0); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-done:
		if r.err != nil || r.ev.Entry != e {
			t.Fatalf("Next = %+v, %v", r.ev, r.err)
		}
	case <-time.After(testTimeout(5 * time.Second)):
		t.Fatal("blocked Next not woken by an event")
	}
}

func TestStore_CloseClosesSubscriptions(t *testing.T) {
	s, l := newTestStore(t)
	buffered := s.Subscribe(0)
	blocked := s.Subscribe(0)
	e := newTestPeer(t).seal(t, testNetwork, NewVersion(t0), nil)
	if _, err := s.Merge(e, t0); err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent(t, blocked); ev.Entry != e {
		t.Fatal("wrong event")
	}
	done := make(chan error)
	go func() {
		_, err := blocked.Next(context.Background())
		done <- err
	}()

	last := s.Snapshot()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("blocked Next = %v, want ErrClosed", err)
		}
	case <-time.After(testTimeout(5 * time.Second)):
		t.Fatal("Store.Close did not wake a blocked Next")
	}
	if ev := nextEvent(t, buffered); ev.Entry != e {
		t.Fatal("Close dropped a buffered event")
	}
	if _, err := buffered.Next(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("drained subscription = %v, want ErrClosed", err)
	}
	buffered.Close() // after Store.Close: no panic, no effect
	blocked.Close()

	// A closed store refuses changes but stays readable.
	other := newTestPeer(t)
	if _, err := s.Merge(other.seal(t, testNetwork, NewVersion(t0), nil), t0); !errors.Is(err, ErrClosed) {
		t.Fatalf("Merge after Close = %v", err)
	}
	if ok, err := s.Depart(&Departure{PeerID: e.PeerID(), Network: testNetwork, LastVersion: e.Entry.Version, Timestamp: t0}, t0); ok || !errors.Is(err, ErrClosed) {
		t.Fatalf("Depart after Close = %v, %v", ok, err)
	}
	if gone := s.Purge(t0.Add(time.Hour)); gone != nil {
		t.Fatal("Purge after Close removed entries")
	}
	next, err := l.Refresh(t0.Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetLocal(next); !errors.Is(err, ErrClosed) {
		t.Fatalf("SetLocal after Close = %v", err)
	}
	if s.Snapshot() != last || last.Len() != 1 {
		t.Fatal("the last snapshot is not kept readable")
	}
	sub := s.Subscribe(0)
	if _, err := sub.Next(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Subscribe after Close: Next = %v, want ErrClosed", err)
	}
	sub.Close()
}

// waitBlockedInNext waits until n goroutines are parked in the select of
// Subscription.Next, by reading the goroutine dump: there is no other way to
// know that a goroutine is blocked rather than about to block.
func waitBlockedInNext(tb testing.TB, n int) {
	tb.Helper()
	deadline := time.Now().Add(testTimeout(5 * time.Second))
	buf := make([]byte, 1<<20)
	for {
		dump := string(buf[:runtime.Stack(buf, true)])
		got := 0
		for _, g := range strings.Split(dump, "\n\n") {
			if strings.Contains(g, "[select") && strings.Contains(g, "(*Subscription).Next(") {
				got++
			}
		}
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%d goroutines blocked in Next, want %d", got, n)
		}
		runtime.Gosched()
	}
}

func TestSubscription_CloseWakesEveryConcurrentNext(t *testing.T) {
	// Regression (fixed): Subscription is documented safe for concurrent use, but Next
	// waits on a notify channel of capacity 1 and Close (Subscription.Close
	// and Store.Close, events.go / store.go) sends a single token, so when
	// two goroutines are blocked in Next only one of them wakes up; the
	// other stays blocked until its ctx ends even though the subscription is
	// closed. The same lost wake-up happens when two events arrive for two
	// waiters. Fix: have a waiter that consumes the token re-post it when
	// it leaves state for others (closed, or events still buffered), or use
	// a done channel closed once on Close (and a sync.Cond-like broadcast
	// for events).
	for _, closer := range []string{"Subscription.Close", "Store.Close"} {
		t.Run(closer, func(t *testing.T) {
			s, _ := newTestStore(t)
			sub := s.Subscribe(0)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel() // releases a goroutine the bug left blocked
			const waiters = 2
			done := make(chan error, waiters)
			for range waiters {
				go func() {
					_, err := sub.Next(ctx)
					done <- err
				}()
			}
			waitBlockedInNext(t, waiters)
			if closer == "Store.Close" {
				_ = s.Close()
			} else {
				sub.Close()
			}
			timeout := time.After(testTimeout(2 * time.Second))
			for i := range waiters {
				select {
				case err := <-done:
					if !errors.Is(err, ErrClosed) {
						t.Fatalf("waiter %d: %v, want ErrClosed", i, err)
					}
				case <-timeout:
					cancel()
					for range waiters - i {
						<-done
					}
					t.Fatalf("%s woke %d of %d goroutines blocked in Next", closer, i, waiters)
				}
			}
		})
	}
}
