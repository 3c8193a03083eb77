package node_test

import (
	"errors"
	"testing"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/node"
)

// TestNew_LocalEntryOverTheCap: a local entry larger than
// Catalog.MaxEntrySize would be refused by every peer; node.New says so
// instead of starting a node nobody can see.
func TestNew_LocalEntryOverTheCap(t *testing.T) {
	big := func(e *catalog.Entry) {
		e.Tickets = append(e.Tickets, catalog.Ticket{Class: catalog.IDFromString("jwt"), Data: make([]byte, catalog.DefaultMaxEntrySize)})
	}
	n, err := node.New("node-test/entry-cap", node.WithListenAddrs("/ip4/127.0.0.1/tcp/0"), node.WithFastProfile(),
		node.WithLogger(testutil.Logger()), node.WithEntry(big))
	if err == nil {
		_ = n.Close()
		t.Fatal("node.New accepted a local entry over the cap")
	}
	if !errors.Is(err, catalog.ErrOversize) {
		t.Fatalf("node.New = %v, want %v", err, catalog.ErrOversize)
	}
}
