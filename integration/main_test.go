//go:build linux

package integration

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/mosaik-go/mosaik/internal/testutil"
)

// binDir holds the mosaik-node that nodeBinary builds.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "mosaik-it-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	if code == 0 {
		// As goleak.VerifyTestMain, after the clean-up: the tests' own
		// goroutines (process waiters, feeders, dialers) must be gone.
		if err := goleak.Find(testutil.LeakOptions()...); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: errors on successful test run: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

var (
	buildOnce sync.Once
	buildErr  error
	buildLog  []byte
)

// nodeBinary returns the mosaik-node built, with -race, once for the
// package's tests, by the first test that runs one. It is built on first
// use rather than in TestMain so that a run that selects no test (the
// README's benchmark pass, -run '^$') does not link it.
func nodeBinary(t *testing.T) string {
	t.Helper()
	binary := filepath.Join(binDir, "mosaik-node")
	buildOnce.Do(func() {
		build := exec.Command(testutil.GoTool(), "build", "-race", "-o", binary, "../cmd/mosaik-node")
		// -race needs cgo, also under the README's static benchmark pass.
		build.Env = append(os.Environ(), "CGO_ENABLED=1")
		buildLog, buildErr = build.CombinedOutput()
	})
	if buildErr != nil {
		t.Fatalf("building mosaik-node: %v\n%s", buildErr, buildLog)
	}
	return binary
}

// proc is a running mosaik-node.
type proc struct {
	t      *testing.T
	name   string
	cmd    *exec.Cmd
	stdout *lockedBuffer
	stderr *lockedBuffer
	done   chan struct{}
	err    error
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// start runs the binary with args; stdin may be nil. The process is
// killed at the end of the test if still running.
func start(t *testing.T, name string, stdin io.Reader, args ...string) *proc {
	t.Helper()
	return startCmd(t, name, stdin, nodeBinary(t), args...)
}

// startCmd runs argv0 with args (start with another launcher, such as
// `ip netns exec NS binary`). mDNS is off unless a test passes --mdns:
// the binary turns it on by default, and tests must not multicast outside
// loopback or their own namespaces. Each process gets a data directory
// of its own (XDG_DATA_HOME): run without --key keeps its identity there,
// and two nodes sharing one identity would lock each other out.
func startCmd(t *testing.T, name string, stdin io.Reader, argv0 string, args ...string) *proc {
	t.Helper()
	return startEnv(t, name, stdin, nil, argv0, args...)
}

// startEnv is startCmd with extra environment variables (KEY=VALUE).
func startEnv(t *testing.T, name string, stdin io.Reader, env []string, argv0 string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, name: name, stdout: &lockedBuffer{}, stderr: &lockedBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(argv0, args...)
	p.cmd.Env = append(append(raceEnv(os.Environ()), "MOSAIK_MDNS=false", "XDG_DATA_HOME="+t.TempDir()), env...)
	p.cmd.Stdin = stdin
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("--- %s stdout:\n%s", name, tail(p.stdout.String(), 1000))
			t.Logf("--- %s stderr:\n%s", name, failureLog(p.stderr.String()))
		}
	})
	return p
}

// raceEnv is env with atexit_sleep_ms=0 added to GORACE unless GORACE
// already sets it. The race runtime sleeps a second (its default) in every
// process that exits normally, so each keygen, map command or shut-down
// node of a test would take a second longer for nothing: a race detected
// while the process runs is reported, and makes it exit 66, either way.
func raceEnv(env []string) []string {
	out := make([]string, 0, len(env)+1)
	set := false
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "GORACE="); ok {
			set = true
			if !strings.Contains(v, "atexit_sleep_ms") {
				kv = "GORACE=" + strings.TrimSpace(v+" atexit_sleep_ms=0")
			}
		}
		out = append(out, kv)
	}
	if !set {
		out = append(out, "GORACE=atexit_sleep_ms=0")
	}
	return out
}

// failureLog is what a failed test shows of a process's stderr: the
// goroutine dump of a hung process (see wait) in full, else the tail.
func failureLog(s string) string {
	if i := strings.Index(s, "SIGQUIT: quit"); i >= 0 {
		dump := s[i:]
		if len(dump) > 60000 {
			dump = dump[:60000] + "…"
		}
		return tail(s[:i], 2000) + "\n" + dump
	}
	return tail(s, 3000)
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// wait waits for the process to exit and returns its exit code.
func (p *proc) wait(d time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(testutil.Scale(d)):
		// A goroutine dump says where it hangs; the cleanup logs it.
		_ = p.cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
		}
		p.t.Fatalf("%s did not exit within %v (goroutine dump in its stderr below)", p.name, testutil.Scale(d))
	}
	if p.err == nil {
		return 0
	}
	if ee, ok := p.err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	p.t.Fatalf("%s: %v", p.name, p.err)
	return -1
}

func (p *proc) signal(sig syscall.Signal) {
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal %s: %v", p.name, err)
	}
}

// node starts `run` with an address file and returns the process and its
// first address.
func runNode(t *testing.T, name, network string, extra ...string) (*proc, string) {
	t.Helper()
	addrFile := filepath.Join(t.TempDir(), name+".addrs")
	args := append([]string{"run", "--network", network, "--listen", "/ip4/127.0.0.1/tcp/0", "--addr-file", addrFile, "--log-level", "debug"}, extra...)
	p := start(t, name, nil, args...)
	var addr string
	testutil.Eventually(t, 10*time.Second, func() bool {
		b, err := os.ReadFile(addrFile)
		if err != nil || len(b) == 0 {
			return false
		}
		addr = strings.TrimSpace(strings.Split(string(b), "\n")[0])
		return true
	}, "%s wrote no address file", name)
	return p, addr
}

var urlRE = regexp.MustCompile(`url=(http://[0-9.:]+/)`)

// httpURL waits for the status-page URL in a process's log.
func httpURL(t *testing.T, p *proc) string {
	t.Helper()
	var url string
	testutil.Eventually(t, 10*time.Second, func() bool {
		m := urlRE.FindStringSubmatch(p.stderr.String())
		if m == nil {
			return false
		}
		url = m[1]
		return true
	}, "%s logged no status page URL", p.name)
	return url
}

func lines(s string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Scale(d))
	t.Cleanup(cancel)
	return ctx
}
