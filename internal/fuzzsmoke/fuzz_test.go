package fuzzsmoke

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"go/version"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/mosaik-go/mosaik/internal/testutil"
)

// defaultFuzzTime is the -fuzztime of each target when MOSAIK_FUZZTIME is
// unset. The clock includes starting the fuzz workers and running the seed
// corpus (the baseline coverage): on a loaded two-core machine 300ms often
// ends before the baseline does, and go test then passes having checked
// that the instrumented binary builds and starts (the package's own tests
// run the seeds). It is short enough that the module's
// 53 targets (plus an instrumented build per package and a moment of
// start-up each) stay within about two minutes on two cores, inside the
// README test command's 20-minute budget. Set MOSAIK_FUZZTIME for a longer
// run.
const defaultFuzzTime = "300ms"

// buildAllowance bounds the build of a package's instrumented test binary,
// and what one fuzz run may spend beyond its -fuzztime (running the seed
// corpus and stopping the workers). Scaled by MOSAIK_TIME_FACTOR.
const buildAllowance = 3 * time.Minute

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// target is one fuzz function and the package whose tests declare it.
type target struct {
	pkg  string // import path
	dir  string // its directory
	name string // FuzzXxx
	deps int    // how many packages pkg imports, directly or not
}

// TestFuzzTargets runs every fuzz target of the module for MOSAIK_FUZZTIME
// each, one subtest per target, sequentially.
func TestFuzzTargets(t *testing.T) {
	fuzztime := fuzzTime(t)
	goBin := goBinary(t)
	root := moduleRoot(t, goBin)
	targets := discover(t, goBin, root)
	if len(targets) == 0 {
		t.Fatalf("no fuzz targets found under %s; the module declares several, so discovery is broken", root)
	}
	t.Logf("%d fuzz targets, -fuzztime=%s each", len(targets), fuzztime)

	env := childEnv()
	mod := modulePath(t, goBin, root)
	cacheDir := strings.TrimSpace(string(goOutput(t, goBin, root, "env", "GOCACHE")))
	bins := t.TempDir()
	builds := startBuilds(t.Context(), goBin, root, bins, targets, env)
	defer builds.wait() // no build outlives the test (goleak)
	for _, tg := range targets {
		t.Run(strings.TrimPrefix(strings.TrimPrefix(tg.pkg, mod), "/")+"/"+tg.name, func(t *testing.T) {
			bin := builds.binary(t, tg.pkg)
			if bin == "" {
				t.Fatalf("the fuzz test binary of %s did not build (see the first target of the package)", tg.pkg)
			}
			ctx, cancel := context.WithTimeout(t.Context(), budget(fuzztime))
			defer cancel()
			// The flags go test -fuzz passes to the binary it built; the
			// cache directory is go test's, so both share one corpus.
			cmd := exec.CommandContext(ctx, bin, "-test.paniconexit0",
				"-test.run=^$", "-test.fuzz=^"+tg.name+"$", "-test.fuzztime="+fuzztime,
				"-test.fuzzcachedir="+filepath.Join(cacheDir, "fuzz", tg.pkg))
			cmd.Dir = tg.dir // seeds and failing inputs live in the package's testdata/fuzz
			cmd.Env = env
			cmd.WaitDelay = 10 * time.Second // reap fuzz workers after a kill
			start := time.Now()
			out, err := cmd.CombinedOutput()
			if err != nil && ctx.Err() == nil && shutdownRace(tg.name, out) {
				t.Logf("%s %s: fuzzed for the full -fuzztime, then go test reported a bare "+
					"\"context deadline exceeded\" with no failing input; this is the fuzz "+
					"coordinator's shutdown race (go.dev/issue/75804, fixed in Go 1.27), "+
					"not a finding:\n%s", tg.pkg, tg.name, out)
				return
			}
			if err != nil {
				if ctx.Err() != nil {
					t.Fatalf("fuzzing %s %s did not finish in %v: %v\n%s",
						tg.pkg, tg.name, budget(fuzztime), err, out)
				}
				t.Fatalf("fuzzing %s %s: %v\n%s", tg.pkg, tg.name, err, out)
			}
			t.Logf("%s %s: ok in %v", tg.pkg, tg.name, time.Since(start).Round(time.Millisecond))
		})
	}
}

