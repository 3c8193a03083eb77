package harness

import (
	"os"
	"runtime"
	"runtime/debug"
)

// nodeHeapMinimum is the Go runtime's minimum heap goal at GOGC=100
// (runtime.heapMinimum, 4 MiB): a process does not collect garbage before
// its heap reaches it, however small its live heap.
const nodeHeapMinimum = 4 << 20

// sharedHeapEnv, when set, runs the discovery rows with the process's
// default collector (GOGC=100 on the heap all N nodes share): the method
// of sessions before 21, to compare.
const sharedHeapEnv = "MOSAIK_BENCH_SHARED_HEAP"

// heapFloor gives the process, for one discovery repetition of n nodes,
// the collector's trigger that n separate processes would have: no
// collection until the heap grew by n × nodeHeapMinimum over its live
// size at the start. With the default collector the n nodes share one
// heap: each cycle marks all of them, and building them grows that heap
// several times over in the join wave, so a cycle runs every time it grows
// by its live size (5 to 6 cycles marking 20 to 80 MB each at N = 100, a
// sixth of the wave's CPU). A node in its own process holds 1 to 2 MB and
// allocates about as much while it joins: it runs at most one cycle, on
// its own heap. GOGC is set so that the first trigger lands there (the
// runtime's heap goal is the live heap times 1 + GOGC/100); a cycle, if
// one runs, then sets the next as the default would, relative to the
// bigger heap. The restore function puts GOGC back.
//
// It is a GOGC and not a memory limit with GOGC off: freed memory the
// runtime has not yet returned to the OS counts towards a limit, so once
// a limit-driven cycle ran it kept running (a third of the CPU in the
// first repetition of a fresh process, measured).
func heapFloor(n int) (restore func()) {
	if os.Getenv(sharedHeapEnv) != "" {
		return func() {}
	}
	runtime.GC() // every repetition but a run's first starts after one anyway
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	live := max(ms.HeapAlloc, nodeHeapMinimum)
	old := debug.SetGCPercent(int(100 * uint64(n) * nodeHeapMinimum / live))
	return func() { debug.SetGCPercent(old) }
}
