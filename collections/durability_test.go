package collections_test

import (
	"crypto/rand"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/mosaik-go/mosaik/collections"
	"github.com/mosaik-go/mosaik/groups"
	"github.com/mosaik-go/mosaik/node"
)

// A writer and a reader on nodes with a data dir (node.WithDataDir, the
// groups' join default) come back with their state after a restart with
// the same identity and dir: the reader while no writer runs (its state is
// its own, from disk), then the writer, which leads again and replicates
// to the reader. The log is compacted, so each restores a stored snapshot
// and replays the entries after it.
func TestDurability_MapWriterAndReaderRestart(t *testing.T) {
	wdir, rdir := t.TempDir(), t.TempDir()
	wkey, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rkey, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	name := freshName(t)
	params := collections.WithGroupOptions(groups.WithParams(syncParams()))
	open := func(n *node.Node, writer bool) syncReplica {
		t.Helper()
		r, err := mapSubject.open(n, name, writer, params)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}

	wn := startNode(t, node.WithIdentity(wkey), node.WithDataDir(wdir))
	rn := startNode(t, node.WithIdentity(rkey), node.WithDataDir(rdir), node.WithBootstrapPeers(wn.AddrInfo()))
	w, r := open(wn, true), open(rn, false)
	syncOnline(t, 15*time.Second, w, r)
	f := &syncFixture{s: mapSubject}
	v := f.fill(t, w, 0, 1000)
	converge(t, mapSubject, 10*time.Second, v, mapSubject.want(1000), w, r)
	_ = r.Close()
	_ = w.Close()
	if err := rn.Close(); err != nil {
		t.Fatal(err)
	}
	if err := wn.Close(); err != nil {
		t.Fatal(err)
	}

	// The reader alone: no leader anywhere, its state comes from disk.
	rn = startNode(t, node.WithIdentity(rkey), node.WithDataDir(rdir))
	r = open(rn, false)
	defer r.Close()
	converge(t, mapSubject, 10*time.Second, v, mapSubject.want(1000), r)
	if _, ok := r.(*collections.MapReader[uint64, uint64]).Leader(); ok {
		t.Fatal("the restarted reader knows a leader, but no writer runs")
	}

	// The writer: leads again with its state and replicates new writes.
	wn = startNode(t, node.WithIdentity(wkey), node.WithDataDir(wdir), node.WithBootstrapPeers(rn.AddrInfo()))
	w = open(wn, true)
	defer w.Close()
	converge(t, mapSubject, 10*time.Second, v, mapSubject.want(1000), w)
	syncOnline(t, 15*time.Second, w, r)
	v2 := f.fill(t, w, 1000, 1010)
	converge(t, mapSubject, 10*time.Second, v2, mapSubject.want(1010), w, r)
}