// concurrentBuilds is how many instrumented test binaries are built at
// once after the first. A build's last steps (compiling the test package,
// linking) use one core, so two builds, and the fuzzing of the packages
// already built, keep both cores of a small CI runner busy.
const concurrentBuilds = 2

// builds is the instrumented test binaries of the packages with fuzz
// targets, built in the background while the targets of the packages
// already built are fuzzed.
type builds struct {
	wg   sync.WaitGroup
	done map[string]*build // import path -> its build; written before wait
}

// build is one package's instrumented test binary, ready once done closes.
type build struct {
	done     chan struct{}
	bin      string // "" if the build failed
	log      string // the go command's output on failure
	took     time.Duration
	reported bool // the first target of the package logged the build
}

// startBuilds starts building the test binary of every package of targets
// and reorders targets so the packages come in build order. The package
// with the most dependencies is built alone first, so that the packages
// they share are compiled (with fuzzing instrumentation, into the build
// cache) once, not by two go commands at a time; the others follow,
// concurrentBuilds at a time, largest first.
func startBuilds(ctx context.Context, goBin, root, dir string, targets []target, env []string) *builds {
	b := &builds{done: map[string]*build{}}
	var order []string
	for _, tg := range targets {
		if b.done[tg.pkg] == nil {
			b.done[tg.pkg] = &build{done: make(chan struct{})}
			order = append(order, tg.pkg)
		}
	}
	sizes := map[string]int{}
	for _, tg := range targets {
		if _, ok := sizes[tg.pkg]; !ok {
			sizes[tg.pkg] = tg.deps
		}
	}
	slices.SortStableFunc(order, func(x, y string) int { return cmp.Compare(sizes[y], sizes[x]) })
	// A stable sort: the targets of a package stay in declaration order.
	slices.SortStableFunc(targets, func(x, y target) int {
		return cmp.Compare(slices.Index(order, x.pkg), slices.Index(order, y.pkg))
	})
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		sem := make(chan struct{}, concurrentBuilds)
		for i, pkg := range order {
			bd := b.done[pkg]
			if i == 0 {
				bd.bin, bd.log, bd.took = buildFuzzBinary(ctx, goBin, root, dir, pkg, env)
				close(bd.done)
				continue
			}
			sem <- struct{}{}
			b.wg.Add(1)
			go func() {
				defer b.wg.Done()
				defer func() { <-sem }()
				bd.bin, bd.log, bd.took = buildFuzzBinary(ctx, goBin, root, dir, pkg, env)
				close(bd.done)
			}()
		}
	}()
	return b
}

// binary waits for the test binary of pkg and returns it, or "" if its
// build failed. The first target of each package reports the build.
func (b *builds) binary(t *testing.T, pkg string) string {
	t.Helper()
	bd := b.done[pkg]
	<-bd.done // bounded: a build is killed after concurrentBuilds*buildAllowance
	if !bd.reported {
		bd.reported = true
		if bd.bin == "" {
			t.Errorf("go test -c -fuzz=. %s:\n%s", pkg, bd.log)
		} else {
			t.Logf("%s: fuzz test binary built in %v", pkg, bd.took.Round(time.Millisecond))
		}
	}
	return bd.bin
}

// wait returns once every build has ended.
func (b *builds) wait() { b.wg.Wait() }

// buildFuzzBinary builds the coverage-instrumented test binary of pkg once
// (go test -c -fuzz), so that its targets do not each pay a go command, a
// link and a cache check: that overhead was about four seconds per target
// against one second of fuzzing. It returns the binary, or "" and the go
// command's output, and how long the build took.
func buildFuzzBinary(ctx context.Context, goBin, root, dir, pkg string, env []string) (bin, log string, took time.Duration) {
	// Builds share the cores concurrentBuilds at a time, so each may take
	// that many times as long as one alone.
	limit := testutil.Scale(concurrentBuilds * buildAllowance)
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	bin = filepath.Join(dir, strings.NewReplacer("/", "_", ".", "_").Replace(pkg)+".test")
	cmd := exec.CommandContext(ctx, goBin, "test", "-c", "-fuzz=.", "-o", bin, pkg)
	cmd.Dir = root
	cmd.Env = env
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (did not finish in %v)", err, limit)
		}
		return "", fmt.Sprintf("%v\n%s", err, out), time.Since(start)
	}
	return bin, "", time.Since(start)
}

