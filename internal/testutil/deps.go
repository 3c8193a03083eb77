package testutil

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// goBinary returns the go command of the toolchain running the tests, or
// the one on PATH.
func goBinary(t testing.TB) string {
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
		t.Fatalf("no go command to list dependencies with: %v", err)
	}
	return p
}

// Deps lists the transitive dependencies of pkg with `go list -deps`.
func Deps(t testing.TB, pkg string) []string {
	t.Helper()
	out, err := exec.Command(goBinary(t), "list", "-deps", pkg).Output()
	if err != nil {
		var stderr string
		if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("go list -deps %s: %v\n%s", pkg, err, stderr)
	}
	deps := strings.Fields(string(out))
	if !slices.Contains(deps, pkg) {
		t.Fatalf("go list output does not list the package itself:\n%s", out)
	}
	return deps
}

// PureCoreViolations lists the dependencies that break STYLE.md's
// pure-core rule for package name: no libp2p host, transport, pubsub or
// DHT; of go-libp2p only core/{crypto,peer,record}; of this module only the
// packages in allowed.
func PureCoreViolations(name string, deps, allowed []string) []string {
	const (
		module = "github.com/mosaik-go/mosaik"
		libp2p = "github.com/libp2p/go-libp2p/"
	)
	allowedLibp2p := []string{"core/crypto", "core/peer", "core/record", "core/internal"}
	var bad []string
	for _, d := range deps {
		switch {
		case strings.HasPrefix(d, libp2p+"p2p/"),
			d+"/" == libp2p,
			strings.Contains(d, "go-libp2p-pubsub"),
			strings.Contains(d, "go-libp2p-kad-dht"):
			bad = append(bad, name+" depends on "+d)
		case d == module:
			// The root package holds only the shared error values.
		case strings.HasPrefix(d, module+"/"):
			if !slices.Contains(allowed, d) {
				bad = append(bad, name+" depends on "+d+" of this module")
			}
		case strings.HasPrefix(d, libp2p):
			rest := strings.TrimPrefix(d, libp2p)
			if !slices.ContainsFunc(allowedLibp2p, func(a string) bool { return rest == a || strings.HasPrefix(rest, a+"/") }) {
				bad = append(bad, name+" depends on "+d+": of go-libp2p only core/{crypto,peer,record} are allowed")
			}
		}
	}
	return bad
}
