package discovery_test

import (
	"bufio"
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/catalog/discovery"
	"github.com/mosaik-go/mosaik/catalog/pb"
	"github.com/mosaik-go/mosaik/internal/framer"
	"github.com/mosaik-go/mosaik/internal/testutil"
)

const bigCatalog = 10_000

// bigEntries are bigCatalog typical sealed entries (4 addresses, 3 tags,
// 2 streams, a 300-byte ticket: about 800 bytes each, as in issue 17's
// measurements) of network nw, plus newer versions of the first
// bigCatalog/20 of them. They are sealed once per test binary.
type bigEntries struct {
	nw      catalog.NetworkID
	entries []*catalog.SignedEntry
	updates []*catalog.SignedEntry
}

var (
	bigOnce sync.Once
	bigSet  bigEntries
)

func presignedEntries(t testing.TB) bigEntries {
	t.Helper()
	bigOnce.Do(func() {
		nw := catalog.IDFromString("discovery-test/ten-thousand")
		v := catalog.NewVersion(time.Now())
		next := v.Next(time.Now().Add(time.Millisecond))
		n := bigCatalog
		entries := make([]*catalog.SignedEntry, n)
		updates := make([]*catalog.SignedEntry, n/20)
		tags := []catalog.Tag{catalog.IDFromString("a"), catalog.IDFromString("b"), catalog.IDFromString("c")}
		streams := []catalog.StreamID{catalog.IDFromString("orders"), catalog.IDFromString("quotes")}
		ticket := catalog.Ticket{Class: catalog.IDFromString("class"), Data: make([]byte, 300)}
		var wg sync.WaitGroup
		workers := runtime.GOMAXPROCS(0)
		errs := make([]error, workers)
		for w := range workers {
			wg.Go(func() {
				for i := w; i < n; i += workers {
					sk, id := newKey(t)
					e := catalog.Entry{PeerID: id, Network: nw, Protocol: catalog.ProtocolVersion, Version: v,
						Tags: tags, Streams: streams, Tickets: []catalog.Ticket{ticket}}
					for j := range 4 {
						// Loopback addresses nothing listens on: never dialed (the
						// nodes below do not cascade).
						e.Addrs = append(e.Addrs, ma.StringCast(fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", 1+j)))
					}
					var err error
					if entries[i], err = catalog.Seal(e, sk); err != nil {
						errs[w] = err
						return
					}
					if i < len(updates) {
						e.Version = next
						if updates[i], err = catalog.Seal(e, sk); err != nil {
							errs[w] = err
							return
						}
					}
				}
			})
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatalf("seal: %v", err)
			}
		}
		bigSet = bigEntries{nw: nw, entries: entries, updates: updates}
	})
	if bigSet.entries == nil {
		t.Fatal("presigning failed in an earlier test")
	}
	return bigSet
}

// bigParams are the params of a node holding the big catalog: entries
// stay fresh for the whole test, the catalog has room, and nothing but
// explicit syncs moves entries (no gossip, no cascade, no anti-entropy).
func bigParams(p *discovery.Params) {
	p.Catalog.PurgeAfter = 30 * time.Minute
	p.Catalog.MaxClockDrift = 30 * time.Minute
	p.Catalog.MaxPeers = 2 * bigCatalog
	p.DisableGossip = true
	p.CascadeBelow = 0
	p.AntiEntropyInterval = 0
	p.BumpInterval = 0 // only syncs move entries: the counts are the sync's
	p.SyncTimeout = time.Minute
}

func mergeAll(t testing.TB, svc *discovery.Service, es []*catalog.SignedEntry) {
	t.Helper()
	_, errs := svc.Store().MergeAll(es, time.Now())
	for i, err := range errs {
		if err != nil {
			t.Fatalf("merge entry %d: %v", i, err)
		}
	}
}

// TestSync_TenThousandEntriesAndDelta: a newcomer syncs a catalog of
// 10 000 typical entries from one real host over sync 2.0.0 (more than
// the 8 MiB message that sync 1.0.0 allowed), and a requester that
// already holds 90 % of them, 5 % at an older version, receives only the
// difference: the missing 10 %, the 5 % updates and the responder's own
// entry.
func TestSync_TenThousandEntriesAndDelta(t *testing.T) {
	big := presignedEntries(t)
	nw := big.nw
	r := newNode(t, nw, withoutPubSub(), withParams(bigParams))
	mergeAll(t, r.svc, big.entries)
	if got := r.svc.Catalog().Len(); got != bigCatalog {
		t.Fatalf("responder holds %d entries, want %d", got, bigCatalog)
	}
	requester := func() *testNode {
		return newNode(t, nw, withoutPubSub(), withParams(bigParams), withParams(func(p *discovery.Params) { p.DisableSync = true }))
	}
	sync := func(a *testNode) (discovery.Stats, time.Duration) {
		t.Helper()
		before := a.svc.Stats()
		ctx, cancel := context.WithTimeout(context.Background(), testutil.Scale(2*time.Minute))
		defer cancel()
		start := time.Now()
		if err := a.svc.SyncWith(ctx, addrInfo(r.h)); err != nil {
			t.Fatalf("SyncWith: %v", err)
		}
		took := time.Since(start)
		after := a.svc.Stats()
		return discovery.Stats{
			SyncBytesSent: after.SyncBytesSent - before.SyncBytesSent, SyncBytesReceived: after.SyncBytesReceived - before.SyncBytesReceived,
			SyncEntriesSent: after.SyncEntriesSent - before.SyncEntriesSent, SyncEntriesReceived: after.SyncEntriesReceived - before.SyncEntriesReceived,
			SyncBumpsReceived: after.SyncBumpsReceived - before.SyncBumpsReceived,
			Added:             after.Added - before.Added, Updated: after.Updated - before.Updated,
		}, took
	}

	// Full: a newcomer.
	a := requester()
	full, took := sync(a)
	t.Logf("full sync of %d entries: %v, %d bytes received (%d B/entry), %d bytes sent",
		bigCatalog, took, full.SyncBytesReceived, full.SyncBytesReceived/bigCatalog, full.SyncBytesSent)
	if got := a.svc.Catalog().Len(); got != bigCatalog+1 {
		t.Fatalf("after the full sync the requester holds %d entries, want %d", got, bigCatalog+1)
	}
	if full.SyncEntriesReceived != bigCatalog+1 || full.Added != bigCatalog+1 {
		t.Errorf("full sync received %d entries and added %d, want %d", full.SyncEntriesReceived, full.Added, bigCatalog+1)
	}

	// Delta: a requester holding 90 %, of which the responder has since
	// updated 5 % (heartbeats: they come as bumps). It lacks the rest, the
	// responder's entry and the first requester's (which the responder
	// merged from its hello).
	held := bigCatalog * 9 / 10
	b := requester()
	mergeAll(t, b.svc, big.entries[:held])
	mergeAll(t, r.svc, big.updates)
	delta, took := sync(b)
	want := uint64(bigCatalog-held) + 2
	t.Logf("delta sync: %v, %d entries and %d bumps, %d bytes received (%.1f %% of the full sync), %d bytes sent (digest)",
		took, delta.SyncEntriesReceived, delta.SyncBumpsReceived, delta.SyncBytesReceived, 100*float64(delta.SyncBytesReceived)/float64(full.SyncBytesReceived), delta.SyncBytesSent)
	if delta.SyncEntriesReceived != want || delta.SyncBumpsReceived != uint64(len(big.updates)) {
		t.Errorf("delta sync received %d entries and %d bumps, want exactly the difference: %d and %d", delta.SyncEntriesReceived, delta.SyncBumpsReceived, want, len(big.updates))
	}
	if delta.Added != uint64(bigCatalog-held)+2 || delta.Updated != uint64(len(big.updates)) {
		t.Errorf("delta sync added %d and updated %d, want %d and %d", delta.Added, delta.Updated, bigCatalog-held+2, len(big.updates))
	}
	if limit := full.SyncBytesReceived * 20 / 100; delta.SyncBytesReceived > limit {
		t.Errorf("delta sync received %d bytes, more than 20 %% of the full sync's %d", delta.SyncBytesReceived, full.SyncBytesReceived)
	}
	for _, u := range big.updates {
		if e, ok := b.svc.Catalog().Get(u.Entry.PeerID); !ok || e.Entry.Version != u.Entry.Version {
			t.Fatalf("requester lacks the update of %s", u.Entry.PeerID)
		}
	}
	if got := b.svc.Catalog().Len(); got != bigCatalog+2 {
		t.Errorf("after the delta sync the requester holds %d entries, want %d", got, bigCatalog+2)
	}

	// Nothing to move: a second sync moves at most the two live nodes'
	// entries (their heartbeats), nothing else.
	again, _ := sync(b)
	if again.SyncEntriesReceived+again.SyncBumpsReceived > 2 {
		t.Errorf("a sync right after a sync received %d entries", again.SyncEntriesReceived)
	}
}

// TestSync_V1Interop: a node of sync 2.0.0 falls back to 1.0.0 with a
// responder that serves only 1.0.0 (an older node, here a raw host), and
// still serves 1.0.0 to an older initiator.
func TestSync_V1Interop(t *testing.T) {
	nw := catalog.IDFromString("discovery-test/v1-interop")
	a := newNode(t, nw, withoutPubSub(), withParams(func(p *discovery.Params) { p.DisableGossip = true }))
	old := newHost(t)
	oldEntry := sealEntry(t, hostKey(t, old), nw, catalog.NewVersion(time.Now())).Bytes()
	got := make(chan *pb.SyncRequest, 1)
	old.SetStreamHandler(discovery.SyncProtocolV1(nw), func(st network.Stream) {
		var req pb.SyncRequest
		if err := framer.ReadProto(bufio.NewReader(st), 1<<20, &req); err != nil {
			_ = st.Reset()
			return
		}
		select { // the automatic sync on connect may come first
		case got <- &req:
		default:
		}
		_ = framer.WriteProto(st, &pb.SyncResponse{Entries: [][]byte{oldEntry}})
		_ = st.Close()
	})
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Scale(10*time.Second))
	defer cancel()
	if err := a.svc.SyncWith(ctx, addrInfo(old)); err != nil {
		t.Fatalf("SyncWith an older node: %v", err)
	}
	req := <-got
	if len(req.Entries) == 0 {
		t.Fatal("the 1.0.0 request holds no entry")
	}
	if e, err := catalog.OpenEntry(req.Entries[0], 0); err != nil || e.Entry.PeerID != a.h.ID() {
		t.Errorf("the 1.0.0 request does not start with the initiator's entry (%v)", err)
	}
	if !knows(a.svc, old.ID()) {
		t.Error("the initiator did not merge the older node's entry")
	}

	// An older initiator: a 1.0.0 exchange with the 2.0.0 node.
	x := newHost(t)
	connect(t, x, a.h)
	st, err := x.NewStream(ctx, a.h.ID(), discovery.SyncProtocolV1(nw))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	own := sealEntry(t, hostKey(t, x), nw, catalog.NewVersion(time.Now())).Bytes()
	if err := framer.WriteProto(st, &pb.SyncRequest{Network: nw[:], Entries: [][]byte{own}}); err != nil {
		t.Fatal(err)
	}
	_ = st.CloseWrite()
	var resp pb.SyncResponse
	if err := framer.ReadProto(bufio.NewReader(st), 8<<20, &resp); err != nil {
		t.Fatalf("1.0.0 sync with a 2.0.0 node: %v", err)
	}
	if len(resp.Entries) != 2 { // its own and the older node's
		t.Errorf("1.0.0 response holds %d entries, want 2", len(resp.Entries))
	}
	if !knows(a.svc, x.ID()) {
		t.Error("the 2.0.0 node did not merge the older initiator's entry")
	}
}