// fuzzTime returns MOSAIK_FUZZTIME, or defaultFuzzTime, after checking it
// has a form go test accepts: a positive duration or a count such as 500x.
func fuzzTime(t *testing.T) string {
	t.Helper()
	v := os.Getenv("MOSAIK_FUZZTIME")
	if v == "" {
		return defaultFuzzTime
	}
	if n, ok := strings.CutSuffix(v, "x"); ok {
		if c, err := strconv.Atoi(n); err == nil && c > 0 {
			return v
		}
	} else if d, err := time.ParseDuration(v); err == nil && d > 0 {
		return v
	}
	t.Fatalf("MOSAIK_FUZZTIME=%q: want a positive duration (5s) or count (1000x)", v)
	return ""
}

// shutdownRace reports whether out is go test -fuzz failing only because
// of go.dev/issue/75804: before Go 1.27 the coordinator can report its own
// -fuzztime deadline as the target's failure. Such a run ends with exactly
//
//	--- FAIL: FuzzXxx (5.02s)
//	    context deadline exceeded
//
// and writes no failing input. A real finding prints "Failing input
// written to", a failing seed names its subtest, a panic prints "panic:",
// so none of those match. From Go 1.27 on nothing is excused.
func shutdownRace(name string, out []byte) bool {
	if version.Compare(runtime.Version(), "go1.27") >= 0 && version.IsValid(runtime.Version()) {
		return false
	}
	if bytes.Contains(out, []byte("Failing input written to")) || bytes.Contains(out, []byte("panic:")) {
		return false
	}
	bare := regexp.MustCompile(`(?m)^--- FAIL: ` + regexp.QuoteMeta(name) +
		` \([0-9.]+s\)\n\s+context deadline exceeded\n(FAIL|exit status)`)
	return bare.Match(out) && bytes.Count(out, []byte("--- FAIL:")) == 1
}

// budget is how long one target's go command may run.
func budget(fuzztime string) time.Duration {
	d, err := time.ParseDuration(fuzztime)
	if err != nil { // a count such as 1000x: no time bound of its own
		d = 0
	}
	return d + testutil.Scale(buildAllowance)
}

// goBinary returns the go command of the toolchain running the tests, or
// the one on PATH.
func goBinary(t *testing.T) string {
	t.Helper()
	if root := runtime.GOROOT(); root != "" {
		p := filepath.Join(root, "bin", "go")
		if runtime.GOOS == "windows" {
			p += ".exe"
		}
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	p, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("no go command to fuzz with: %v", err)
	}
	return p
}

// childEnv is this process's environment with -race removed from GOFLAGS:
// fuzzing builds its own coverage-instrumented binary, and a race build of
// it is several times slower for no gain in a smoke run.
func childEnv() []string {
	env := os.Environ()
	for i, kv := range env {
		v, ok := strings.CutPrefix(kv, "GOFLAGS=")
		if !ok {
			continue
		}
		var keep []string
		for _, f := range strings.Fields(v) {
			if f != "-race" && f != "--race" && !strings.HasPrefix(f, "-race=") && !strings.HasPrefix(f, "--race=") {
				keep = append(keep, f)
			}
		}
		env[i] = "GOFLAGS=" + strings.Join(keep, " ")
	}
	return env
}

// goOutput runs the go command in dir and returns its standard output.
func goOutput(t *testing.T, goBin, dir string, args ...string) []byte {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), goBin, args...)
	cmd.Dir = dir
	cmd.Env = childEnv()
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
			stderr = ee.Stderr
		}
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	return out
}

