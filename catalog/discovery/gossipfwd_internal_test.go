package discovery

import (
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

// A version this node took by bump push or sync before its gossip copy
// came is forwarded when that copy comes: the validator accepts the first
// gossip copy (merging nothing), so that peers that hear heartbeats only on
// gossip through this node get it. Ignored, as before, it stopped here.
// Later copies (a relay with a nonce), and copies of versions gossip
// brought, are still ignored, so relays stop at the first hop that holds
// their entry.
func TestGossip_FirstCopyOfAVersionTakenBySyncIsForwarded(t *testing.T) {
	nw := catalog.IDFromString("discovery-test/gossip-forward")
	s, ctx := loneService(t, nw)

	now := time.Now()
	type signer struct {
		sk crypto.PrivKey
		id peer.ID
	}
	newSigner := func() signer {
		sk, _, err := crypto.GenerateEd25519Key(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		id, _ := peer.IDFromPrivateKey(sk)
		return signer{sk, id}
	}
	seal := func(p signer, at time.Time) *catalog.SignedEntry {
		se, err := catalog.Seal(catalog.Entry{PeerID: p.id, Network: nw, Protocol: catalog.ProtocolVersion, Version: catalog.NewVersion(at)}, p.sk)
		if err != nil {
			t.Fatal(err)
		}
		return se
	}
	topic := TopicName(nw)
	validate := func(data []byte) (pubsub.ValidationResult, any) {
		from := newSigner().id // any gossip peer
		msg := &pubsub.Message{Message: &pubsubpb.Message{Data: data, Topic: &topic}, ReceivedFrom: from}
		return s.validate(ctx, from, msg), msg.ValidatorData
	}
	withNonce := func(data []byte) []byte {
		data = protowire.AppendTag(data, announceNonce, protowire.BytesType)
		return protowire.AppendBytes(data, newNonce())
	}

	// Taken by bump push first, then on gossip: forwarded once.
	pushed, gossiped := newSigner(), newSigner()
	e := seal(pushed, now)
	s.merge(e, fromPush)
	before := s.Stats()
	got, data := validate(appendBatch(nil, []*catalog.SignedEntry{e}))
	if got != pubsub.ValidationAccept {
		t.Fatalf("first gossip copy of a version taken by bump push: %v, want accepted (forwarded)", got)
	}
	if es, ok := data.([]*catalog.SignedEntry); !ok || len(es) != 0 {
		t.Errorf("validator data %T %v, want no entry to merge", data, data)
	}
	after := s.Stats()
	if n := after.GossipForwarded - before.GossipForwarded; n != 1 {
		t.Errorf("GossipForwarded +%d, want +1", n)
	}
	if after.Ignored != before.Ignored || after.Updated != before.Updated {
		t.Errorf("ignored %d → %d, updated %d → %d: a forwarded copy is neither", before.Ignored, after.Ignored, before.Updated, after.Updated)
	}
	if got, _ := validate(withNonce(appendBatch(nil, []*catalog.SignedEntry{e}))); got != pubsub.ValidationIgnore {
		t.Errorf("a second gossip copy (relay with a nonce): %v, want ignored", got)
	}

	// Taken on gossip: its copies are ignored, as before.
	g := seal(gossiped, now)
	s.mergeGossip(g, gossiped.id)
	if got, _ := validate(withNonce(appendBatch(nil, []*catalog.SignedEntry{g}))); got != pubsub.ValidationIgnore {
		t.Errorf("gossip copy of a version gossip brought: %v, want ignored", got)
	}

	// A newer version by sync is forwarded once more; a batch of it and a
	// held copy goes on whole.
	e2 := seal(pushed, now.Add(time.Second))
	s.merge(e2, fromSync)
	if got, _ := validate(appendBatch(nil, []*catalog.SignedEntry{g, e2})); got != pubsub.ValidationAccept {
		t.Errorf("batch of a held copy and a version taken by sync: %v, want accepted", got)
	}
	// The older version is no held copy any more: ignored, not forwarded.
	s.merge(seal(pushed, now.Add(2*time.Second)), fromPush)
	if got, _ := validate(withNonce(appendBatch(nil, []*catalog.SignedEntry{e2}))); got != pubsub.ValidationIgnore {
		t.Errorf("gossip copy of a version replaced since: %v, want ignored", got)
	}
	if n := s.Stats().GossipForwarded - before.GossipForwarded; n != 2 {
		t.Errorf("GossipForwarded +%d, want +2", n)
	}
}

// The record of versions taken other than on gossip is bounded: full, it
// starts over.
func TestUnforwarded_Bounded(t *testing.T) {
	u := newUnforwarded(3)
	v := catalog.NewVersion(time.Now())
	ids := []peer.ID{"a", "b", "c", "d"}
	for _, id := range ids {
		u.note(id, v)
	}
	if n := u.len(); n != 1 {
		t.Fatalf("%d records after 4 notes with room for 3, want 1 (emptied when full)", n)
	}
	if !u.has("d", v) || u.has("a", v) {
		t.Error("the record kept is not the last noted")
	}
	u.note("d", v) // a known peer never empties it
	if !u.take("d", v) || u.take("d", v) {
		t.Error("take: want true once")
	}
}
