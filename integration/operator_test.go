//go:build linux

package integration

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/streams"
)

// freePort returns a TCP port of 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}

func TestCLI_ListenPortInUse(t *testing.T) {
	// A port held by another program.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	taken := l.Addr().String()
	p := start(t, "run on a taken port", nil, "run", "--network", "it-port", "--listen", fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", l.Addr().(*net.TCPAddr).Port))
	if code := p.wait(20 * time.Second); code != 2 {
		t.Fatalf("exit %d, want 2", code)
	}
	if !strings.Contains(p.stderr.String(), taken) {
		t.Fatalf("stderr does not name %s:\n%s", taken, p.stderr.String())
	}

	// A port held by another node: go-libp2p listens with SO_REUSEPORT,
	// which would let the second node share it.
	port := freePort(t)
	ma := fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", port)
	first, _ := runNode(t, "first", "it-port", "--listen", ma)
	second := start(t, "second", nil, "run", "--network", "it-port", "--listen", ma)
	if code := second.wait(20 * time.Second); code != 2 {
		t.Fatalf("second node on %s: exit %d, want 2", ma, code)
	}
	if want := fmt.Sprintf("127.0.0.1:%d", port); !strings.Contains(second.stderr.String(), want) {
		t.Fatalf("stderr does not name %s:\n%s", want, second.stderr.String())
	}
	select {
	case <-first.done:
		t.Fatal("the first node exited")
	default:
	}
}

func TestCLI_CatalogUnreachableBootstrap(t *testing.T) {
	_, id := keygen(t, t.TempDir(), "nobody")
	boot := fmt.Sprintf("/ip4/127.0.0.1/tcp/%d/p2p/%s", freePort(t), id) // closed: nobody listens
	c := start(t, "catalog", nil, append([]string{"catalog", "--network", "it-unreachable", "--bootstrap", boot, "--wait", "1s"}, listen()...)...)
	if code := c.wait(30 * time.Second); code == 0 {
		t.Fatalf("catalog exit 0 with an unreachable bootstrap; stdout:\n%s", c.stdout.String())
	}
	errOut := c.stderr.String()
	if !strings.Contains(errOut, "bootstrap") || !strings.Contains(errOut, boot) || !strings.Contains(errOut, "connection refused") {
		t.Fatalf("stderr does not give the reason:\n%s", errOut)
	}
	if out := c.stdout.String(); out != "" {
		t.Fatalf("catalog printed %q", out)
	}
}

// stdinPipe is an OS pipe for a process's stdin: with an *os.File the
// child reads it directly (an io.Pipe would make exec's Wait wait for the
// copying goroutine, so for the writer to close, after the process
// exited).
func stdinPipe(t *testing.T) (*os.File, *os.File) {
	t.Helper()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pr.Close(); pw.Close() })
	return pr, pw
}

// TestCLI_SignalExit checks that run, produce (blocked on a stdin that
// never writes) and consume each exit on the first SIGINT or SIGTERM.
// The issue asks for 2 s; the bound here is generous for a shared
// machine, and the time taken is logged.
func TestCLI_SignalExit(t *testing.T) {
	_, boot := runNode(t, "boot", "it-signal")
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		for _, cmd := range [][]string{
			{"run"},
			{"produce", "s"},
			{"consume", "s"},
		} {
			name := fmt.Sprintf("%s %v", cmd[0], sig)
			t.Run(name, func(t *testing.T) {
				pr, pw := stdinPipe(t) // open and never written: produce blocks reading it
				defer pw.Close()
				args := append([]string{cmd[0], "--network", "it-signal", "--bootstrap", boot}, listen()...)
				p := start(t, name, pr, append(args, cmd[1:]...)...)
				testutil.Eventually(t, 20*time.Second, func() bool {
					return strings.Contains(p.stderr.String(), "node running")
				}, "%s never started", name)
				p.signal(sig)
				sent := time.Now()
				if code := p.wait(10 * time.Second); code != 0 {
					t.Fatalf("exit %d after %v, want 0", code, sig)
				}
				t.Logf("%s exited %v after %v", cmd[0], time.Since(sent).Round(time.Millisecond), sig)
			})
		}
	}
}

// TestCLI_SecondSignal checks that a second signal exits at once with
// 128 + its number. Only a process that had exited before the second
// signal could be sent may exit 0 (a second signal ignored would end with
// the first one's clean shutdown, 0, as well).
func TestCLI_SecondSignal(t *testing.T) {
	pr, pw := stdinPipe(t)
	defer pw.Close()
	// An idle node shuts down in a few milliseconds: the race runtime's
	// exit sleep (its default second, which the suite turns off) keeps
	// the process there for the second signal.
	p := startEnv(t, "produce", pr, []string{"GORACE=atexit_sleep_ms=1000"}, nodeBinary(t),
		append([]string{"produce", "--network", "it-signal2"}, append(listen(), "s")...)...)
	testutil.Eventually(t, 20*time.Second, func() bool {
		return strings.Contains(p.stderr.String(), "node running")
	}, "produce never started")
	p.signal(syscall.SIGINT)
	testutil.Eventually(t, 10*time.Second, func() bool {
		return strings.Contains(p.stderr.String(), "shutting down")
	}, "produce did not acknowledge the first SIGINT")
	err := p.cmd.Process.Signal(syscall.SIGINT)
	exited := errors.Is(err, os.ErrProcessDone)
	if err != nil && !exited {
		t.Fatalf("second SIGINT: %v", err)
	}
	code := p.wait(10 * time.Second)
	if code != 130 && !(exited && code == 0) {
		t.Fatalf("exit %d after two SIGINTs (process gone before the second: %v), want 130", code, exited)
	}
	t.Logf("exit %d", code)
}