// moduleRoot returns the directory of the go.mod governing this package.
func moduleRoot(t *testing.T, goBin string) string {
	t.Helper()
	gomod := strings.TrimSpace(string(goOutput(t, goBin, ".", "env", "GOMOD")))
	if gomod == "" || gomod == os.DevNull {
		t.Fatalf("go env GOMOD = %q: not inside a module", gomod)
	}
	return filepath.Dir(gomod)
}

// modulePath returns the module's import path.
func modulePath(t *testing.T, goBin, root string) string {
	t.Helper()
	return strings.TrimSpace(string(goOutput(t, goBin, root, "list", "-m")))
}

// fuzzFunc matches a fuzz target declaration at the start of a line; go
// test -fuzz only runs top-level FuzzXxx(*testing.F) functions.
var fuzzFunc = regexp.MustCompile(`(?m)^func (Fuzz[A-Z0-9_]\w*|Fuzz)\(\s*\w+\s+\*testing\.F\s*\)`)

// discover lists the fuzz targets of every package of the module, in
// go list order, by reading each package's internal and external test
// files.
func discover(t *testing.T, goBin, root string) []target {
	t.Helper()
	out := goOutput(t, goBin, root, "list", "-json=ImportPath,Dir,Deps,TestGoFiles,XTestGoFiles", "./...")
	var targets []target
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p struct {
			ImportPath   string
			Dir          string
			Deps         []string
			TestGoFiles  []string
			XTestGoFiles []string
		}
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("decoding go list -json: %v", err)
		}
		seen := map[string]bool{}
		for _, f := range append(p.TestGoFiles, p.XTestGoFiles...) {
			src, err := os.ReadFile(filepath.Join(p.Dir, f))
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range fuzzFunc.FindAllSubmatch(src, -1) {
				name := string(m[1])
				if seen[name] {
					// Internal and external test packages may each declare
					// it; go test then refuses to run either.
					t.Fatalf("%s declares %s twice", p.ImportPath, name)
				}
				seen[name] = true
				targets = append(targets, target{pkg: p.ImportPath, dir: p.Dir, name: name, deps: len(p.Deps)})
			}
		}
	}
	return targets
}

// TestShutdownRace pins what shutdownRace excuses: only the bare deadline
// report of go.dev/issue/75804, never a finding.
func TestShutdownRace(t *testing.T) {
	const race = `fuzz: elapsed: 3s, execs: 100829 (33600/sec), new interesting: 37 (total: 88)
fuzz: elapsed: 4s, execs: 100829 (0/sec), new interesting: 37 (total: 88)
--- FAIL: FuzzReadProto (4.01s)
    context deadline exceeded
FAIL
exit status 1
FAIL	github.com/mosaik-go/mosaik/internal/wire	4.017s
`
	const finding = `fuzz: elapsed: 1s, execs: 1000 (1000/sec), new interesting: 1 (total: 2)
--- FAIL: FuzzReadProto (1.20s)
    --- FAIL: FuzzReadProto (0.00s)
        wire_test.go:88: frame of 5000 bytes above the cap

    Failing input written to testdata/fuzz/FuzzReadProto/0123456789abcdef
    To re-run:
    go test -run=FuzzReadProto/0123456789abcdef
FAIL
exit status 1
`
	const seed = `--- FAIL: FuzzReadProto (0.00s)
    --- FAIL: FuzzReadProto/seed#1 (0.00s)
        wire_test.go:88: frame of 5000 bytes above the cap
FAIL
exit status 1
`
	const other = `--- FAIL: FuzzFrameData (4.01s)
    context deadline exceeded
FAIL
`
	excused := version.Compare(runtime.Version(), "go1.27") < 0 || !version.IsValid(runtime.Version())
	for _, tc := range []struct {
		name, out string
		want      bool
	}{
		{"race", race, excused},
		{"finding", finding, false},
		{"seed", seed, false},
		{"other target", other, false},
	} {
		if got := shutdownRace("FuzzReadProto", []byte(tc.out)); got != tc.want {
			t.Errorf("%s: shutdownRace = %v, want %v", tc.name, got, tc.want)
		}
	}
}
