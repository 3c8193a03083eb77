package groups

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// refMemStore is etcd's MemoryStorage with Save, CreateSnapshot and Compact
// shaped like logStore: the reference the bolt store must match. Save
// checks the snapshot first so that, like the bolt store's transaction, a
// refused Save changes nothing.
type refMemStore struct{ *raft.MemoryStorage }

func (m refMemStore) Save(hs *raftpb.HardState, snap *raftpb.Snapshot, ents []*raftpb.Entry) error {
	if !raft.IsEmptySnap(snap) {
		if err := m.ApplySnapshot(snap); err != nil {
			return err
		}
	}
	if !raft.IsEmptyHardState(hs) {
		if err := m.SetHardState(hs); err != nil {
			return err
		}
	}
	return m.Append(ents)
}

func (m refMemStore) Close() error { return nil }

func ent(i, t uint64, data string) *raftpb.Entry {
	e := &raftpb.Entry{Index: new(i), Term: new(t)}
	if data != "" {
		e.Data = []byte(data)
	}
	return e
}

// run makes entries [from, to] of term t with some payload.
func run(from, to, t uint64) []*raftpb.Entry {
	var out []*raftpb.Entry
	for i := from; i <= to; i++ {
		out = append(out, ent(i, t, fmt.Sprintf("cmd-%d-%d", i, t)))
	}
	return out
}

func hardState(term, vote, commit uint64) *raftpb.HardState {
	return &raftpb.HardState{Term: new(term), Vote: new(vote), Commit: new(commit)}
}

func confState(voters ...uint64) *raftpb.ConfState {
	return &raftpb.ConfState{Voters: voters}
}

func snapshotAt(i, t uint64, data string, voters ...uint64) *raftpb.Snapshot {
	s := &raftpb.Snapshot{Metadata: &raftpb.SnapshotMetadata{Index: new(i), Term: new(t), ConfState: confState(voters...)}}
	if data != "" {
		s.Data = []byte(data)
	}
	return s
}

// storeOp is one call on a logStore.
type storeOp struct {
	save    *saveArgs
	snap    *snapArgs
	compact *uint64
	reopen  bool // bolt only: close and open the file again
}

type saveArgs struct {
	hs   *raftpb.HardState
	snap *raftpb.Snapshot
	ents []*raftpb.Entry
}

type snapArgs struct {
	i    uint64
	cs   *raftpb.ConfState
	data []byte
}

func opSave(hs *raftpb.HardState, snap *raftpb.Snapshot, ents ...*raftpb.Entry) storeOp {
	return storeOp{save: &saveArgs{hs, snap, ents}}
}

func opAppend(ents []*raftpb.Entry) storeOp { return opSave(nil, nil, ents...) }

func opSnap(i uint64, cs *raftpb.ConfState, data string) storeOp {
	var d []byte
	if data != "" {
		d = []byte(data)
	}
	return storeOp{snap: &snapArgs{i, cs, d}}
}

func opCompact(i uint64) storeOp { return storeOp{compact: &i} }

var opReopen = storeOp{reopen: true}

func (o storeOp) String() string {
	switch {
	case o.save != nil:
		first, n := uint64(0), len(o.save.ents)
		if n > 0 {
			first = o.save.ents[0].GetIndex()
		}
		return fmt.Sprintf("save(hs=%v snap=%d ents=%d+%d)", o.save.hs != nil, o.save.snap.GetMetadata().GetIndex(), first, n)
	case o.snap != nil:
		return fmt.Sprintf("createSnapshot(%d)", o.snap.i)
	case o.compact != nil:
		return fmt.Sprintf("compact(%d)", *o.compact)
	default:
		return "reopen"
	}
}

// apply runs o on s (a reopen is the caller's job) and returns the
// snapshot CreateSnapshot returned, if any, and the error.
func (o storeOp) apply(s logStore) (*raftpb.Snapshot, error) {
	switch {
	case o.save != nil:
		// Each store gets its own copy: MemoryStorage keeps pointers.
		return nil, s.Save(cloneMsg(o.save.hs), cloneMsg(o.save.snap), cloneEnts(o.save.ents))
	case o.snap != nil:
		return s.CreateSnapshot(o.snap.i, cloneMsg(o.snap.cs), o.snap.data)
	case o.compact != nil:
		return nil, s.Compact(*o.compact)
	}
	return nil, nil
}

