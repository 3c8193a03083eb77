package streams

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

func seqs(from, n int) []delivery[int] {
	ds := make([]delivery[int], n)
	for i := range ds {
		ds[i] = delivery[int]{v: from + i}
	}
	return ds
}

// Several receivers put runs larger than the inbox while readers take:
// every datum arrives once, each receiver's in order, and the inbox never
// holds more than its size.
func TestInbox_BoundedInOrder(t *testing.T) {
	const size, writers, runs, run = 4, 3, 50, 7
	b := newInbox[int](size)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range runs {
				if _, err := b.put(ctx, seqs(w*1_000_000+r*run, run)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	last := map[int]int{}
	for range writers * runs * run {
		b.mu.Lock()
		if b.n > size {
			t.Fatalf("inbox holds %d > %d", b.n, size)
		}
		b.mu.Unlock()
		d, ok, err := b.take(ctx, true)
		if err != nil || !ok {
			t.Fatalf("take: %v %v", ok, err)
		}
		w, v := d.v/1_000_000, d.v%1_000_000
		if prev, seen := last[w]; seen && v != prev+1 {
			t.Fatalf("writer %d: %d after %d", w, v, prev)
		}
		last[w] = v
	}
	wg.Wait()
	if _, ok, _ := b.take(ctx, false); ok {
		t.Fatal("a datum left over")
	}
}

// A full inbox makes put wait until ctx ends; take without wait on an empty
// inbox returns at once; close wakes a waiting reader, which drains what is
// held and then gets ErrClosed, and fails later puts.
func TestInbox_WaitCancelClose(t *testing.T) {
	b := newInbox[int](2)
	ctx := context.Background()
	if _, ok, err := b.take(ctx, false); ok || err != nil {
		t.Fatalf("take on empty = %v, %v", ok, err)
	}
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if n, err := b.put(short, seqs(1, 3)); n != 2 || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("put of 3 into an inbox of 2 = %d, %v, want 2 and the deadline", n, err)
	}
	got := make(chan error, 1)
	go func() {
		for {
			if _, _, err := b.take(ctx, true); err != nil {
				got <- err
				return
			}
		}
	}()
	b.close()
	select {
	case err := <-got:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("take after close = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("close did not wake the reader")
	}
	if n, err := b.put(ctx, seqs(9, 1)); n != 0 || !errors.Is(err, ErrClosed) {
		t.Fatalf("put after close = %d, %v", n, err)
	}
}
