package collections_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/collections"
	"github.com/mosaik-go/mosaik/groups"
	"github.com/mosaik-go/mosaik/internal/testutil"
)

// when is what every collection handle offers to wait on.
type when interface {
	When() collections.When
}

// online waits until every handle knows a leader.
func online(t testing.TB, hs ...when) {
	t.Helper()
	for i, h := range hs {
		if err := h.When().Online(tctx(t, 20*time.Second)); err != nil {
			t.Fatalf("handle %d not online: %v", i, err)
		}
	}
}

// reach waits until every handle has applied version v.
func reach(t testing.TB, v collections.Version, hs ...when) {
	t.Helper()
	for i, h := range hs {
		if err := h.When().Reaches(tctx(t, 20*time.Second), v); err != nil {
			t.Fatalf("handle %d did not reach version %d: %v", i, v, err)
		}
	}
}

// doer returns a function that fails t on a mutation error and returns
// the version, so a test reads v := do(w.Insert(ctx, k, v)).
func doer(t testing.TB) func(collections.Version, error) collections.Version {
	return func(v collections.Version, err error) collections.Version {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

// closeAtEnd closes h when t ends.
func closeAtEnd(t testing.TB, h interface{ Close() error }) {
	t.Cleanup(func() { _ = h.Close() })
}

// subCtx is a context for one subtest's mutations.
func subCtx(t testing.TB) context.Context { return tctx(t, 60*time.Second) }

// fast gives a collection's group the test consensus timings (elections
// in a few hundred milliseconds, snapshots every 200 entries). The timings
// are part of the group id: every replica of a test opens with it.
var fast = collections.WithGroupOptions(groups.WithParams(groups.TestParams()))

// netCase is one subtest of a table over shared nodes.
type netCase[S any] struct {
	name string
	run  func(t *testing.T, s S)
}

// runCases runs every case as a subtest, up to width at once, each with
// the setup that setup returns for it. It calls t.Run from goroutines
// instead of using t.Parallel, whose limit (GOMAXPROCS, two here) is far
// below what cases that mostly wait on raft timers can share.
func runCases[S any](t *testing.T, width int, cases []netCase[S], setup func(t *testing.T) S) {
	sem := make(chan struct{}, width)
	var wg sync.WaitGroup
	for _, tc := range cases {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			t.Run(tc.name, func(t *testing.T) { tc.run(t, setup(t)) })
		}()
	}
	wg.Wait()
}

// led is a handle that knows its group's leader.
type led interface {
	Leader() (peer.ID, bool)
}

// agree waits until every handle knows the same leader. Writers opened
// one after another may each elect themselves before they bond; the
// clusters then merge and the lower log is discarded, so a test writes
// from several writers only once they agree.
func agree(t testing.TB, hs ...led) {
	t.Helper()
	testutil.Eventually(t, 20*time.Second, func() bool {
		first, ok := hs[0].Leader()
		if !ok {
			return false
		}
		for _, h := range hs[1:] {
			if l, ok := h.Leader(); !ok || l != first {
				return false
			}
		}
		return true
	}, "the handles do not agree on a leader")
}

// retried runs an idempotent mutation on h until it commits. Writers that
// just merged clusters (see agree) can lose their leader for a moment, as
// in mosaik, where the caller retries after When().Online.
func retried(t testing.TB, h when, op func() (collections.Version, error)) collections.Version {
	t.Helper()
	ctx := subCtx(t)
	for {
		v, err := op()
		if err == nil {
			return v
		}
		if !errors.Is(err, collections.ErrOffline) && !errors.Is(err, collections.ErrNotApplied) {
			t.Fatal(err)
		}
		if err := h.When().Online(ctx); err != nil {
			t.Fatalf("offline and never online again: %v", err)
		}
		if ctx.Err() != nil {
			t.Fatal(err)
		}
	}
}