func cloneMsg[M proto.Message](m M) M {
	var zero M
	if any(m) == any(zero) {
		return m
	}
	return proto.Clone(m).(M)
}

func cloneEnts(ents []*raftpb.Entry) []*raftpb.Entry {
	out := make([]*raftpb.Entry, len(ents))
	for i, e := range ents {
		out[i] = cloneMsg(e)
	}
	return out
}

// sameErr holds when both errors are nil, or the reference's error is a
// raft sentinel that got matches.
func sameErr(want, got error) bool {
	if want == nil || got == nil {
		return want == nil && got == nil
	}
	return errors.Is(got, want)
}

// compareStores reads everything raft can read from both stores and
// reports the first difference.
func compareStores(t *testing.T, step string, ref, got logStore) {
	t.Helper()
	rhs, rcs, rerr := ref.InitialState()
	ghs, gcs, gerr := got.InitialState()
	if !sameErr(rerr, gerr) || !proto.Equal(rhs, ghs) || !proto.Equal(rcs, gcs) {
		t.Fatalf("%s: InitialState: ref (%v, %v, %v), bolt (%v, %v, %v)", step, rhs, rcs, rerr, ghs, gcs, gerr)
	}
	rfirst, _ := ref.FirstIndex()
	gfirst, err := got.FirstIndex()
	if err != nil || rfirst != gfirst {
		t.Fatalf("%s: FirstIndex: ref %d, bolt %d (%v)", step, rfirst, gfirst, err)
	}
	rlast, _ := ref.LastIndex()
	glast, err := got.LastIndex()
	if err != nil || rlast != glast {
		t.Fatalf("%s: LastIndex: ref %d, bolt %d (%v)", step, rlast, glast, err)
	}
	for i := max(rfirst, 2) - 2; i <= rlast+2; i++ {
		rt, rerr := ref.Term(i)
		gt, gerr := got.Term(i)
		if rt != gt || !sameErr(rerr, gerr) {
			t.Fatalf("%s: Term(%d): ref (%d, %v), bolt (%d, %v)", step, i, rt, rerr, gt, gerr)
		}
	}
	// Every lo; for hi, the short ranges and the ones up to the end (all
	// of them would make the random runs quadratic in bolt reads).
	for lo := max(rfirst, 1) - 1; lo <= rlast+1; lo++ {
		his := map[uint64]bool{rlast: true, rlast + 1: true}
		for d := uint64(0); d <= 3; d++ {
			his[max(lo, rfirst)+d] = true
		}
		for hi := range his {
			if hi < lo || hi < rfirst || hi > rlast+1 {
				continue
			}
			// Sizes at and just below each prefix's size find any
			// off-by-one in the cut.
			sizes := []uint64{0, 1, math.MaxUint64}
			all, _ := ref.Entries(lo, hi, math.MaxUint64)
			var sum uint64
			for k, e := range all {
				if k == 3 {
					break
				}
				sum += uint64(proto.Size(e))
				sizes = append(sizes, sum-1, sum, sum+1)
			}
			for _, maxSize := range sizes {
				re, rerr := ref.Entries(lo, hi, maxSize)
				ge, gerr := got.Entries(lo, hi, maxSize)
				if !sameErr(rerr, gerr) || !sameEntries(re, ge) {
					t.Fatalf("%s: Entries(%d, %d, %d): ref (%d entries, %v), bolt (%d entries, %v)",
						step, lo, hi, maxSize, len(re), rerr, len(ge), gerr)
				}
			}
		}
	}
	rs, rerr := ref.Snapshot()
	gs, gerr := got.Snapshot()
	if !sameErr(rerr, gerr) || !proto.Equal(rs, gs) {
		t.Fatalf("%s: Snapshot: ref (%v, %v), bolt (%v, %v)", step, rs, rerr, gs, gerr)
	}
}

