package streams

import (
	"context"
	"sync"
)

// inbox is a consumer's delivery buffer: its receivers put datums in, in
// runs, and the application takes them one at a time. It holds at most max
// datums. A channel would cost a lock of the channel (contended by both
// sides) and often a wake-up per datum; a receiver here puts every datum
// it already decoded under one lock and wakes a waiting reader once.
//
// Waiting on either side uses a one-slot signal channel per side: the side
// that makes progress signals when the other has waiters, and a woken
// waiter that leaves work behind passes the signal on, so several waiting
// receivers (one per producer) or readers all get their turn.
type inbox[T any] struct {
	mu     sync.Mutex
	q      []delivery[T] // ring of len max
	head   int           // index of the oldest datum
	n      int           // datums held
	closed bool
	// readers and writers count the goroutines waiting for a datum and
	// for room; they are signalled through ready and room.
	readers, writers int
	ready, room      chan struct{}
	done             chan struct{} // closed by close
}

func newInbox[T any](max int) *inbox[T] {
	return &inbox[T]{q: make([]delivery[T], max), ready: make(chan struct{}, 1), room: make(chan struct{}, 1), done: make(chan struct{})}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// put appends ds in order, waiting for room as needed, and returns how
// many it appended. It returns ctx.Err() if ctx ends first (the datums not
// yet put are dropped with the receiver), and ErrClosed after close.
func (b *inbox[T]) put(ctx context.Context, ds []delivery[T]) (int, error) {
	put := 0
	for len(ds) > 0 {
		b.mu.Lock()
		if b.closed {
			b.mu.Unlock()
			return put, ErrClosed
		}
		k := min(len(ds), len(b.q)-b.n)
		for i := range k {
			b.q[(b.head+b.n+i)%len(b.q)] = ds[i]
		}
		b.n += k
		ds = ds[k:]
		put += k
		if k > 0 && b.readers > 0 {
			signal(b.ready)
		}
		if len(ds) == 0 {
			if b.n < len(b.q) && b.writers > 0 {
				signal(b.room) // pass room on to another waiting receiver
			}
			b.mu.Unlock()
			return put, nil
		}
		b.writers++
		b.mu.Unlock()
		var err error
		select {
		case <-b.room:
		case <-b.done:
			err = ErrClosed
		case <-ctx.Done():
			err = ctx.Err()
		}
		b.mu.Lock()
		b.writers--
		b.mu.Unlock()
		if err != nil {
			return put, err
		}
	}
	return put, nil
}

// take removes the oldest datum. With wait unset it returns at once, ok
// false when the inbox is empty; otherwise it waits until one arrives or
// ctx ends. Once closed and drained it returns ErrClosed.
func (b *inbox[T]) take(ctx context.Context, wait bool) (d delivery[T], ok bool, err error) {
	for {
		b.mu.Lock()
		if b.n > 0 {
			d = b.q[b.head]
			b.q[b.head] = delivery[T]{} // drop the references
			b.head = (b.head + 1) % len(b.q)
			b.n--
			if b.writers > 0 {
				signal(b.room)
			}
			if b.n > 0 && b.readers > 0 {
				signal(b.ready) // pass the rest on to another waiting reader
			}
			b.mu.Unlock()
			return d, true, nil
		}
		if b.closed {
			b.mu.Unlock()
			return d, false, ErrClosed
		}
		if !wait {
			b.mu.Unlock()
			return d, false, nil
		}
		b.readers++
		b.mu.Unlock()
		select {
		case <-b.ready:
		case <-b.done:
		case <-ctx.Done():
			err = ctx.Err()
		}
		b.mu.Lock()
		b.readers--
		b.mu.Unlock()
		if err != nil {
			return d, false, err
		}
	}
}

// close ends the inbox: puts fail, and takes return what is held, then
// ErrClosed. Idempotent.
func (b *inbox[T]) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.closed {
		b.closed = true
		close(b.done)
	}
}
