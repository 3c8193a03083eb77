//go:build linux

package integration

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/mosaik-go/mosaik/internal/testutil"
)

// TestBenchHarness_Smoke checks that the side-by-side benchmark harness
// (the nested module in ../bench, outside this module's ./...) starts, runs
// one tiny repetition of a few scenarios and writes a table with a row for
// every system plus a JSON file that parses. It is the only part of the
// harness in the CI path; its numbers mean nothing.
func TestBenchHarness_Smoke(t *testing.T) {
	// Parallel with the package's other parallel tests (two at a time):
	// the longest test of the package, its own module and processes, no
	// shared port or file; the short parallel tests run beside it.
	t.Parallel()
	out := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Scale(4*time.Minute))
	defer cancel()
	// go build, then run: what `go run ./cmd/mosaik-bench --smoke` does, but
	// a timeout then kills the harness itself rather than only the go
	// command.
	gobin := testutil.GoTool()
	bin := filepath.Join(t.TempDir(), "mosaik-bench")
	build := exec.CommandContext(ctx, gobin, "build", "-o", bin, "./cmd/mosaik-bench")
	build.Dir = filepath.Join("..", "bench")
	if log, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building mosaik-bench: %v\n%s", err, tail(string(log), 4000))
	}
	cmd := exec.CommandContext(ctx, bin, "--smoke", "--out", out)
	cmd.Env = append(os.Environ(), "MOSAIK_MDNS=false")
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	log, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("mosaik-bench --smoke: %v (after %v)\n%s", err, time.Since(start), tail(string(log), 4000))
	}
	t.Logf("mosaik-bench --smoke took %v", time.Since(start))

	md, err := os.ReadFile(filepath.Join(out, "results.md"))
	if err != nil {
		t.Fatal(err)
	}
	js, err := os.ReadFile(filepath.Join(out, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var res struct {
		Rows []struct {
			Scenario, Metric, System string
			Reps                     int
		} `json:"rows"`
		Targets []struct{ Goal string } `json:"targets"`
	}
	if err := json.Unmarshal(js, &res); err != nil {
		t.Fatalf("results.json: %v", err)
	}
	if len(res.Targets) == 0 {
		t.Error("results.json has no targets")
	}
	for _, sys := range []string{"mosaik", "raw", "gossipsub", "nats", "memberlist"} {
		row := regexp.MustCompile(`(?m)^\|[^|\n]*\|[^|\n]*\| (\*\*)?` + sys + `(\*\*)? \|`)
		if !row.Match(md) {
			t.Errorf("results.md has no table row for %s:\n%s", sys, md)
		}
		found := false
		for _, r := range res.Rows {
			found = found || (r.System == sys && r.Reps > 0)
		}
		if !found {
			t.Errorf("results.json has no row for %s", sys)
		}
	}
}