func sameEntries(a, b []*raftpb.Entry) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !proto.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// durableKinds are the stores on disk, each opened (again) at a path
// without fsync: bolt, the WAL, and the WAL rewriting its file at every
// snapshot and compaction and growing in small steps.
var durableKinds = []struct {
	name string
	open func(path string) (logStore, error)
	// file is the file (or directory) at path that holds the store.
	file func(path string) string
}{
	{"bolt", func(path string) (logStore, error) {
		s, err := openBoltStore(path+".db", boltOptions{NoSync: true})
		if err != nil {
			return nil, err
		}
		return s, nil
	}, func(path string) string { return path + ".db" }},
	{"wal", func(path string) (logStore, error) {
		s, err := openWALStore(path, walOptions{NoSync: true})
		if err != nil {
			return nil, err
		}
		return s, nil
	}, func(path string) string { return filepath.Join(path, walDirName) }},
	{"wal-rewrite", func(path string) (logStore, error) {
		s, err := openWALStore(path, walOptions{NoSync: true, rewriteMin: 1, prealloc: 64})
		if err != nil {
			return nil, err
		}
		return s, nil
	}, func(path string) string { return filepath.Join(path, walDirName) }},
}

// parityRun applies ops to a MemoryStorage and each durable store side by
// side, comparing every result and then everything readable after each op.
func parityRun(t *testing.T, ops []storeOp) {
	t.Helper()
	for _, kind := range durableKinds {
		// Each run has its own directory and the stores do not fsync: pure
		// computation, so two run at once on a two-core machine.
		t.Run(kind.name, func(t *testing.T) {
			t.Parallel()
			parityRunOn(t, kind.open, ops)
		})
	}
}

func parityRunOn(t *testing.T, open func(string) (logStore, error), ops []storeOp) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "g")
	ref := refMemStore{raft.NewMemoryStorage()}
	got, err := open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = got.Close() })
	compareStores(t, "initial", ref, got)
	for n, op := range ops {
		step := fmt.Sprintf("op %d %v", n, op)
		if op.reopen {
			if err := got.Close(); err != nil {
				t.Fatalf("%s: close: %v", step, err)
			}
			if got, err = open(path); err != nil {
				t.Fatalf("%s: open: %v", step, err)
			}
		} else {
			rs, rerr := op.apply(ref)
			gs, gerr := op.apply(got)
			if !sameErr(rerr, gerr) {
				t.Fatalf("%s: error: ref %v, bolt %v", step, rerr, gerr)
			}
			if !proto.Equal(rs, gs) {
				t.Fatalf("%s: snapshot: ref %v, bolt %v", step, rs, gs)
			}
		}
		compareStores(t, step, ref, got)
	}
}

func TestBoltStore_Parity(t *testing.T) {
	tests := []struct {
		name string
		ops  []storeOp
	}{
		{"empty", nil},
		{"append", []storeOp{opAppend(run(1, 5, 1))}},
		{"hard state only", []storeOp{opSave(hardState(3, 2, 0), nil), opReopen}},
		{"empty hard state is skipped", []storeOp{opSave(hardState(3, 2, 0), nil), opSave(hardState(0, 0, 0), nil)}},
		{"hard state and entries", []storeOp{opSave(hardState(1, 1, 2), nil, run(1, 3, 1)...), opReopen}},
		{"append continues", []storeOp{opAppend(run(1, 3, 1)), opAppend(run(4, 6, 1))}},
		{"conflict overwrites longer suffix", []storeOp{opAppend(run(1, 6, 1)), opAppend(run(3, 4, 2)), opReopen}},
		{"conflict overwrites shorter suffix", []storeOp{opAppend(run(1, 3, 1)), opAppend(run(2, 7, 2))}},
		{"rewrite from first", []storeOp{opAppend(run(1, 3, 1)), opAppend(run(1, 2, 3))}},
		{"append of compacted entries is skipped", []storeOp{opAppend(run(1, 5, 1)), opCompact(4), opAppend(run(2, 3, 1))}},
		{"append straddling compaction", []storeOp{opAppend(run(1, 5, 1)), opCompact(3), opAppend(run(2, 7, 2))}},
		{"compact", []storeOp{opAppend(run(1, 5, 1)), opCompact(2), opReopen}},
		{"compact twice", []storeOp{opAppend(run(1, 5, 1)), opCompact(2), opCompact(2), opCompact(1)}},
		{"compact zero", []storeOp{opAppend(run(1, 5, 1)), opCompact(0)}},
		{"compact all", []storeOp{opAppend(run(1, 5, 2)), opCompact(5), opReopen, opAppend(run(6, 6, 3))}},
		{"create snapshot", []storeOp{opAppend(run(1, 5, 1)), opSnap(3, confState(1, 2, 3), "state@3"), opReopen}},
		{"create snapshot without conf state keeps it", []storeOp{
			opAppend(run(1, 5, 1)), opSnap(2, confState(1), "a"), opSnap(4, nil, "b"), opReopen}},
		{"create snapshot out of date", []storeOp{opAppend(run(1, 5, 1)), opSnap(3, nil, "x"), opSnap(3, nil, "y"), opSnap(2, nil, "z")}},
		{"create snapshot then compact", []storeOp{opAppend(run(1, 8, 1)), opSnap(6, confState(7), "s"), opCompact(4), opReopen}},
		{"create snapshot at compaction point", []storeOp{opAppend(run(1, 8, 1)), opCompact(4), opSnap(4, nil, "s")}},
		{"apply snapshot", []storeOp{opSave(hardState(5, 1, 10), snapshotAt(10, 4, "state", 1, 2, 3)), opReopen}},
		{"apply snapshot replaces log", []storeOp{
			opAppend(run(1, 12, 1)), opSave(nil, snapshotAt(8, 1, "s8", 1)), opReopen, opAppend(run(9, 10, 2))}},
		{"apply snapshot with entries", []storeOp{opSave(hardState(5, 0, 10), snapshotAt(10, 4, "s", 1), run(11, 13, 5)...)}},
		{"apply snapshot out of date", []storeOp{
			opSave(nil, snapshotAt(10, 4, "s", 1)), opSave(hardState(9, 9, 9), snapshotAt(9, 4, "old", 1), run(10, 11, 4)...)}},
		{"apply snapshot after create", []storeOp{
			opAppend(run(1, 5, 1)), opSnap(5, confState(1), "mine"), opSave(nil, snapshotAt(20, 3, "theirs", 2))}},
		{"large snapshot data", []storeOp{opAppend(run(1, 2, 1)), opSnap(2, nil, string(make([]byte, 2*snapDataChunk+7))), opReopen}},
		{"empty entries", []storeOp{opAppend([]*raftpb.Entry{ent(1, 1, ""), ent(2, 1, ""), ent(3, 2, "x")})}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { parityRun(t, tt.ops) })
	}
}

