package policy

import (
	"slices"
	"testing"

	"github.com/mosaik-go/mosaik/internal/testutil"
)

// TestImports_PureCore enforces the pure-core rule: policy imports no
// libp2p host, transport, pubsub or DHT; of this module only catalog (the
// model, not its discovery service) and what catalog imports of it
// (internal/edverify: signature checks, pure); of go-libp2p only
// core/{crypto,peer,record}.
func TestImports_PureCore(t *testing.T) {
	deps := testutil.Deps(t, "github.com/mosaik-go/mosaik/policy")
	for _, v := range pureCoreViolations(deps) {
		t.Error(v)
	}
}

// pureCoreViolations lists the dependencies of policy that break the
// pure-core rule.
func pureCoreViolations(deps []string) []string {
	return testutil.PureCoreViolations("policy", deps, []string{"github.com/mosaik-go/mosaik/policy", "github.com/mosaik-go/mosaik/policy/pb", "github.com/mosaik-go/mosaik/catalog", "github.com/mosaik-go/mosaik/catalog/pb", "github.com/mosaik-go/mosaik/internal/edverify"})
}

func TestImports_PureCoreRule(t *testing.T) {
	ok := []string{
		"fmt", "github.com/mosaik-go/mosaik/policy", "github.com/mosaik-go/mosaik/policy/pb",
		"github.com/mosaik-go/mosaik/catalog", "github.com/mosaik-go/mosaik/catalog/pb",
		"github.com/golang-jwt/jwt/v5",
		"github.com/libp2p/go-libp2p/core/peer", "github.com/libp2p/go-libp2p/core/crypto/pb",
		"github.com/libp2p/go-libp2p/core/record", "github.com/libp2p/go-libp2p/core/internal/catch",
		"github.com/multiformats/go-multiaddr", "lukechampine.com/blake3",
		"github.com/mosaik-go/mosaik/internal/edverify",
	}
	if v := pureCoreViolations(ok); len(v) != 0 {
		t.Fatalf("allowed deps flagged: %v", v)
	}
	for _, d := range []string{
		"github.com/libp2p/go-libp2p/p2p/host/basic",
		"github.com/libp2p/go-libp2p/p2p/net/swarm",
		"github.com/libp2p/go-libp2p-pubsub",
		"github.com/libp2p/go-libp2p-kad-dht/providers",
		"github.com/mosaik-go/mosaik/node",
		"github.com/mosaik-go/mosaik/streams",
		"github.com/mosaik-go/mosaik/catalog/discovery",
		"github.com/mosaik-go/mosaik/internal/framer",
		"github.com/libp2p/go-libp2p/core/host",
		"github.com/libp2p/go-libp2p/core/peerstore",
		"github.com/libp2p/go-libp2p",
	} {
		if v := pureCoreViolations(append(slices.Clone(ok), d)); len(v) != 1 {
			t.Errorf("%s: violations %v, want exactly one", d, v)
		}
	}
}
