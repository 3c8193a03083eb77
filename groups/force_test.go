package groups

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/internal/testutil"
)

// Two of three voters crash: the survivor commits nothing and does not
// force by itself (a partition would look the same), until the operator
// calls ForceNewEpoch; then it leads a new epoch with the state it held.
// ForceNewEpoch refuses while the group has a leader, and on a reader.
func TestForceNewEpoch_OperatorRestoresLostMajority(t *testing.T) {
	n := newMemNet()
	gs := threeCounters(t, n)
	r := joinCounter(t, n.service(t, "r", false), WithRole(RoleReader))
	if err := r.When().Online(tctx(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := gs[0].Execute(tctx(t, 5*time.Second), 5); err != nil {
		t.Fatal(err)
	}
	if err := gs[1].ForceNewEpoch(tctx(t, 5*time.Second)); !errors.Is(err, ErrNotForced) {
		t.Fatalf("ForceNewEpoch with a live leader = %v, want ErrNotForced", err)
	}
	if err := r.ForceNewEpoch(tctx(t, 5*time.Second)); !errors.Is(err, ErrNotForced) {
		t.Fatalf("ForceNewEpoch on a reader = %v, want ErrNotForced", err)
	}
	// Cut two voters off, each alone (a crash, as the survivor sees it):
	// the survivor and the reader stay together.
	var survivor *Group[int64, struct{}, int64]
	var sides [][]peer.ID
	for _, g := range gs {
		if survivor == nil && !g.IsLeader() {
			survivor = g
			continue
		}
		sides = append(sides, []peer.ID{g.c.self})
	}
	n.partition(append(sides, []peer.ID{survivor.c.self, r.c.self})...)
	p := TestParams()
	// The survivor stays offline for three times RemoveAfter.
	for start := time.Now(); time.Since(start) < 3*p.RemoveAfter; {
		if _, err := survivor.Execute(tctx(t, p.RemoveAfter/2), 1); err == nil {
			t.Fatal("the survivor of a lost majority committed without an operator")
		}
	}
	if err := survivor.ForceNewEpoch(tctx(t, 5*time.Second)); err != nil {
		t.Fatal("ForceNewEpoch:", err)
	}
	if err := survivor.When().IsLeader(tctx(t, 10*time.Second)); err != nil {
		t.Fatal("the survivor does not lead the forced epoch:", err)
	}
	if _, err := survivor.Execute(tctx(t, 5*time.Second), 10); err != nil {
		t.Fatal(err)
	}
	for _, g := range []*Group[int64, struct{}, int64]{survivor, r} {
		testutil.Eventually(t, 10*time.Second, func() bool {
			v, _, err := g.Query(tctx(t, 2*time.Second), struct{}{}, Strong)
			return err == nil && v == 15
		}, "the forced epoch lost the state, or the reader did not follow it")
	}
}

// A survivor that forced a new epoch over a data dir (its log replaced in
// one step, storage_wal_write.go Replace) restarts into that epoch with
// the state it forced from and what it committed since.
func TestForceNewEpoch_DataDirRestartsIntoForcedEpoch(t *testing.T) {
	n, dir, s, gs := dataDirTrio(t)
	d := gs[0]
	// The data-dir node is cut off from the other two.
	n.partition([]peer.ID{gs[1].c.self, gs[2].c.self}, []peer.ID{d.c.self})
	testutil.Eventually(t, 20*time.Second, func() bool {
		return d.ForceNewEpoch(tctx(t, 2*time.Second)) == nil
	}, "ForceNewEpoch on the cut-off voter")
	forced := epochOf(d)
	if err := d.When().IsLeader(tctx(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Execute(tctx(t, 5*time.Second), 10); err != nil {
		t.Fatal(err)
	}
	_ = d.Close()
	_ = s.Close()

	n2 := newMemNet()
	s2 := n2.service(t, "d", false)
	s2.joinDefaults = []Option{WithDataDir(dir)}
	d2 := joinCounter(t, s2)
	if err := d2.When().IsLeader(tctx(t, 10*time.Second)); err != nil {
		t.Fatal("the restarted forcer does not lead its forced epoch:", err)
	}
	if got := epochOf(d2); got != forced {
		t.Fatalf("restarted in epoch %x, want the forced epoch %x", got, forced)
	}
	v, _, err := d2.Query(tctx(t, 5*time.Second), struct{}{}, Strong)
	if err != nil || v != 15 {
		t.Fatalf("state after the restart: %d, %v; want 15", v, err)
	}
}

// The epochs a forcer left are kept in its data dir: restarted over it,
// it still announces the epoch it forced from, so an old voter of that
// epoch that comes back later (with no leader of its own) rejoins the
// forced epoch instead of waiting in the old one for good.
func TestForceNewEpoch_RestartedForcerStillAnnouncesLostEpoch(t *testing.T) {
	n, dir, s, gs := dataDirTrio(t)
	d := gs[0]
	old := epochOf(d)
	self := func(g *Group[int64, struct{}, int64]) []peer.ID { return []peer.ID{g.c.self} }
	// Everyone alone: no side has a majority of the old epoch.
	n.partition(self(d), self(gs[1]), self(gs[2]))
	testutil.Eventually(t, 20*time.Second, func() bool {
		return d.ForceNewEpoch(tctx(t, 2*time.Second)) == nil
	}, "ForceNewEpoch on the lone voter")
	forced := epochOf(d)
	if err := d.When().IsLeader(tctx(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	_ = d.Close()
	_ = s.Close()

	s2 := n.service(t, "d", false)
	s2.joinDefaults = []Option{WithDataDir(dir)}
	d2 := joinCounter(t, s2)
	if err := d2.When().IsLeader(tctx(t, 10*time.Second)); err != nil {
		t.Fatal("the restarted forcer does not lead its forced epoch:", err)
	}
	parent := make(chan [2]uint64, 1)
	if err := d2.c.do(tctx(t, 5*time.Second), func() { parent <- [2]uint64{d2.c.parent, d2.c.lostEpoch} }); err != nil {
		t.Fatal(err)
	}
	if got := <-parent; got != [2]uint64{old, old} {
		t.Fatalf("after the restart: parent %x, lost epoch %x; want both %x", got[0], got[1], old)
	}
	// n1 comes back (n2 stays away): without a leader in the old epoch,
	// it follows the announcement and joins the forced epoch.
	n.partition([]peer.ID{d2.c.self, gs[1].c.self}, self(gs[2]))
	testutil.Eventually(t, 15*time.Second, func() bool { return epochOf(gs[1]) == forced }, "the returning old voter joins the forced epoch")
	testutil.Eventually(t, 15*time.Second, func() bool {
		v, _, err := gs[1].Query(tctx(t, 2*time.Second), struct{}{}, Strong)
		return err == nil && v == 5
	}, "the returning old voter has the forced epoch's state")
}

// The epochs record is written before a force touches the log: when it
// cannot be written, ForceNewEpoch fails and the node stays in its epoch
// with its log, and a later attempt forces.
func TestForceNewEpoch_RecordFirst(t *testing.T) {
	n, dir, _, gs := dataDirTrio(t)
	d := gs[0]
	old := epochOf(d)
	// A directory where the record's temporary file goes: the write fails.
	block := filepath.Join(walStorePath(dir, d.c.id), epochsTmpName)
	if err := os.MkdirAll(filepath.Join(block, "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	n.partition([]peer.ID{d.c.self}, []peer.ID{gs[1].c.self}, []peer.ID{gs[2].c.self})
	var err error
	testutil.Eventually(t, 20*time.Second, func() bool {
		err = d.ForceNewEpoch(tctx(t, 2*time.Second))
		return err != nil && !errors.Is(err, ErrNotForced)
	}, "ForceNewEpoch failing on the record")
	if !strings.Contains(err.Error(), "epochs record") {
		t.Fatalf("ForceNewEpoch: %v, want the record's failure", err)
	}
	if e := epochOf(d); e != old {
		t.Fatalf("a failed force left the node in epoch %x, want %x", e, old)
	}
	if v := weak(t, d); v != 5 {
		t.Fatalf("a failed force changed the state: %d", v)
	}
	if err := os.RemoveAll(block); err != nil {
		t.Fatal(err)
	}
	if err := d.ForceNewEpoch(tctx(t, 5*time.Second)); err != nil {
		t.Fatal("ForceNewEpoch once the record can be written:", err)
	}
	if e := epochOf(d); e == old || e == 0 {
		t.Fatalf("after the force: epoch %x", e)
	}
}

// dataDirTrio starts three voters on a memory network, the first ("d",
// the leader) over a data dir, and commits 5 through it: the set-up of
// the forced-epoch tests that restart the forcer.
func dataDirTrio(t *testing.T) (n *memNet, dir string, s *Service, gs []*Group[int64, struct{}, int64]) {
	t.Helper()
	n, dir = newMemNet(), t.TempDir()
	s = n.service(t, "d", false)
	s.joinDefaults = []Option{WithDataDir(dir)}
	d := joinCounter(t, s)
	if err := d.When().IsLeader(tctx(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	gs = []*Group[int64, struct{}, int64]{d}
	for _, name := range []string{"1", "2"} {
		gs = append(gs, joinCounter(t, n.service(t, name, false)))
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		return settledVoters(gs[0]) == 3 && settledVoters(gs[1]) == 3 && settledVoters(gs[2]) == 3
	}, "three voters on every member")
	if _, err := d.Execute(tctx(t, 5*time.Second), 5); err != nil {
		t.Fatal(err)
	}
	return n, dir, s, gs
}
