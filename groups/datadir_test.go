package groups

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/internal/testutil"
)

// A node that loses a merge discards its store file's contents with its
// raft state: restarted over the same data dir, it has the winner's
// state, not its own discarded writes.
func TestDataDir_LostMergeStartsAfresh(t *testing.T) {
	dirA, dirB := t.TempDir(), t.TempDir()
	n := newMemNet()
	a := joinCounter(t, n.service(t, "a", true), WithDataDir(dirA))
	sb := n.service(t, "b", true)
	b := joinCounter(t, sb, WithDataDir(dirB))
	for _, g := range []*Group[int64, struct{}, int64]{a, b} {
		if err := g.When().IsLeader(tctx(t, 10*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.ExecuteMany(tctx(t, 5*time.Second), []int64{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Execute(tctx(t, 5*time.Second), 100); err != nil {
		t.Fatal(err)
	}
	n.heal()
	testutil.Eventually(t, 15*time.Second, func() bool {
		v, _, err := b.Query(tctx(t, 2*time.Second), struct{}{}, Strong)
		return err == nil && v == 6
	}, "the loser did not take the winner's state")
	if _, err := a.Execute(tctx(t, 5*time.Second), 4); err != nil {
		t.Fatal(err)
	}
	if err := b.When().Committed(tctx(t, 5*time.Second), a.Committed()); err != nil {
		t.Fatal(err)
	}
	_ = sb.Close()

	// Back alone over its data dir: no quorum, so what it has is its own.
	b2 := joinCounter(t, n.service(t, "b", true), WithDataDir(dirB))
	var held int64
	testutil.Eventually(t, 10*time.Second, func() bool {
		held = weak(t, b2)
		return held == 10
	}, "restarted loser does not hold the winner's 10: %s", testutil.Lazy(func() string {
		v, _ := b2.c.view.get()
		return fmt.Sprintf("holds %d; restarted view: epoch %d, applied %d, commit %d, log %+v, snapshot %d, voters %d, learners %d",
			held, v.epoch, v.committed, v.commit, v.log, v.snapshot, v.voters, v.learners)
	}))
}

// WithJoinDefaults applies to every Join, and a Join's own options win.
func TestDataDir_JoinDefaults(t *testing.T) {
	dir := t.TempDir()
	n := newMemNet()
	s := n.service(t, "0", false)
	s.joinDefaults = []Option{WithDataDir(dir)}
	g := joinCounter(t, s)
	if _, err := os.Stat(walFilePath(dir, g.ID())); err != nil {
		t.Fatalf("default data dir not used: %v", err)
	}
	h, err := Join[struct{}, struct{}, struct{}](s, KeyFromSecret("mem"), NoOp{}, WithParams(TestParams()), WithDataDir(""))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if _, err := os.Stat(walFilePath(dir, h.ID())); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("WithDataDir(\"\") still wrote %s: %v", walFilePath(dir, h.ID()), err)
	}
}

// A Join whose store takes long to open (the data dir's lock, a long log
// replay, a large Restore) holds up no other group: another group's Join
// returns at once, and a second Join of the same id waits for the first
// and then gets a handle to the same group. The store used to be opened
// under the registry's lock, which every Join, Close and the snapshot
// server of every group on the node take.
func TestJoin_SlowStoreOpenHoldsUpNoOtherGroup(t *testing.T) {
	s := newMemNet().service(t, "a", true)
	gate := make(chan struct{})
	slow := func(c *config) {
		c.openStore = func(catalog.ID, bool) (logStore, error) { <-gate; return newMemStore(), nil }
	}
	type joinResult struct {
		g   *Group[int64, struct{}, int64]
		err error
	}
	join := func() <-chan joinResult {
		ch := make(chan joinResult, 1)
		go func() {
			g, err := Join[int64, struct{}, int64](s, KeyFromSecret("slow"), &counter{}, WithParams(TestParams()), slow)
			ch <- joinResult{g, err}
		}()
		return ch
	}
	first := join()
	testutil.Eventually(t, 5*time.Second, func() bool {
		s.core.mu.Lock()
		defer s.core.mu.Unlock()
		return len(s.core.joining) == 1
	}, "the slow Join never started opening its store")
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = joinCounter(t, s) // another group
	}()
	select {
	case <-done:
	case <-time.After(testutil.Scale(5 * time.Second)):
		close(gate)
		t.Fatal("another group's Join waited for the slow store")
	}
	second := join()
	close(gate)
	r1, r2 := <-first, <-second
	if r1.err != nil || r2.err != nil {
		t.Fatalf("Joins of the slow id: %v, %v", r1.err, r2.err)
	}
	defer r1.g.Close()
	defer r2.g.Close()
	if r1.g.c != r2.g.c {
		t.Fatal("two Joins of one id run two groups")
	}
}

// closeSpy is a log store that records its Close.
type closeSpy struct {
	*memStore
	closed *atomic.Bool
}

func (c closeSpy) Close() error { c.closed.Store(true); return c.memStore.Close() }

// Service.Close waits for a Join that is opening its store, which finds
// the service closed and closes the store before Close returns (a data
// dir can then be opened again at once); the Join fails with
// ErrTerminated.
func TestJoin_CloseWaitsForAJoinOpeningItsStore(t *testing.T) {
	s := newMemNet().service(t, "a", true)
	gate := make(chan struct{})
	var storeClosed atomic.Bool
	slow := func(c *config) {
		c.openStore = func(catalog.ID, bool) (logStore, error) {
			<-gate
			return closeSpy{newMemStore(), &storeClosed}, nil
		}
	}
	joined := make(chan error, 1)
	go func() {
		_, err := Join[int64, struct{}, int64](s, KeyFromSecret("slow"), &counter{}, WithParams(TestParams()), slow)
		joined <- err
	}()
	testutil.Eventually(t, 5*time.Second, func() bool {
		s.core.mu.Lock()
		defer s.core.mu.Unlock()
		return len(s.core.joining) == 1
	}, "the Join never started opening its store")
	closed := make(chan bool, 1)
	go func() {
		_ = s.Close()
		closed <- storeClosed.Load()
	}()
	testutil.Eventually(t, 5*time.Second, func() bool {
		s.core.mu.Lock()
		defer s.core.mu.Unlock()
		return s.core.closed
	}, "Close never began")
	close(gate)
	if ok := <-closed; !ok {
		t.Fatal("Service.Close returned before the store of the Join under way was closed")
	}
	if err := <-joined; !errors.Is(err, ErrTerminated) {
		t.Fatalf("the Join under way: %v, want ErrTerminated", err)
	}
}
