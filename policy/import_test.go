package policy

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
		t.Fatalf("no go command to list dependencies with: %v", err)
	}
	return p
}

// TestImports_PureCore enforces the pure-core rule: policy imports no
// libp2p host, transport, pubsub or DHT; of this module only catalog (the
// model, not its discovery service); of go-libp2p only
// core/{crypto,peer,record}.
func TestImports_PureCore(t *testing.T) {
	const self = "github.com/mosaik-go/mosaik/policy"
	out, err := exec.Command(goBinary(t), "list", "-deps", self).Output()
	if err != nil {
		var stderr string
		if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("go list -deps %s: %v\n%s", self, err, stderr)
	}
	deps := strings.Fields(string(out))
	if !slices.Contains(deps, self) || !slices.Contains(deps, self+"/pb") {
		t.Fatalf("go list output does not list the package itself:\n%s", out)
	}
	for _, v := range pureCoreViolations(deps) {
		t.Error(v)
	}
}

// pureCoreViolations lists the dependencies of policy that break the
// pure-core rule.
func pureCoreViolations(deps []string) []string {
	const (
		module = "github.com/mosaik-go/mosaik"
		libp2p = "github.com/libp2p/go-libp2p/"
	)
	allowedModule := []string{module + "/policy", module + "/policy/pb", module + "/catalog", module + "/catalog/pb"}
	allowedLibp2p := []string{"core/crypto", "core/peer", "core/record", "core/internal"}
	var bad []string
	for _, d := range deps {
		switch {
		case strings.HasPrefix(d, libp2p+"p2p/"),
			d+"/" == libp2p,
			strings.Contains(d, "go-libp2p-pubsub"),
			strings.Contains(d, "go-libp2p-kad-dht"):
			bad = append(bad, "policy depends on "+d)
		case d == module || strings.HasPrefix(d, module+"/"):
			if !slices.Contains(allowedModule, d) {
				bad = append(bad, "policy depends on "+d+" of this module")
			}
		case strings.HasPrefix(d, libp2p):
			rest := strings.TrimPrefix(d, libp2p)
			if !slices.ContainsFunc(allowedLibp2p, func(a string) bool { return rest == a || strings.HasPrefix(rest, a+"/") }) {
				bad = append(bad, "policy depends on "+d+": of go-libp2p only core/{crypto,peer,record} are allowed")
			}
		}
	}
	return bad
}

func TestImports_PureCoreRule(t *testing.T) {
	ok := []string{
		"fmt", "github.com/mosaik-go/mosaik/policy", "github.com/mosaik-go/mosaik/policy/pb",
		"github.com/mosaik-go/mosaik/catalog", "github.com/mosaik-go/mosaik/catalog/pb",
		"github.com/golang-jwt/jwt/v5",
		"github.com/libp2p/go-libp2p/core/peer", "github.com/libp2p/go-libp2p/core/crypto/pb",
		"github.com/libp2p/go-libp2p/core/record", "github.com/libp2p/go-libp2p/core/internal/catch",
		"github.com/multiformats/go-multiaddr", "lukechampine.com/blake3",
	}
	if v := pureCoreViolations(ok); len(v) != 0 {
		t.Fatalf("allowed deps flagged: %v", v)
	}
	for _, d := range []string{
		"github.com/libp2p/go-libp2p/p2p/host/basic",
		"github.com/libp2p/go-libp2p/p2p/net/swarm",
		"github.com/libp2p/go-libp2p-pubsub",
		"github.com/libp2p/go-libp2p-kad-dht/providers",
		"github.com/mosaik-go/mosaik",
		"github.com/mosaik-go/mosaik/node",
		"github.com/mosaik-go/mosaik/streams",
		"github.com/mosaik-go/mosaik/catalog/discovery",
		"github.com/mosaik-go/mosaik/internal/wire",
		"github.com/libp2p/go-libp2p/core/host",
		"github.com/libp2p/go-libp2p/core/peerstore",
		"github.com/libp2p/go-libp2p",
	} {
		if v := pureCoreViolations(append(slices.Clone(ok), d)); len(v) != 1 {
			t.Errorf("%s: violations %v, want exactly one", d, v)
		}
	}
}
