//go:build !unix

package streams_test

import "time"

// benchCPU is 0 where the process's CPU time is not read: the benchmarks'
// CPU-per-datum metrics then read 0.
func benchCPU() time.Duration { return 0 }
