package discovery_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/catalog/discovery"
	"github.com/mosaik-go/mosaik/catalog/pb"
	"github.com/mosaik-go/mosaik/internal/framer"
	"github.com/mosaik-go/mosaik/internal/testutil"
)

// TestSyncWith_BothSidesHoldEachOtherOnReturn checks SyncWith's contract:
// when it returns nil, the initiator and the responder already hold each
// other's entries, with no waiting. Gossip is off on both sides and the
// initiator neither serves nor starts syncs, so SyncWith is the only way
// the entries can travel.
func TestSyncWith_BothSidesHoldEachOtherOnReturn(t *testing.T) {
	nw := catalog.IDFromString("discovery-test/sync-with")
	noGossip := withParams(func(p *discovery.Params) { p.DisableGossip = true })
	tag := catalog.IDFromString("responder")
	a := newNode(t, nw, withoutPubSub(), noGossip, withParams(func(p *discovery.Params) { p.DisableSync = true }))
	b := newNode(t, nw, withoutPubSub(), noGossip, withServiceOpts(discovery.WithTags(tag)))
	if knows(a.svc, b.h.ID()) || knows(b.svc, a.h.ID()) {
		t.Fatal("catalogs not empty before the sync")
	}

	ctx, cancel := context.WithTimeout(context.Background(), testutil.Scale(10*time.Second))
	defer cancel()
	if err := a.svc.SyncWith(ctx, addrInfo(b.h)); err != nil {
		t.Fatalf("SyncWith: %v", err)
	}
	eb, ok := a.svc.Catalog().Get(b.h.ID())
	if !ok {
		t.Fatal("initiator does not hold the responder on return")
	}
	if !eb.Entry.HasTag(tag) {
		t.Error("initiator holds a responder entry without its tag")
	}
	ea, ok := b.svc.Catalog().Get(a.h.ID())
	if !ok {
		t.Fatal("responder does not hold the initiator on return")
	}
	if ea.Entry.Version != a.svc.Local().Entry.Version {
		t.Errorf("responder holds %v of the initiator, its current version is %v", ea.Entry.Version, a.svc.Local().Entry.Version)
	}
	// The sync also put the peer's addresses into the peerstore.
	if len(a.h.Peerstore().Addrs(b.h.ID())) == 0 {
		t.Error("initiator's peerstore has no address of the responder")
	}
	if st := a.svc.Stats(); st.SyncsStarted != 1 || st.SyncsOK != 1 || st.SyncsFailed != 0 || st.Added != 1 {
		t.Errorf("initiator stats: %+v", st)
	}
	if st := b.svc.Stats(); st.Added != 1 {
		t.Errorf("responder stats: %+v", st)
	}
	// Counted after the response is written, so possibly after SyncWith
	// returned.
	testutil.Eventually(t, 5*time.Second, func() bool { return b.svc.Stats().SyncsServed == 1 }, "responder did not count the sync")
}

// TestSyncWith_NodeOfAnotherNetwork: sync protocol IDs carry the network,
// so a sync with a node of another network fails protocol negotiation. It
// must say so with ErrOtherNetwork (not multistream's "protocols not
// supported") and exchange nothing. A plain libp2p host that serves no
// mosaik catalog at all is not "another network".
func TestSyncWith_NodeOfAnotherNetwork(t *testing.T) {
	a := newNode(t, catalog.IDFromString("discovery-test/sync-net-a"))
	b := newNode(t, catalog.IDFromString("discovery-test/sync-net-b"))
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Scale(10*time.Second))
	defer cancel()
	err := a.svc.SyncWith(ctx, addrInfo(b.h))
	if !errors.Is(err, discovery.ErrOtherNetwork) || !errors.Is(err, catalog.ErrOtherNetwork) {
		t.Fatalf("SyncWith to a node of another network = %v, want discovery.ErrOtherNetwork", err)
	}
	if err := a.svc.SyncWith(ctx, addrInfo(newHost(t))); err == nil || errors.Is(err, catalog.ErrOtherNetwork) {
		t.Errorf("SyncWith to a host without mosaik = %v, want a failure that is not ErrOtherNetwork", err)
	}
	if knows(a.svc, b.h.ID()) || knows(b.svc, a.h.ID()) {
		t.Error("a failed cross-network sync exchanged entries")
	}
	if st := a.svc.Stats(); st.SyncsFailed == 0 {
		t.Errorf("failed sync not counted: %+v", st)
	}
}

