package streams

import (
	"crypto/rand"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/mosaik-go/mosaik/catalog"
)

// TestChangedPeers: producers and consumers re-examine only the peers a
// catalog change touched, and everything when the local entry changed.
func TestChangedPeers(t *testing.T) {
	nw := catalog.IDFromString("streams-test/changed-peers")
	now := time.Now()
	newLocal := func() *catalog.Local {
		sk, _, err := crypto.GenerateEd25519Key(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		l, err := catalog.NewLocal(sk, nw, now, nil)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	me, a, b := newLocal(), newLocal(), newLocal()
	store, err := catalog.NewStore(me.Current(), catalog.TestParams())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if _, errs := store.MergeAll([]*catalog.SignedEntry{a.Current(), b.Current()}, now); errs[0] != nil || errs[1] != nil {
		t.Fatal(errs)
	}
	s1 := store.Snapshot()
	a2, _, err := a.Update(now.Add(time.Second), func(e *catalog.Entry) { e.Streams = []catalog.StreamID{catalog.IDFromString("x")} })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Merge(a2, now.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	s2 := store.Snapshot()
	got := changedPeers(s1, s2)
	aID, bID := a.Current().Entry.PeerID, b.Current().Entry.PeerID
	if len(got) != 1 || !got[aID] || got[bID] {
		t.Fatalf("changedPeers = %v, want only %s", got, aID)
	}
	m2, _, err := me.Update(now.Add(time.Second), func(e *catalog.Entry) { e.Tags = []catalog.Tag{catalog.IDFromString("t")} })
	if err != nil {
		t.Fatal(err)
	}
	if err := store.SetLocal(m2); err != nil {
		t.Fatal(err)
	}
	if got := changedPeers(s2, store.Snapshot()); got != nil {
		t.Fatalf("after a local change changedPeers = %v, want nil (everything)", got)
	}
	if got := changedPeers(s2, s2); got == nil || len(got) != 0 {
		t.Fatalf("no change: %v", got)
	}
}
