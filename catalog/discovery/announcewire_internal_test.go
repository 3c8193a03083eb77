package discovery

import (
	"bytes"
	"crypto/rand"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/mosaik-go/mosaik/catalog"
)

// TestRelayBatch_Limits: a relay batch keeps one entry per peer (the
// newest, with the nonce of any of its relays), refuses an entry that would
// take it past its byte budget or MaxBatchEntries, always takes a first
// entry whatever its size, and decodes back to what went in.
func TestRelayBatch_Limits(t *testing.T) {
	nw := catalog.IDFromString("relay-batch")
	seal := func(sk crypto.PrivKey, at time.Time) *catalog.SignedEntry {
		t.Helper()
		l, err := catalog.NewLocal(sk, nw, at, nil)
		if err != nil {
			t.Fatal(err)
		}
		return l.Current()
	}
	key := func() crypto.PrivKey {
		sk, _, err := crypto.GenerateEd25519Key(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return sk
	}
	now := time.Now()
	k1, k2 := key(), key()
	old, newer := seal(k1, now), seal(k1, now.Add(time.Second))
	other := seal(k2, now)

	b := relayBatch{max: 2*batchSize(old) + batchSize(other)/2}
	if !b.add(relay{e: newer}) || !b.add(relay{e: old, nonce: true}) {
		t.Fatal("a second relay of the same peer did not fold into the batch")
	}
	if !b.add(relay{e: other}) {
		t.Fatal("a second peer did not fit")
	}
	if b.add(relay{e: seal(key(), now)}) {
		t.Fatal("an entry past the byte budget was taken")
	}
	rs := b.take()
	if len(rs) != 2 || rs[0].e != newer || !rs[0].nonce || rs[1].e != other {
		t.Fatalf("batch = %+v, want the newer entry of peer 1 (with a nonce) and peer 2's", rs)
	}
	if len(b.take()) != 0 {
		t.Fatal("take did not empty the batch")
	}

	// A first entry always fits; the entry cap holds whatever the budget.
	small := relayBatch{max: 1}
	if !small.add(relay{e: other}) || small.add(relay{e: old}) {
		t.Fatal("a batch over budget took a second entry, or refused its first")
	}
	big := relayBatch{max: 1 << 30}
	var es []*catalog.SignedEntry
	for range MaxBatchEntries {
		e := seal(key(), now)
		es = append(es, e)
		if !big.add(relay{e: e}) {
			t.Fatal("an entry under the cap was refused")
		}
	}
	if big.add(relay{e: seal(key(), now)}) {
		t.Fatalf("the batch took more than %d entries", MaxBatchEntries)
	}

	// More entries than the cap are malformed, however small.
	tiny := func(n int) []byte { return bytes.Repeat([]byte{0x0a, 0x01, 0x61}, n) }
	if _, bodies, err := parseAnnouncement(tiny(MaxBatchEntries)); err != nil || len(bodies) != MaxBatchEntries {
		t.Fatalf("%d entries: %d bodies, %v", MaxBatchEntries, len(bodies), err)
	}
	if _, _, err := parseAnnouncement(tiny(MaxBatchEntries + 1)); err == nil {
		t.Fatalf("%d entries parsed", MaxBatchEntries+1)
	}

	// The encoding decodes back, entry by entry.
	data := appendBatch(nil, es)
	got, _, ignored, err := decodeAnnouncement(data, len(data), time.Now(), func(b []byte) (*catalog.SignedEntry, error) { return catalog.OpenEntry(b, 0) }, nil)
	if err != nil || len(ignored) != 0 || len(got) != len(es) {
		t.Fatalf("decode: %d entries, %d ignored, %v; want %d", len(got), len(ignored), err, len(es))
	}
	for i := range es {
		if got[i].Entry.PeerID != es[i].Entry.PeerID {
			t.Fatalf("entry %d is %s, want %s", i, got[i].Entry.PeerID, es[i].Entry.PeerID)
		}
	}
}
