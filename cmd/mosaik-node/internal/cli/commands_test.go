package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// mainOut runs Main and returns its exit code, stdout and stderr.
func mainOut(t *testing.T, vars map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := Main(context.Background(), args, env(&out, &errOut, vars))
	return code, out.String(), errOut.String()
}

func TestHelp_DescriptionsGroupsAndExamples(t *testing.T) {
	code, out, _ := mainOut(t, nil, "--help")
	if code != 0 {
		t.Fatalf("--help: exit %d", code)
	}
	for _, c := range []string{"run", "produce", "consume", "catalog", "map", "demo", "keygen", "id", "ticket", "config", "version", "completion"} {
		if !strings.Contains(out, "\n  "+c+" ") {
			t.Errorf("--help does not list %q:\n%s", c, out)
		}
	}
	for _, want := range []string{"Run a node until SIGINT or SIGTERM", "Send every stdin line", "Examples:"} {
		if !strings.Contains(out, want) {
			t.Errorf("--help lacks %q", want)
		}
	}
	for _, args := range [][]string{{"help", "run"}, {"run", "--help"}, {"help", "produce"}, {"help", "consume"}, {"help", "catalog"}, {"help", "map", "put"}, {"help", "config", "show"}, {"help", "ticket", "issue"}, {"help", "keygen"}} {
		code, out, _ := mainOut(t, nil, args...)
		if code != 0 {
			t.Errorf("%q: exit %d", args, code)
		}
		if !strings.Contains(out, "Usage:") || !strings.Contains(out, "Examples:\n") || !strings.Contains(out[strings.Index(out, "Examples:"):], "mosaik-node ") {
			t.Errorf("%q: no usage or examples:\n%s", args, out)
		}
	}
	_, out, _ = mainOut(t, nil, "help", "run")
	for _, want := range []string{
		"Run a node: join the network",
		"Network flags:", "Identity and storage flags:", "Collections flags:", "Status page and metrics flags:", "Logging and configuration flags:",
		`--log-level string    log level: debug|info|warn|error (default "info")`,
		"--init", "--data-dir",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("help run lacks %q:\n%s", want, out)
		}
	}
	_, out, _ = mainOut(t, nil, "help", "produce")
	if !strings.Contains(out, "Stream flags:") || !strings.Contains(out, "4 MiB") || !strings.Contains(out, "--online-min int") {
		t.Errorf("help produce lacks its stream flags or the line limit:\n%s", out)
	}
	for _, want := range []string{"--replay N", "--replay-bytes size", "(default 64MiB)", "--replay-age duration", "(default 1m0s)", "produce logs --network ops --replay 100000"} {
		if !strings.Contains(out, want) {
			t.Errorf("help produce lacks %q:\n%s", want, out)
		}
	}
	_, out, _ = mainOut(t, nil, "help", "consume")
	for _, want := range []string{"--position-file file", "at most every 100 ms", `"positions"`, "--position-file logs.pos"} {
		if !strings.Contains(out, want) {
			t.Errorf("help consume lacks %q:\n%s", want, out)
		}
	}
}

func TestCompletion_EveryShell(t *testing.T) {
	for _, sh := range []string{"bash", "zsh", "fish"} {
		code, out, errOut := mainOut(t, nil, "completion", sh)
		if code != 0 || len(out) < 1000 || !strings.Contains(out, "mosaik-node") {
			t.Errorf("completion %s: exit %d, %d bytes (stderr %q)", sh, code, len(out), errOut)
		}
	}
	// The hidden __complete command is what the scripts call.
	_, out, _ := mainOut(t, nil, "__complete", "run", "--log-format", "")
	if !strings.Contains(out, "json") || !strings.Contains(out, "text") {
		t.Errorf("run --log-format completes to %q", out)
	}
	_, out, _ = mainOut(t, nil, "__complete", "")
	if !strings.Contains(out, "produce") || !strings.Contains(out, "map") {
		t.Errorf("commands complete to %q", out)
	}
}

