package integration

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
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
