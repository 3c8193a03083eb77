// Package testutil holds helpers shared by mosaik's tests: condition
// waiting with a scalable timeout, and quiet loggers.
package testutil

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// Factor is the timeout multiplier from MOSAIK_TIME_FACTOR (default 1), for
// slow or loaded machines.
func Factor() float64 {
	if f, err := strconv.ParseFloat(os.Getenv("MOSAIK_TIME_FACTOR"), 64); err == nil && f > 0 {
		return f
	}
	return 1
}

// Scale multiplies d by Factor().
func Scale(d time.Duration) time.Duration { return time.Duration(float64(d) * Factor()) }

// Eventually polls cond every 10 ms until it holds or Scale(timeout) passes,
// then fails the test with msg. It returns the time the condition took.
// Its args are evaluated at the call, before the wait: wrap a value that
// should show the state at the deadline in Lazy.
func Eventually(t testing.TB, timeout time.Duration, cond func() bool, msg string, args ...any) time.Duration {
	t.Helper()
	return EventuallyEvery(t, timeout, 10*time.Millisecond, cond, msg, args...)
}

// EventuallyEvery is Eventually polling every interval: for conditions
// that are costly to check (another process's HTTP API).
func EventuallyEvery(t testing.TB, timeout, interval time.Duration, cond func() bool, msg string, args ...any) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(Scale(timeout))
	for {
		if cond() {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v: "+msg, append([]any{Scale(timeout)}, args...)...)
		}
		// Polling interval of the condition check, not a synchronisation sleep.
		time.Sleep(interval)
	}
}

// Never checks for Scale(window), every interval, that something which must
// not happen does not: happened returns "" while all is well, or what went
// wrong, which fails the test at once. Unlike Eventually it always takes the
// whole window: the window is the observation itself.
func Never(t testing.TB, window, interval time.Duration, happened func() string) {
	t.Helper()
	deadline := time.Now().Add(Scale(window))
	for {
		if msg := happened(); msg != "" {
			t.Fatal(msg)
		}
		if !time.Now().Before(deadline) {
			return
		}
		// Sampling interval of the observation window.
		time.Sleep(interval)
	}
}

// Logger returns a logger for tests: silent unless MOSAIK_TEST_LOG is set
// (to debug, info, warn or error).
func Logger() *slog.Logger {
	lvl := os.Getenv("MOSAIK_TEST_LOG")
	if lvl == "" {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	var l slog.Level
	_ = l.UnmarshalText([]byte(lvl))
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l}))
}

// LeakOptions are the goleak options every package's TestMain uses: they
// ignore the goroutines go-libp2p's dependencies start once per process
// and never stop.
func LeakOptions() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreTopFunction("github.com/ipfs/go-log/v2/writer.(*MirrorWriter).logRoutine"),
		goleak.IgnoreAnyFunction("github.com/libp2p/go-libp2p/p2p/transport/quicreuse.(*reuse).gc"),
		goleak.IgnoreTopFunction("go.opencensus.io/stats/view.(*worker).start"),
	}
}

// GoTool returns the go command of the toolchain running the test, or
// "go" (from PATH) when the binary does not know its GOROOT: a test
// binary built with -trimpath records none.
func GoTool() string {
	if root := runtime.GOROOT(); root != "" {
		return filepath.Join(root, "bin", "go")
	}
	return "go"
}

// Lazy defers a value to the moment a message is formatted: as an argument
// of Eventually's message, Lazy(f) shows what f returns at the deadline
// rather than what held when Eventually was called.
func Lazy[T any](f func() T) fmt.Formatter { return lazy[T](f) }

type lazy[T any] func() T

func (l lazy[T]) Format(s fmt.State, verb rune) { fmt.Fprintf(s, fmt.FormatString(s, verb), l()) }
