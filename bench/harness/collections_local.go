package harness

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"
)

// colLocalScenario opens a single writer replica (a group of one), fills
// it with n entries and measures, on it:
//   - the heap it holds per entry: the live heap after the fill minus the
//     live heap before the map was opened (both after two collections),
//     ÷ n; one sample (the fill is the expensive part);
//   - Get of a random present key, with testing.Benchmark (about 1 s per
//     repetition): ns/op, allocs/op and B/op.
func (r *runner) colLocalScenario(ctx context.Context, id string, n int) error {
	p := r.colParams(n)
	// One snapshot at the end of the fill and a log compacted behind it,
	// so the heap holds the tree, the snapshot bytes and a few entries.
	p.SnapshotEntries = uint64(max(1, (n+colBatch-1)/colBatch))
	before := heapAlloc()
	c, err := openMapCluster(ctx, 1, p)
	if err != nil {
		return err
	}
	defer func() { _ = c.close() }()
	m := c.maps[0]
	if m.Len() != 0 {
		return errors.New("the map is not empty")
	}
	opened := heapAlloc()
	start := time.Now()
	v, err := fillMap(ctx, m, n)
	if err != nil {
		return err
	}
	if err := waitVersion(ctx, m, v); err != nil {
		return err
	}
	fill := time.Since(start)
	if m.Len() != n {
		return fmt.Errorf("the map holds %d entries, want %d", m.Len(), n)
	}
	after := heapAlloc()
	state := colStateBytes(n)
	perEntry := (float64(after) - float64(opened)) / float64(n)
	r.sample(id, "heap per entry", "mosaik", "B", Lower, perEntry).addNote(fmt.Sprintf(
		"one replica of %s entries (12-character string keys, 64 B []byte values); includes the last snapshot (one []byte of %s B/entry) and the raft log tail; a node with an empty map holds %s MB",
		fmtNum(float64(n)), fmtNum(float64(state)/float64(n)), fmtNum(float64(opened-min(opened, before))/1e6)))
	r.prog.step(fmt.Sprintf("filled %s entries in %s s: %s B/entry", fmtNum(float64(n)), fmtNum(fill.Seconds()), fmtNum(perEntry)))
	keys := make([]string, 4096)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range keys {
		keys[i] = colKey(rng.IntN(n))
	}
	for rep := range r.plan.reps {
		var missing bool
		res := testing.Benchmark(func(b *testing.B) {
			b.ReportAllocs()
			for i := range b.N {
				if _, ok := m.Get(keys[i%len(keys)]); !ok {
					missing = true
				}
			}
		})
		if missing {
			return errors.New("Get missed a present key")
		}
		r.sample(id, "Get", "mosaik", "ns/op", Lower, float64(res.NsPerOp())).setNote(fmt.Sprintf("testing.Benchmark of Get on random present keys (%s ops in the last repetition)", fmtNum(float64(res.N))))
		r.sample(id, "Get allocations", "mosaik", "allocs/op", Lower, float64(res.AllocsPerOp()))
		r.sample(id, "Get bytes allocated", "mosaik", "B/op", Lower, float64(res.AllocedBytesPerOp()))
		r.prog.step(fmt.Sprintf("rep %d/%d: Get %d ns/op, %d allocs/op", rep+1, r.plan.reps, res.NsPerOp(), res.AllocsPerOp()))
	}
	return nil
}

// heapAlloc is the live heap after two collections (the second frees
// what finalizers of the first released).
func heapAlloc() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}
