package groups

import (
	"testing"

	"go.etcd.io/raft/v3"
)

// leadingCore is a hand-driven lone node that has bootstrapped and leads.
func leadingCore(t *testing.T) *groupCore {
	t.Helper()
	c := handCore(t, "a")
	leadAlone(t, c)
	c.step(t)
	return c
}

// Calls queued in one turn of the loop are proposed together before the
// Ready, each batch contiguous and in queue order, and each Execute still
// matches its own entries.
func TestCore_CallsOfOneTurnProposedTogether(t *testing.T) {
	c := leadingCore(t)
	_, li0 := c.lastPos()
	sizes := []int{1, 2, 1}
	firsts := make([]uint64, len(sizes))
	errs := make([]error, len(sizes))
	done := make([]bool, len(sizes))
	for i, n := range sizes {
		cmds := make([][]byte, n)
		for k := range cmds {
			cmds[k] = []byte{0x01} // CBOR 1
		}
		c.execute(cmds, func(f uint64) { firsts[i] = f }, func(err error) { errs[i], done[i] = err, true })
	}
	if c.rn.HasReady() {
		t.Fatal("a call was proposed on its own before the turn's Ready")
	}
	c.step(t)
	want := li0 + 1
	for i, n := range sizes {
		if !done[i] || errs[i] != nil {
			t.Fatalf("call %d: done %v, err %v", i, done[i], errs[i])
		}
		if firsts[i] != want {
			t.Fatalf("call %d: first index %d, want %d", i, firsts[i], want)
		}
		want += uint64(n)
	}
	if got := c.sm.(*typedMachine[int64, struct{}, int64]).sm.(*counter).v; got != 4 {
		t.Fatalf("counter %d, want 4", got)
	}
}

// A merged proposal that raft drops fails every batch in it with the
// offline error, and leaves nothing waiting for an index.
func TestCore_DroppedMergedProposalFailsEveryBatch(t *testing.T) {
	c := handCore(t, "a")
	c.state = raft.StateLeader // as if just deposed: raft itself knows no leader
	var errs []error
	for range 2 {
		c.feed([][]byte{{0x01}}, func(_ uint64, err error) { errs = append(errs, err) })
	}
	c.step(t)
	if len(errs) != 2 {
		t.Fatalf("%d of 2 calls finished", len(errs))
	}
	for i, err := range errs {
		var o *offline
		if !asOffline(err, &o) || o.mayApply {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if len(c.assign) != 0 || len(c.props) != 0 {
		t.Fatalf("left behind: %d assigned, %d queued", len(c.assign), len(c.props))
	}
}

// leadAlone ticks the hand-driven lone core c until it leads.
func leadAlone(t *testing.T, c *groupCore) {
	t.Helper()
	for range 3 * c.p.ticks(c.p.BootstrapDelay) {
		if c.state == raft.StateLeader {
			return
		}
		c.onTick()
		c.step(t)
	}
	if c.state != raft.StateLeader {
		t.Fatal("lone node did not lead")
	}
}
