//go:build linux

package integration

import (
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mosaik-go/mosaik/internal/testutil"
)

// TestCLI_HelpAndCompletion checks the binary's help (descriptions, flag
// groups with defaults, examples) and its completion scripts.
func TestCLI_HelpAndCompletion(t *testing.T) {
	t.Parallel() // with the other operator-log tests, after the serial ones (processes mostly wait)
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"--help"}, []string{"Node commands:", "run ", "Run a node until SIGINT or SIGTERM", "Examples:"}},
		{[]string{"help", "run"}, []string{"Run a node: join the network", "Network flags:", `(default "info")`, "Examples:\n  mosaik-node run --network"}},
		{[]string{"help", "produce"}, []string{"4 MiB", "Stream flags:", "Examples:"}},
		{[]string{"completion", "bash"}, []string{"mosaik-node"}},
		{[]string{"completion", "zsh"}, []string{"mosaik-node"}},
		{[]string{"completion", "fish"}, []string{"mosaik-node"}},
	} {
		p := start(t, strings.Join(c.args, " "), nil, c.args...)
		if code := p.wait(10 * time.Second); code != 0 {
			t.Errorf("%q: exit %d", c.args, code)
		}
		for _, w := range c.want {
			if !strings.Contains(p.stdout.String(), w) {
				t.Errorf("%q: stdout lacks %q", c.args, w)
			}
		}
	}
}

var peerRE = regexp.MustCompile(`msg="node running" peer=(\S+)`)

// TestCLI_PersistentIdentity starts run twice without --key on one data
// directory: the first start creates the identity and says so in one
// line, the second reuses it quietly.
func TestCLI_PersistentIdentity(t *testing.T) {
	t.Parallel() // with the other operator-log tests, after the serial ones (processes mostly wait)
	xdg := "XDG_DATA_HOME=" + t.TempDir()
	var ids []string
	for i := range 2 {
		p := startEnv(t, "run", nil, []string{xdg}, nodeBinary(t), append([]string{"run", "--network", "it-persist"}, listen()...)...)
		var m []string
		testutil.Eventually(t, 20*time.Second, func() bool {
			m = peerRE.FindStringSubmatch(p.stderr.String())
			return m != nil
		}, "run %d: no ready line", i)
		ids = append(ids, m[1])
		if n := strings.Count(p.stderr.String(), "first start"); n != 1-i {
			t.Errorf("run %d: %d first-start lines, want %d", i, n, 1-i)
		}
		p.signal(syscall.SIGTERM)
		if code := p.wait(20 * time.Second); code != 0 {
			t.Fatalf("run %d: exit %d", i, code)
		}
	}
	if ids[0] != ids[1] {
		t.Fatalf("restarted node has peer %s, was %s", ids[1], ids[0])
	}
}
