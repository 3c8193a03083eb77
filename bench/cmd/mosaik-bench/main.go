// Command mosaik-bench measures mosaik streams and discovery side by side
// with a raw libp2p stream, gossipsub, NATS core and memberlist, and writes
// results.md (a Markdown table) and results.json.
//
//	cd bench && go run ./cmd/mosaik-bench --quick
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime/pprof"
	"runtime/trace"
	"strings"

	"github.com/libp2p/go-libp2p/gologshim"

	"github.com/mosaik-go/mosaik/bench/harness"
)

func main() {
	if harness.ChildMain() { // a generator process of the catalog/scale rows
		return
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "mosaik-bench:", err)
		os.Exit(1)
	}
}

func run() error {
	quick := flag.Bool("quick", false, "smaller counts, discovery up to N = 25 (under 2 minutes on 2 cores)")
	smoke := flag.Bool("smoke", false, "one tiny repetition of a few scenarios (for tests; the numbers mean nothing)")
	out := flag.String("out", "results", "directory for results.md and results.json")
	reps := flag.Int("reps", harness.MinReps, fmt.Sprintf("repetitions per row (at least %d)", harness.MinReps))
	only := flag.String("only", "", "run only the scenarios whose name matches this regular expression (e.g. 'throughput|latency')")
	systems := flag.String("systems", "", "run only the systems whose name matches this regular expression (for profiling; ratios need mosaik and its peers)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	measuredProfile := flag.String("measured-cpuprofile", "", "write a CPU profile of each measured section of the scenarios that mark theirs (collections sync, the catalog-scale CPU window) to PREFIX.<row>.<rep>.prof")
	heapProfile := flag.String("heapprofile", "", "write a heap profile where a scenario measures its live heap (the catalog-scale rows) to PREFIX.<row>.<rep>.heap")
	traceOut := flag.String("trace", "", "write an execution trace of the whole run to this file (go tool trace: where goroutines wait)")
	flag.Parse()
	// go-libp2p's own logs (shutdown noise such as "listener closed") would
	// tear the progress bar; the harness reports what matters itself.
	gologshim.SetDefaultHandler(slog.DiscardHandler)

	cfg := harness.Config{Mode: harness.Full, Reps: *reps, Progress: os.Stderr, Command: "go run ./cmd/mosaik-bench " + strings.Join(os.Args[1:], " ")}
	switch {
	case *smoke:
		cfg.Mode = harness.Smoke
	case *quick:
		cfg.Mode = harness.Quick
	}
	if *only != "" {
		re, err := regexp.Compile(*only)
		if err != nil {
			return fmt.Errorf("--only: %w", err)
		}
		cfg.Only = re
	}
	if *systems != "" {
		re, err := regexp.Compile(*systems)
		if err != nil {
			return fmt.Errorf("--systems: %w", err)
		}
		cfg.Systems = re
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	if *measuredProfile != "" {
		if *cpuprofile != "" {
			return fmt.Errorf("--measured-cpuprofile and --cpuprofile exclude each other (one CPU profile at a time)")
		}
		cfg.Measured = measuredProfiler(*measuredProfile)
	}
	if *heapProfile != "" {
		cfg.HeapMeasured = func(id string, rep int) {
			path := fmt.Sprintf("%s.%s.%d.heap", *heapProfile, strings.ReplaceAll(id, "/", "_"), rep+1)
			f, err := os.Create(path)
			if err == nil {
				err = errors.Join(pprof.WriteHeapProfile(f), f.Close())
			}
			if err != nil {
				fmt.Fprintln(os.Stderr, "mosaik-bench: heap profile:", err)
			}
		}
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if *traceOut != "" {
		f, err := os.Create(*traceOut)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := trace.Start(f); err != nil {
			return err
		}
		defer trace.Stop()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	res, err := harness.Run(ctx, cfg)
	if err != nil {
		return err
	}
	md, js := filepath.Join(*out, "results.md"), filepath.Join(*out, "results.json")
	if err := write(md, res.WriteMarkdown); err != nil {
		return err
	}
	if err := write(js, res.WriteJSON); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "wrote %s and %s (%.0f s)\n", md, js, res.Seconds)
	return nil
}

// measuredProfiler returns a harness.Config.Measured that writes a CPU
// profile of each measured section to prefix.<row>.<rep>.prof (a failure
// to profile is reported, not fatal: the measurement goes on).
func measuredProfiler(prefix string) func(id string, rep int) func() {
	return func(id string, rep int) func() {
		path := fmt.Sprintf("%s.%s.%d.prof", prefix, strings.ReplaceAll(id, "/", "_"), rep+1)
		f, err := os.Create(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, "mosaik-bench: measured profile:", err)
			return func() {}
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "mosaik-bench: measured profile:", err)
			_ = f.Close()
			return func() {}
		}
		return func() {
			pprof.StopCPUProfile()
			_ = f.Close()
		}
	}
}

func write(path string, f func(w io.Writer) error) error {
	file, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := f(file); err != nil {
		_ = file.Close()
		return err
	}
	return file.Close()
}
