package groups

import (
	"strings"
	"testing"

	"github.com/mosaik-go/mosaik/internal/testutil"
)

// TestImports_BondLayer enforces the package graph: groups imports no
// sibling (streams), no owner (node, collections) and no libp2p service
// implementation (pubsub, DHT, discovery); it takes a host and a narrow
// view of the catalog.
func TestImports_BondLayer(t *testing.T) {
	for _, d := range testutil.Deps(t, "github.com/mosaik-go/mosaik/groups") {
		for _, bad := range []string{
			"github.com/mosaik-go/mosaik/node", "github.com/mosaik-go/mosaik/streams",
			"github.com/mosaik-go/mosaik/collections", "github.com/mosaik-go/mosaik/catalog/discovery",
			"github.com/libp2p/go-libp2p-pubsub", "github.com/libp2p/go-libp2p-kad-dht",
		} {
			if d == bad || strings.HasPrefix(d, bad+"/") {
				t.Errorf("groups imports %s", d)
			}
		}
	}
}