// TestSync_PushesWhatTheResponderLacks: the responder asks (want) for the
// peers the initiator's digest holds newer or it lacks, and has merged
// them when SyncWith returns; a second sync moves none of them again.
func TestSync_PushesWhatTheResponderLacks(t *testing.T) {
	big := presignedEntries(t)
	nw := big.nw
	r := newNode(t, nw, withoutPubSub(), withParams(bigParams))
	a := newNode(t, nw, withoutPubSub(), withParams(bigParams), withParams(func(p *discovery.Params) { p.DisableSync = true }))
	mergeAll(t, r.svc, big.entries[:100])
	mergeAll(t, a.svc, big.entries[50:150]) // 50 shared, 50 the responder lacks
	mergeAll(t, a.svc, big.updates[:10])    // newer than the responder's
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Scale(30*time.Second))
	defer cancel()
	before := r.svc.Stats()
	if err := a.svc.SyncWith(ctx, addrInfo(r.h)); err != nil {
		t.Fatalf("SyncWith: %v", err)
	}
	for _, e := range big.entries[100:150] {
		if !knows(r.svc, e.Entry.PeerID) {
			t.Fatalf("the responder lacks %s after the sync", e.Entry.PeerID)
		}
	}
	for _, u := range big.updates[:10] {
		if e, _ := r.svc.Catalog().Get(u.Entry.PeerID); e == nil || e.Entry.Version != u.Entry.Version {
			t.Fatalf("the responder lacks the update of %s", u.Entry.PeerID)
		}
	}
	// The 10 updates are heartbeats of entries it holds: bumps.
	after := r.svc.Stats()
	if got, bumps := after.SyncEntriesReceived-before.SyncEntriesReceived, after.SyncBumpsReceived-before.SyncBumpsReceived; got != 50 || bumps != 10 {
		t.Errorf("the responder received %d entries and %d bumps, want the 50 it lacked and the 10 it held older", got, bumps)
	}
	before = r.svc.Stats()
	if err := a.svc.SyncWith(ctx, addrInfo(r.h)); err != nil {
		t.Fatalf("second SyncWith: %v", err)
	}
	if after := r.svc.Stats(); after.SyncEntriesReceived+after.SyncBumpsReceived > before.SyncEntriesReceived+before.SyncBumpsReceived {
		t.Errorf("a second sync pushed %d entries again", after.SyncEntriesReceived+after.SyncBumpsReceived-before.SyncEntriesReceived-before.SyncBumpsReceived)
	}
}