func TestCLI_Version(t *testing.T) {
	p := start(t, "version", nil, "--version")
	if code := p.wait(10 * time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
	out := p.stdout.String()
	for _, want := range []string{runtime.Version(), string(streams.ProtocolID), catalog.ProtocolVersion, "commit"} {
		if !strings.Contains(out, want) {
			t.Errorf("--version does not print %q:\n%s", want, out)
		}
	}
	t.Logf("%s", out)
}

// readyRE matches the ready line; slog's text handler quotes the addrs
// only when there are several (they contain spaces).
var readyRE = regexp.MustCompile(`msg="node running" peer=(\S+) .*addrs=("[^"]+"|\S+)`)

// TestCLI_ReadyLine starts a node, takes its addresses from its ready
// line and bootstraps a catalog from one of them (catalog fails when its
// bootstrap is unreachable).
func TestCLI_ReadyLine(t *testing.T) {
	p := start(t, "run", nil, append([]string{"run", "--network", "it-ready", "--listen", "/ip4/127.0.0.1/udp/0/quic-v1"}, listen()...)...)
	var m []string
	testutil.Eventually(t, 20*time.Second, func() bool {
		m = readyRE.FindStringSubmatch(p.stderr.String())
		return m != nil
	}, "no ready line with the peer and its addrs")
	addrs := strings.Fields(strings.Trim(m[2], `"`))
	if len(addrs) != 2 {
		t.Fatalf("ready line does not have the two addresses (TCP and QUIC): %q", m[0])
	}
	for _, a := range addrs {
		pi, err := peer.AddrInfoFromString(a)
		if err != nil {
			t.Fatalf("ready line address %q: %v", a, err)
		}
		if pi.ID.String() != m[1] {
			t.Fatalf("address %q is of %s, the line's peer is %s", a, pi.ID, m[1])
		}
	}
	c := start(t, "catalog", nil, append([]string{"catalog", "--network", "it-ready", "--bootstrap", addrs[0], "--json", "--wait", "2s"}, listen()...)...)
	if code := c.wait(30 * time.Second); code != 0 {
		t.Fatalf("catalog bootstrapped from the ready line: exit %d", code)
	}
}

func TestCLI_CorruptKeyFile(t *testing.T) {
	corrupt := filepath.Join(t.TempDir(), "corrupt.key")
	if err := os.WriteFile(corrupt, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := start(t, "run with a corrupt key", nil, "run", "--network", "it-key", "--key", corrupt)
	if code := p.wait(20 * time.Second); code != 2 {
		t.Fatalf("exit %d, want 2", code)
	}
	if errOut := p.stderr.String(); !strings.Contains(errOut, corrupt) || !strings.Contains(errOut, "ed25519 private key") {
		t.Fatalf("stderr does not name the file and the expected format:\n%s", errOut)
	}
}

// TestCLI_TicketInspect checks the exit codes of ticket inspect (0 valid,
// 1 not valid, 2 unreadable) and the startup warning for a ticket of
// another network.
func TestCLI_TicketInspect(t *testing.T) {
	dir := t.TempDir()
	issuerKey, _ := keygen(t, dir, "issuer")
	holderKey, holderID := keygen(t, dir, "holder")
	ticket := filepath.Join(dir, "holder.ticket")
	if p := start(t, "ticket issue", nil, "ticket", "issue", "--issuer-key", issuerKey, "--subject", holderID, "--network", "it-inspect", "--ttl", "1h", "--out", ticket); p.wait(10*time.Second) != 0 {
		t.Fatal("ticket issue failed")
	}
	tampered := filepath.Join(dir, "tampered.ticket")
	b, err := os.ReadFile(ticket)
	if err != nil {
		t.Fatal(err)
	}
	var tf struct {
		Format string `json:"format"`
		Class  string `json:"class"`
		Data   []byte `json:"data"`
	}
	if err := json.Unmarshal(b, &tf); err != nil {
		t.Fatal(err)
	}
	tf.Data[len(tf.Data)-1] ^= 1 // the sealed envelope ends with its signature
	if b, err = json.Marshal(tf); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tampered, b, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{ticket}, 0, "valid now   yes"},
		{[]string{"--network", "it-inspect", ticket}, 0, "subject     " + holderID},
		{[]string{"--network", "other", ticket}, 1, "valid now   no: another network"},
		{[]string{tampered}, 1, "valid now   no: bad signature"},
		{[]string{filepath.Join(dir, "missing.ticket")}, 2, ""},
	} {
		p := start(t, "ticket inspect", nil, append([]string{"ticket", "inspect"}, c.args...)...)
		if code := p.wait(10 * time.Second); code != c.code || !strings.Contains(p.stdout.String(), c.want) {
			t.Errorf("ticket inspect %q: exit %d, want %d and %q; stdout:\n%s\nstderr:\n%s", c.args, code, c.code, c.want, p.stdout.String(), p.stderr.String())
		}
	}

	p := start(t, "run with another network's ticket", nil, append([]string{"run", "--network", "it-inspect-other", "--key", holderKey, "--ticket", ticket}, listen()...)...)
	testutil.Eventually(t, 20*time.Second, func() bool {
		s := p.stderr.String()
		return strings.Contains(s, "level=WARN") && strings.Contains(s, "another network") && strings.Contains(s, "subject="+holderID)
	}, "no startup warning naming the ticket's network and fields")
	p.signal(syscall.SIGTERM)
	if code := p.wait(20 * time.Second); code != 0 {
		t.Fatalf("run exit %d after SIGTERM", code)
	}
}