// TestBoltStore_ParityRandom runs seeded random sequences of every
// operation raft and the core make, within the bounds where MemoryStorage
// does not panic, with reopens in between.
func TestBoltStore_ParityRandom(t *testing.T) {
	for seed := uint64(1); seed <= 4; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			parityRun(t, randomOps(rand.New(rand.NewPCG(seed, seed)), 60))
		})
	}
}

// randomOps plays a model of the log (offset, last, snapshot index) so each
// op stays in MemoryStorage's non-panicking range, with some refused ones.
func randomOps(r *rand.Rand, n int) []storeOp {
	var ops []storeOp
	var offset, last, snapIdx, term uint64 = 0, 0, 0, 1
	for range n {
		switch k := r.IntN(10); {
		case k < 5: // append, sometimes over a conflicting suffix
			from := last + 1
			if last > offset && r.IntN(3) == 0 {
				from = offset + 1 + r.Uint64N(last-offset)
				term++
			}
			to := from + r.Uint64N(4)
			var hs *raftpb.HardState
			if r.IntN(2) == 0 {
				hs = hardState(term, r.Uint64N(3), min(to, from))
			}
			ops = append(ops, opSave(hs, nil, run(from, to, term)...))
			last = to
		case k < 7: // create a snapshot (sometimes out of date)
			if last <= offset {
				continue
			}
			i := offset + r.Uint64N(last-offset+1)
			var cs *raftpb.ConfState
			if r.IntN(2) == 0 {
				cs = confState(1, r.Uint64N(5)+2)
			}
			ops = append(ops, opSnap(i, cs, fmt.Sprintf("state-%d", i)))
			if i > snapIdx {
				snapIdx = i
			}
		case k < 9: // compact (sometimes below the offset)
			if last == 0 {
				continue
			}
			i := r.Uint64N(last + 1)
			ops = append(ops, opCompact(i))
			offset = max(offset, i)
		case k == 9: // a snapshot from the leader, or a reopen
			if r.IntN(2) == 0 {
				ops = append(ops, opReopen)
				continue
			}
			term++
			i := last + r.Uint64N(5)
			if i == 0 {
				i = 1
			}
			ops = append(ops, opSave(hardState(term, 1, i), snapshotAt(i, term, fmt.Sprintf("leader-%d", i), 1, 2)))
			if i > snapIdx || snapIdx == 0 {
				offset, last, snapIdx = i, i, i
			}
		}
	}
	return ops
}
