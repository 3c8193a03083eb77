package catalog_test

import (
	"crypto/rand"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/mosaik-go/mosaik/catalog"
)

// Two peers of one network: bob seals his entry, alice opens and merges it
// into her catalog, then reads it back from a snapshot.
func Example() {
	network := catalog.IDFromString("my-app")
	orders := catalog.IDFromString("orders")
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC) // the caller's clock

	aliceKey, _, _ := crypto.GenerateEd25519Key(rand.Reader)
	bobKey, _, _ := crypto.GenerateEd25519Key(rand.Reader)

	// Each node owns its Local entry and re-seals it on every change.
	alice, err := catalog.NewLocal(aliceKey, network, now, nil)
	if err != nil {
		panic(err)
	}
	bob, err := catalog.NewLocal(bobKey, network, now, func(e *catalog.Entry) {
		e.Tags = []catalog.Tag{catalog.IDFromString("validator")}
	})
	if err != nil {
		panic(err)
	}
	// Bob starts producing a stream: the version goes up.
	if _, _, err := bob.Update(now.Add(time.Second), func(e *catalog.Entry) {
		e.Streams = append(e.Streams, orders)
	}); err != nil {
		panic(err)
	}

	store, err := catalog.NewStore(alice.Current(), catalog.DefaultParams())
	if err != nil {
		panic(err)
	}
	defer store.Close()

	// Bob's sealed bytes reach alice (over gossip or sync); she verifies
	// and merges them.
	wire := bob.Current().Bytes()
	entry, outcome, err := store.MergeBytes(wire, now.Add(2*time.Second))
	if err != nil {
		panic(err)
	}
	fmt.Println("merge:", outcome)

	// The same bytes again change nothing: ignored, not rejected.
	_, _, err = store.MergeBytes(wire, now.Add(3*time.Second))
	fmt.Println("again:", catalog.Reason(err), "rejected:", catalog.IsRejected(err))

	snap := store.Snapshot()
	fmt.Println("snapshot version:", snap.Version())
	fmt.Println("remote peers:", snap.Len())
	for _, e := range snap.Producers(orders) {
		fmt.Println("bob produces orders:", e.PeerID() == entry.PeerID())
		fmt.Println("bob is a validator:", e.Entry.HasTag(catalog.IDFromString("validator")))
	}
	// Output:
	// merge: added
	// again: not_newer rejected: false
	// snapshot version: 2
	// remote peers: 1
	// bob produces orders: true
	// bob is a validator: true
}