// TestSyncWith_HostileResponder: the initiator's side of a sync must
// survive a responder that lies. The responder is a raw host serving the
// sync protocol of the initiator's network. The initiator neither gossips
// nor starts syncs by itself, so only the SyncWith calls move its counters.
func TestSyncWith_HostileResponder(t *testing.T) {
	nw := catalog.IDFromString("discovery-test/hostile-responder")
	a := newNode(t, nw, withoutPubSub(), withParams(func(p *discovery.Params) { p.DisableGossip, p.DisableSync = true, true }))
	r := newHost(t)
	rKey := hostKey(t, r)
	_, third := newKey(t)
	now := catalog.NewVersion(time.Now())
	serve := func(reply func(network.Stream)) {
		r.SetStreamHandler(discovery.SyncProtocolV1(nw), func(st network.Stream) {
			var req pb.SyncRequest
			if err := framer.ReadProto(bufio.NewReader(st), 1<<20, &req); err != nil {
				_ = st.Reset()
				return
			}
			reply(st)
		})
	}
	sync := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), testutil.Scale(10*time.Second))
		defer cancel()
		return a.svc.SyncWith(ctx, addrInfo(r))
	}

	t.Run("reset as another network", func(t *testing.T) {
		serve(func(st network.Stream) { _ = st.ResetWithError(discovery.CodeDifferentNetwork) })
		if err := sync(); !errors.Is(err, discovery.ErrOtherNetwork) {
			t.Fatalf("SyncWith = %v, want discovery.ErrOtherNetwork", err)
		}
	})

	t.Run("forged entries", func(t *testing.T) {
		other := catalog.IDFromString("discovery-test/hostile-responder-other")
		forged := seal(t, rKey, catalog.EntryDomain, catalog.EntryPayloadType, entryPB(third, nw, now))
		foreign := sealEntry(t, rKey, other, now).Bytes()
		own := sealEntry(t, rKey, nw, now).Bytes()
		serve(func(st network.Stream) {
			_ = framer.WriteProto(st, &pb.SyncResponse{Entries: [][]byte{forged, foreign, []byte("garbage"), own}})
			_ = st.Close()
		})
		before := a.svc.Stats()
		if err := sync(); err != nil {
			t.Fatalf("SyncWith: %v", err)
		}
		after := a.svc.Stats()
		d := reasonDelta(before, after)
		for _, k := range []string{"rejected/signer_mismatch", "rejected/other_network", "rejected/malformed"} {
			if d[k] != 1 {
				t.Errorf("%s moved by %d, want 1 (delta %v)", k, d[k], d)
			}
		}
		if knows(a.svc, third) {
			t.Error("the forged entry of a third peer was merged")
		}
		if !knows(a.svc, r.ID()) || a.svc.Catalog().Len() != 1 {
			t.Errorf("catalog holds %d peers, want only the responder's own valid entry", a.svc.Catalog().Len())
		}
	})

	t.Run("1 GiB response", func(t *testing.T) {
		done := make(chan struct{})
		defer close(done)
		serve(func(st network.Stream) {
			_, _ = st.Write(binary.AppendUvarint(nil, 1<<30))
			// Keep the stream open: a client that waited for the body
			// would hang until its deadline.
			<-done
			_ = st.Reset()
		})
		start := time.Now()
		err := sync()
		if err == nil {
			t.Fatal("SyncWith accepted a 1 GiB response")
		}
		if !errors.Is(err, framer.ErrTooLarge) {
			t.Errorf("SyncWith = %v, want framer.ErrTooLarge", err)
		}
		if took := time.Since(start); took >= testutil.Scale(5*time.Second) {
			t.Errorf("refusing the response took %v", took)
		}
	})
}