// configShow runs config show --json and returns key → row.
func configShow(t *testing.T, vars map[string]string, args ...string) map[string]configRow {
	t.Helper()
	code, out, errOut := mainOut(t, vars, append([]string{"config", "show", "--json"}, args...)...)
	if code != 0 {
		t.Fatalf("config show %q: exit %d: %s", args, code, errOut)
	}
	var rows []configRow
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("config show --json: %v\n%s", err, out)
	}
	m := map[string]configRow{}
	for _, r := range rows {
		m[r.Key] = r
	}
	return m
}

// TestConfigShow_Precedence checks flags > environment > file > defaults,
// with the file named by MOSAIK_CONFIG or by --config.
func TestConfigShow_Precedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "node.toml")
	data := "network = \"from-file\"\ntags = \"file\"\nlog_level = \"warn\"\nprofile = \"fast\"\nbootstrap = [\"/ip4/127.0.0.1/tcp/1/p2p/12D3KooWGBfKqTqgYEW8ZBzp3HqW8vrVDMmw4uGwj2ov2dHd3DbC\"]\n"
	if err := os.WriteFile(file, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{"MOSAIK_CONFIG": file, "MOSAIK_NETWORK": "from-env", "MOSAIK_TAGS": "env", "XDG_DATA_HOME": filepath.Join(dir, "xdg")}
	rows := configShow(t, vars, "--tags", "flag")
	for key, want := range map[string]configRow{
		"tags":       {Value: "flag", Source: "flag"},
		"network":    {Value: "from-env", Source: "env MOSAIK_NETWORK"},
		"log-level":  {Value: "warn", Source: "file " + file},
		"profile":    {Value: "fast", Source: "file " + file},
		"config":     {Value: file, Source: "env MOSAIK_CONFIG"},
		"log-format": {Value: "text", Source: "default"},
		"key":        {Value: filepath.Join(dir, "xdg", "mosaik", "node.key"), Source: "default (in the data directory)"},
		"data-dir":   {Value: filepath.Join(dir, "xdg", "mosaik")},
	} {
		got := rows[key]
		if got.Value != want.Value || want.Source != "" && got.Source != want.Source {
			t.Errorf("%s = %q from %q, want %q from %q", key, got.Value, got.Source, want.Value, want.Source)
		}
	}
	if !strings.Contains(rows["listen"].Value, "/tcp/4801") || !strings.HasPrefix(rows["listen"].Source, "default") {
		t.Errorf("listen = %+v, want run's stable port", rows["listen"])
	}
	// --config overrides MOSAIK_CONFIG; the flags override both.
	other := filepath.Join(dir, "other.yaml")
	if err := os.WriteFile(other, []byte("network: from-other\nlog-format: json\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	rows = configShow(t, map[string]string{"MOSAIK_CONFIG": file}, "--config", other, "--log-format", "text")
	if r := rows["network"]; r.Value != "from-other" || r.Source != "file "+other {
		t.Errorf("network with --config = %+v", r)
	}
	if r := rows["log-format"]; r.Value != "text" || r.Source != "flag" {
		t.Errorf("log-format = %+v, want the flag's", r)
	}
	if r := rows["config"]; r.Value != other || r.Source != "flag" {
		t.Errorf("config = %+v", r)
	}
	// The table form has a header and one line a key.
	_, out, _ := mainOut(t, vars, "config", "show")
	if !strings.HasPrefix(out, "KEY") || !strings.Contains(out, "env MOSAIK_NETWORK") {
		t.Errorf("config show:\n%s", out)
	}
	// A secret is not printed.
	rows = configShow(t, map[string]string{"MOSAIK_STATUS_TOKEN": "s3cret"})
	if rows["status-token"].Value == "s3cret" {
		t.Error("config show prints the status token")
	}
}

// TestRun_PersistentIdentity checks that run without --key keeps its
// identity in the data directory, says so once, and that run --init
// creates it without starting a node.
func TestRun_PersistentIdentity(t *testing.T) {
	xdg := t.TempDir()
	vars := map[string]string{"XDG_DATA_HOME": xdg}
	code, out, errOut := mainOut(t, vars, "run", "--init")
	if code != 0 {
		t.Fatalf("run --init: exit %d: %s", code, errOut)
	}
	key := filepath.Join(xdg, "mosaik", "node.key")
	f := strings.Split(strings.TrimSpace(out), "\t")
	if len(f) != 3 || !strings.HasPrefix(f[0], "12D3KooW") || f[1] != key || f[2] != "created" {
		t.Fatalf("run --init printed %q", out)
	}
	if st, err := os.Stat(filepath.Dir(key)); err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("data dir: %v %v", st, err)
	}
	_, again, _ := mainOut(t, vars, "run", "--init")
	if again != f[0]+"\t"+key+"\texisting\n" {
		t.Fatalf("second run --init printed %q", again)
	}
	// run uses that identity and logs its "node running" line with it.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr lockedBuf
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, []string{"run", "--network", "x", "--listen", "/ip4/127.0.0.1/tcp/0", "--log-level", "info"},
			Env{Stdin: strings.NewReader(""), Stdout: &stdout, Stderr: &stderr, Getenv: env(nil, nil, vars).Getenv})
	}()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(stderr.String(), "node running") {
		select {
		case c := <-done:
			t.Fatalf("run exited %d: %s", c, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("run did not start")
		}
		time.Sleep(20 * time.Millisecond) // polling the log
	}
	cancel()
	if c := <-done; c != 0 {
		t.Fatalf("exit %d", c)
	}
	if s := stderr.String(); !strings.Contains(s, "peer="+f[0]) || strings.Contains(s, "first start") {
		t.Fatalf("run did not reuse the identity quietly:\n%s", s)
	}
}

