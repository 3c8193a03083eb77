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
	"github.com/mosaik-go/mosaik/node"
)

// scenario is one ported mosaik test: it runs on shared nodes under a
// fresh collection name.
type scenario struct {
	name string // the mosaik test's name
	run  func(t *testing.T, ns []*node.Node, name string)
}

// runScenarios runs the scenarios on ns at once, each as a subtest, so
// that their waits for elections and catch-up overlap. It does not use
// t.Parallel, whose limit (-parallel, GOMAXPROCS by default) would run
// two at a time on the 2-core machines: these tests mostly wait.
func runScenarios(t *testing.T, ns []*node.Node, scs []scenario) {
	t.Helper()
	var wg sync.WaitGroup
	for _, sc := range scs {
		wg.Go(func() {
			t.Run(sc.name, func(t *testing.T) { sc.run(t, ns, freshName(t)) })
		})
	}
	wg.Wait()
}

type whener interface{ When() collections.When }

type closer interface{ Close() error }

// opened fails the test on err and closes h at the end of the test.
func opened[H closer](t *testing.T, h H, err error) H {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return h
}

const (
	onlineWithin = 20 * time.Second
	reachWithin  = 20 * time.Second
	opWithin     = 20 * time.Second
)

func waitOnline(t *testing.T, hs ...whener) {
	t.Helper()
	for _, h := range hs {
		if err := h.When().Online(tctx(t, onlineWithin)); err != nil {
			t.Fatal("online:", err)
		}
	}
}

func waitReach(t *testing.T, v collections.Version, hs ...whener) {
	t.Helper()
	for i, h := range hs {
		if err := h.When().Reaches(tctx(t, reachWithin), v); err != nil {
			t.Fatalf("replica %d reaching %d: %v", i, v, err)
		}
	}
}

// do runs one mutation, fails the test on error and returns its version.
// A mutation refused offline that cannot have reached the log (MayApply
// unset) is retried, as a caller would: under -race on a loaded machine a
// follower may briefly lose its leader.
func do(t *testing.T, f func(ctx context.Context) (collections.Version, error)) collections.Version {
	t.Helper()
	ctx := tctx(t, opWithin)
	for {
		v, err := f(ctx)
		if err == nil {
			return v
		}
		if collections.MayApply(err) || !errors.Is(err, collections.ErrOffline) || ctx.Err() != nil {
			t.Fatal(err)
		}
		t.Logf("retrying: %v", err)
	}
}

func opCtx(t *testing.T) context.Context { return tctx(t, opWithin) }

type (
	ctxT = context.Context
	ver  = collections.Version
)

type leaderer interface {
	whener
	Leader() (peer.ID, bool)
}

// oneCluster waits until every handle is online under one leader. Writers
// opened at once may each bootstrap a cluster before they hear of one
// another; the clusters then merge and the loser's writes are discarded
// (PROTOCOL.md §21.5), which the mosaik scenarios do not expect.
func oneCluster(t *testing.T, hs ...leaderer) {
	t.Helper()
	for _, h := range hs {
		waitOnline(t, h)
	}
	testutil.Eventually(t, testutil.Scale(onlineWithin), func() bool {
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
	}, "no single leader")
}

// quick is the groups profile of these tests: the default one (whose
// election timeouts hold under -race on a loaded 2-core machine, where
// groups.TestParams' 400 ms ones led to spurious leader changes), with a
// short bootstrap delay. Scenarios open a second writer only once the
// first is online, so the short delay never makes two clusters.
var quick = collections.WithGroupOptions(groups.WithParams(quickParams()))

func quickParams() groups.Params {
	p := groups.DefaultParams()
	p.BootstrapDelay = 800 * time.Millisecond
	return p
}

// compacting is quick with a log compacted every few entries, so that a
// late member catches up from a snapshot (the collection's Snapshot and
// Restore through groups' chunked transfer) rather than from the log.
var compacting = collections.WithGroupOptions(groups.WithParams(func() groups.Params {
	p := quickParams()
	p.SnapshotEntries, p.CompactionWindow = 10, 2
	return p
}()))
