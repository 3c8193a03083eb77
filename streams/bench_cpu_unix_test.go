//go:build unix

package streams_test

import (
	"syscall"
	"time"
)

// benchCPU is the CPU time (user + system) the process used so far. Per
// datum, it is a cost measure that other load on a shared box disturbs far
// less than wall-clock rates.
func benchCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
