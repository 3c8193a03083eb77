package groups

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"testing"
	"time"

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
