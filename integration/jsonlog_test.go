//go:build linux

package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mosaik-go/mosaik/internal/testutil"
)

// jsonLines parses every stderr line as one JSON object and fails the
// test on the first that is not.
func jsonLines(t *testing.T, stderr string) []map[string]any {
	t.Helper()
	var recs []map[string]any
	for i, l := range lines(stderr) {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("stderr line %d is not JSON (%v): %q", i+1, err, l)
		}
		recs = append(recs, m)
	}
	return recs
}

// TestCLI_JSONLogs runs a node with --log-format json, go-libp2p's and
// go-log's loggers at debug (GOLOG_LOG_LEVEL) and a QUIC listener, stops
// it with SIGINT, and checks that every stderr line is a JSON object: the
// node's own, go-libp2p's (slog, fx included), kad-dht's (go-log's zap),
// the signal notice, and the ready line as a record with the peer and
// its /p2p/ addresses. A failing command's exit error is JSON too.
func TestCLI_JSONLogs(t *testing.T) {
	t.Parallel() // with the other operator-log tests, after the serial ones (processes mostly wait)
	args := []string{"run", "--network", "it-json", "--log-format", "json", "--log-level", "debug",
		"--listen", "/ip4/127.0.0.1/tcp/0", "--listen", "/ip4/127.0.0.1/udp/0/quic-v1",
		// unreachable: the bootstrap loop logs its failures
		"--bootstrap", "/ip4/127.0.0.1/tcp/1/p2p/12D3KooWGBfKqTqgYEW8ZBzp3HqW8vrVDMmw4uGwj2ov2dHd3DbC"}
	p := startEnv(t, "run json", nil, []string{"GOLOG_LOG_LEVEL=debug"}, nodeBinary(t), args...)
	testutil.Eventually(t, 20*time.Second, func() bool {
		return strings.Contains(p.stderr.String(), `"msg":"node running"`)
	}, "no JSON ready line")
	p.signal(syscall.SIGINT)
	if code := p.wait(20 * time.Second); code != 0 {
		t.Fatalf("exit %d after SIGINT", code)
	}
	recs := jsonLines(t, p.stderr.String())
	var ready map[string]any
	loggers := map[string]bool{}
	notice := false
	for _, r := range recs {
		if r["msg"] == "node running" {
			ready = r
		}
		if l, ok := r["logger"].(string); ok {
			loggers[l] = true
		}
		if m, _ := r["msg"].(string); strings.Contains(m, "shutting down") {
			notice = true
		}
	}
	if ready == nil {
		t.Fatal("no ready record")
	}
	peerID, _ := ready["peer"].(string)
	addrs, _ := ready["addrs"].(string)
	if !strings.HasPrefix(peerID, "12D3KooW") || len(strings.Fields(addrs)) != 2 || !strings.Contains(addrs, "/p2p/"+peerID) {
		t.Fatalf("ready record %v lacks the peer or its two /p2p/ addresses", ready)
	}
	if !notice {
		t.Error("the signal notice is not a JSON record")
	}
	if len(loggers) == 0 {
		t.Error("no go-libp2p or go-log record: the test does not cover them")
	}
	t.Logf("%d JSON lines; loggers %v", len(recs), loggers)

	corrupt := filepath.Join(t.TempDir(), "corrupt.key")
	if err := os.WriteFile(corrupt, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := start(t, "run json corrupt key", nil, "run", "--network", "it-json", "--log-format", "json", "--key", corrupt)
	if code := bad.wait(20 * time.Second); code != 2 {
		t.Fatalf("corrupt key: exit %d, want 2", code)
	}
	recs = jsonLines(t, bad.stderr.String())
	if last := recs[len(recs)-1]; last["level"] != "ERROR" || !strings.Contains(last["msg"].(string), corrupt) {
		t.Fatalf("last record %v is not the exit error naming the file", last)
	}
}
