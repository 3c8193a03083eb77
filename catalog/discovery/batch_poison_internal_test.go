package discovery

import (
	"bytes"
	"crypto/rand"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pubsubpb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/mosaik-go/mosaik/catalog"
)

// A relay batch that carries a new entry and a forged one that this node
// ignores without verifying it (a tampered copy of its own entry, of a
// known version, ...) is rejected here. Accepted, the router forwarded it
// whole, every node downstream rejected the forged entry, and this honest
// node took the penalty: a few such batches got it graylisted by its mesh.
// An honest batch of a new entry and exact copies of held entries (the
// usual relay) still passes.
func TestGossip_BatchWithAForgedIgnoredEntryIsRejected(t *testing.T) {
	nw := catalog.IDFromString("discovery-test/batch-poison")
	s, ctx := loneService(t, nw)

	now := time.Now()
	fresh := func() *catalog.SignedEntry {
		sk, _, err := crypto.GenerateEd25519Key(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		id, _ := peer.IDFromPrivateKey(sk)
		se, err := catalog.Seal(catalog.Entry{PeerID: id, Network: nw, Protocol: catalog.ProtocolVersion, Version: catalog.NewVersion(now)}, sk)
		if err != nil {
			t.Fatal(err)
		}
		return se
	}
	held := fresh()
	if _, err := s.Merge(held); err != nil {
		t.Fatal(err)
	}
	batch := func(bodies ...[]byte) []byte {
		var b []byte
		for _, body := range bodies {
			b = protowire.AppendTag(b, announceEntry, protowire.BytesType)
			b = protowire.AppendBytes(b, body)
		}
		return b
	}
	topic := TopicName(nw)
	validate := func(data []byte) pubsub.ValidationResult {
		from := fresh().Entry.PeerID // any gossip peer
		msg := &pubsub.Message{Message: &pubsubpb.Message{Data: data, Topic: &topic}, ReceivedFrom: from}
		return s.validate(ctx, from, msg)
	}

	// Forged copies that openEntry ignores unverified: our own entry and
	// the held peer's, each with its signature's last byte flipped.
	for name, e := range map[string]*catalog.SignedEntry{"local": s.Local(), "held": held} {
		forged := bytes.Clone(e.Bytes())
		forged[len(forged)-1] ^= 1
		if got := validate(batch(fresh().Bytes(), forged)); got != pubsub.ValidationReject {
			t.Errorf("a batch of a new entry and a forged copy of the %s entry: %v, want rejected", name, got)
		}
	}
	if got := validate(batch(fresh().Bytes(), held.Bytes(), s.Local().Bytes())); got != pubsub.ValidationAccept {
		t.Errorf("an honest batch of a new entry and copies of held entries: %v, want accepted", got)
	}

	// A new entry and more than maxBatchVerifies older, validly signed
	// versions of held peers (ignored as not newer, not held copies): the
	// batch is ignored whole, without verifying them, so that it cannot
	// make every hop verify dozens of signatures.
	bodies := [][]byte{fresh().Bytes()}
	for range maxBatchVerifies + 1 {
		sk, _, err := crypto.GenerateEd25519Key(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		id, _ := peer.IDFromPrivateKey(sk)
		old, err := catalog.Seal(catalog.Entry{PeerID: id, Network: nw, Protocol: catalog.ProtocolVersion, Version: catalog.NewVersion(now.Add(-time.Second))}, sk)
		if err != nil {
			t.Fatal(err)
		}
		cur, err := catalog.Seal(catalog.Entry{PeerID: id, Network: nw, Protocol: catalog.ProtocolVersion, Version: catalog.NewVersion(now)}, sk)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Merge(cur); err != nil {
			t.Fatal(err)
		}
		bodies = append(bodies, old.Bytes())
	}
	before := s.store.SignatureChecks()
	if got := validate(batch(bodies...)); got != pubsub.ValidationIgnore {
		t.Errorf("a batch of a new entry and %d older versions: %v, want ignored", len(bodies)-1, got)
	}
	if n := s.store.SignatureChecks() - before; n > 1 {
		t.Errorf("%d signatures verified for it, want only the new entry's", n)
	}
}