func TestRun_FirstStartLine(t *testing.T) {
	xdg := t.TempDir()
	var c nodeCmd
	c.name = "run"
	var b bytes.Buffer
	if err := c.persistentDefaults(func(k string) string { return map[string]string{"XDG_DATA_HOME": xdg}[k] }, stderrLoggerAt(&b)); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(b.String(), "\n"); n != 1 || !strings.Contains(b.String(), "first start") || !strings.Contains(b.String(), "4801") {
		t.Fatalf("first start logged %d lines: %q", n, b.String())
	}
	if len(c.nf.listen) != 2 || !c.nf.stablePort || c.nf.key != filepath.Join(xdg, "mosaik", "node.key") {
		t.Fatalf("defaults: listen %v key %q", c.nf.listen, c.nf.key)
	}
	b.Reset()
	c2 := nodeCmd{name: "run"}
	_ = c2.persistentDefaults(func(k string) string { return map[string]string{"XDG_DATA_HOME": xdg}[k] }, stderrLoggerAt(&b))
	if b.Len() != 0 {
		t.Fatalf("second start logged %q", b.String())
	}
	// HOME is the fallback of XDG_DATA_HOME.
	if d := defaultDataDir(func(k string) string { return map[string]string{"HOME": "/home/u"}[k] }); d != "/home/u/.local/share/mosaik" {
		t.Fatalf("defaultDataDir from HOME = %q", d)
	}
}

// TestMain_JSONUsageError checks that a usage error of a command asked
// for JSON logs is one JSON line, even before its flags were parsed.
func TestMain_JSONUsageError(t *testing.T) {
	for _, tc := range []struct {
		vars map[string]string
		args []string
	}{
		{nil, []string{"run", "--log-format", "json", "--bogus"}},
		{nil, []string{"run", "--log-format=json", "--network", "x", "--profile", "slow"}},
		{map[string]string{"MOSAIK_LOG_FORMAT": "json"}, []string{"produce", "--network", "x"}},
	} {
		code, out, errOut := mainOut(t, tc.vars, tc.args...)
		var rec map[string]any
		for _, l := range strings.Split(strings.TrimSuffix(errOut, "\n"), "\n") {
			rec = nil
			if err := json.Unmarshal([]byte(l), &rec); err != nil {
				t.Errorf("%q: stderr line %q is not JSON", tc.args, l)
			}
		}
		if code != 2 || out != "" || rec["level"] != "ERROR" || rec["exit"] != 2.0 {
			t.Errorf("%q: exit %d, stderr %q", tc.args, code, errOut)
		}
	}
}
