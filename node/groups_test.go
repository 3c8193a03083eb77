package node_test

import (
	"slices"
	"testing"

	"github.com/mosaik-go/mosaik/groups"
)

// The node runs a groups service that serves the network's bond protocol,
// and closes it with the node.
func TestGroups_ServiceServesBondProtocol(t *testing.T) {
	n := startNode(t, "groups-node-test")
	if n.Groups() == nil {
		t.Fatal("no groups service")
	}
	if !slices.Contains(n.Host().Mux().Protocols(), groups.ProtocolID(n.Network())) {
		t.Fatalf("host does not serve %s", groups.ProtocolID(n.Network()))
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := n.Groups().Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
}
