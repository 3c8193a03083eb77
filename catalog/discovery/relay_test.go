package discovery_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/catalog/discovery"
	"github.com/mosaik-go/mosaik/catalog/pb"
	"github.com/mosaik-go/mosaik/internal/testutil"
)

// TestSync_JoinSyncIsNotRelayed: a node that joins with an empty catalog
// does not republish on gossip the entries its first syncs bring (the
// network holds them already), while the member it joined relays the
// newcomer's entry, and a node with a catalog of its own relays the
// entries a later sync brings (a healed partition).
func TestSync_JoinSyncIsNotRelayed(t *testing.T) {
	nw := catalog.IDFromString("discovery-test/join-relay")
	// Heartbeats far apart: only relays publish others' entries.
	slow := withParams(func(p *discovery.Params) {
		p.AnnounceInterval, p.AntiEntropyInterval, p.CascadeBelow = time.Minute, 0, 0
		p.Catalog.PurgeAfter = 5 * time.Minute
	})
	fill := func(n *testNode, k int) {
		for i := range k {
			sk, _ := newKey(t)
			se := sealEntry(t, sk, nw, catalog.NewVersion(time.Now()), catalog.IDFromString(fmt.Sprint(i)))
			if _, err := n.svc.Store().Merge(se, time.Now()); err != nil {
				t.Fatalf("merge: %v", err)
			}
		}
	}
	a := newNode(t, nw, slow)
	fill(a, 5)
	b := newNode(t, nw, slow)
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Scale(10*time.Second))
	defer cancel()
	if err := b.svc.SyncWith(ctx, addrInfo(a.h)); err != nil {
		t.Fatalf("SyncWith: %v", err)
	}
	if got := b.svc.Catalog().Len(); got != 6 {
		t.Fatalf("the newcomer holds %d entries after its sync, want 6", got)
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return a.svc.Stats().Relayed >= 1 }, "the member did not relay the newcomer's entry")
	// Syncs on connect run too: a may sync with b before it merged b's
	// hello, and b, serving it, relays the entry of a's hello (an
	// initiator's entry is always relayed: that is how a newcomer's
	// spreads). None of the 5 other entries may be relayed by b.
	testutil.Never(t, time.Second, 20*time.Millisecond, func() string {
		if r := b.svc.Stats().Relayed; r > 1 {
			return fmt.Sprintf("the newcomer relayed %d entries, want at most the member's own", r)
		}
		return ""
	})
	before := b.svc.Stats().Relayed

	c := newNode(t, nw, slow)
	fill(c, 3)
	if err := b.svc.SyncWith(ctx, addrInfo(c.h)); err != nil {
		t.Fatalf("SyncWith: %v", err)
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return b.svc.Stats().Relayed-before >= 4 }, "a member relayed %d of the 4 entries new to it, want all", testutil.Lazy(func() any { return b.svc.Stats().Relayed - before }))
}

// TestRelay_Batched: entries a node learns together (here by Merge, which
// relays like a sync) go onto gossip in one message when they arrive
// within Params.RelayDelay, and a listener on the topic reads every entry
// from it, the last as protobuf's decoding (an older node's) keeps it.
func TestRelay_Batched(t *testing.T) {
	nw := catalog.IDFromString("discovery-test/relay-batch")
	a := newNode(t, nw, withParams(func(p *discovery.Params) {
		p.AnnounceInterval, p.AntiEntropyInterval, p.CascadeBelow = time.Minute, 0, 0
		p.Catalog.PurgeAfter = 5 * time.Minute
		p.RelayDelay = time.Second // all three entries are in long before
	}))
	x := newGossipAttacker(t, nw)
	sub, err := x.topic.Subscribe()
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Cancel()
	connect(t, x.h, a.h)
	testutil.Eventually(t, 5*time.Second, func() bool { return slices.Contains(x.topic.ListPeers(), a.h.ID()) },
		"the listener does not see the node on the topic")

	want := map[peer.ID]bool{}
	for range 3 {
		sk, id := newKey(t)
		want[id] = true
		if _, err := a.svc.Merge(sealEntry(t, sk, nw, catalog.NewVersion(time.Now()))); err != nil {
			t.Fatalf("Merge: %v", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Scale(10*time.Second))
	defer cancel()
	for {
		msg, err := sub.Next(ctx)
		if err != nil {
			t.Fatalf("no relay batch: %v", err)
		}
		if msg.ReceivedFrom != a.h.ID() {
			continue
		}
		got := map[peer.ID]bool{}
		var last peer.ID
		var other []protowire.Number
		for b := msg.Data; len(b) > 0; {
			num, typ, n := protowire.ConsumeTag(b)
			if n < 0 || typ != protowire.BytesType {
				t.Fatalf("field %d of type %d in a relay message", num, typ)
			}
			v, m := protowire.ConsumeBytes(b[n:])
			if m < 0 {
				t.Fatal("truncated message")
			}
			b = b[n+m:]
			if num != 1 {
				other = append(other, num)
				continue
			}
			e, err := catalog.OpenEntry(v, 0)
			if err != nil {
				t.Fatalf("batch entry: %v", err)
			}
			got[e.Entry.PeerID], last = true, e.Entry.PeerID
		}
		if len(got) == 1 && !want[last] {
			continue // the node's own announcement
		}
		if len(other) > 0 {
			t.Errorf("the batch holds fields %v besides its entries (a batch has no nonce)", other)
		}
		if !maps.Equal(got, want) {
			t.Fatalf("relay message holds %v, want all of %v in one message", got, want)
		}
		var ann pb.Announcement
		if err := proto.Unmarshal(msg.Data, &ann); err != nil {
			t.Fatalf("protobuf cannot read the batch: %v", err)
		}
		if e, err := catalog.OpenEntry(ann.GetEntry(), 0); err != nil || e.Entry.PeerID != last {
			t.Fatalf("protobuf reads %v (%v) from the batch, want its last entry %s", e, err, last)
		}
		break
	}
	// The counters move once Publish returned, which may be after delivery.
	testutil.Eventually(t, 5*time.Second, func() bool { st := a.svc.Stats(); return st.Relayed == 3 && st.RelayMessages == 1 },
		"the node did not count 3 relayed entries in 1 message")
}
