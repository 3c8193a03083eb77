package discovery_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/catalog/discovery"
	"github.com/mosaik-go/mosaik/catalog/pb"
	"github.com/mosaik-go/mosaik/internal/framer"
	"github.com/mosaik-go/mosaik/internal/testutil"
)

const bumpCatalog = 2000

// statsDelta is after - before for the sync counters the bump tests read.
func statsDelta(before, after discovery.Stats) discovery.Stats {
	return discovery.Stats{
		SyncBytesSent: after.SyncBytesSent - before.SyncBytesSent, SyncBytesReceived: after.SyncBytesReceived - before.SyncBytesReceived,
		SyncEntriesSent: after.SyncEntriesSent - before.SyncEntriesSent, SyncEntriesReceived: after.SyncEntriesReceived - before.SyncEntriesReceived,
		SyncBumpsSent: after.SyncBumpsSent - before.SyncBumpsSent, SyncBumpsReceived: after.SyncBumpsReceived - before.SyncBumpsReceived,
		SyncBumpsRefused: after.SyncBumpsRefused - before.SyncBumpsRefused,
		Added:            after.Added - before.Added, Updated: after.Updated - before.Updated,
	}
}

// sameEntries fails unless a holds, byte for byte, the entry b holds of
// every peer of b's catalog but a itself.
func sameEntries(t *testing.T, a, b *testNode) {
	t.Helper()
	for e := range b.svc.Catalog().All() {
		if e.Entry.PeerID == a.h.ID() {
			continue
		}
		got, ok := a.svc.Catalog().Get(e.Entry.PeerID)
		if !ok {
			t.Fatalf("%s lacks the entry of %s", a.h.ID(), e.Entry.PeerID)
		}
		if !bytes.Equal(got.Bytes(), e.Bytes()) {
			t.Fatalf("the entries of %s differ (versions %v and %v)", e.Entry.PeerID, got.Entry.Version, e.Entry.Version)
		}
	}
}

// TestSyncBump_HeartbeatsTravelAsBumps: two nodes that hold the same
// catalog, each with newer heartbeats of a different quarter of it (as
// after a partition), re-sync over 2.1.0. Each heartbeat moves as a bump
// (version and signature) in its direction, a content change and a peer
// new to the initiator move whole, and both catalogs end identical, byte
// for byte. The same re-sync over 2.0.0 (a responder without 2.1.0)
// moves the heartbeats whole, several times the bytes.
func TestSyncBump_HeartbeatsTravelAsBumps(t *testing.T) {
	big := presignedEntries(t)
	nw := big.nw
	half := len(big.updates) / 2
	// changed: a peer whose newer entry changes content, not only the
	// version; fresh: a peer only the responder knows.
	changedKey, _ := newKey(t)
	freshKey, _ := newKey(t)
	v1 := catalog.NewVersion(time.Now())
	changed1 := sealEntry(t, changedKey, nw, v1)
	changed2 := sealEntry(t, changedKey, nw, v1.Next(time.Now().Add(time.Millisecond)), catalog.IDFromString("new-tag"))
	fresh := sealEntry(t, freshKey, nw, v1)

	run := func(t *testing.T, oldResponder bool) (a, r *testNode, d discovery.Stats, rd discovery.Stats) {
		r = newNode(t, nw, withoutPubSub(), withParams(bigParams))
		if oldResponder {
			r.h.RemoveStreamHandler(discovery.SyncProtocol(nw))
		}
		a = newNode(t, nw, withoutPubSub(), withParams(bigParams), withParams(func(p *discovery.Params) { p.DisableSync = true }))
		for _, n := range []*testNode{a, r} {
			mergeAll(t, n.svc, big.entries[:bumpCatalog])
			mergeAll(t, n.svc, []*catalog.SignedEntry{changed1})
		}
		mergeAll(t, r.svc, big.updates[:half])
		mergeAll(t, a.svc, big.updates[half:])
		mergeAll(t, r.svc, []*catalog.SignedEntry{changed2, fresh})
		ab, rb := a.svc.Stats(), r.svc.Stats()
		ctx, cancel := context.WithTimeout(context.Background(), testutil.Scale(time.Minute))
		defer cancel()
		if err := a.svc.SyncWith(ctx, addrInfo(r.h)); err != nil {
			t.Fatalf("SyncWith: %v", err)
		}
		d, rd = statsDelta(ab, a.svc.Stats()), statsDelta(rb, r.svc.Stats())
		sameEntries(t, a, r)
		sameEntries(t, r, a)
		return a, r, d, rd
	}

	_, _, d, rd := run(t, false)
	t.Logf("2.1.0: initiator received %d B (%d entries, %d bumps), sent %d B (%d entries, %d bumps)",
		d.SyncBytesReceived, d.SyncEntriesReceived, d.SyncBumpsReceived, d.SyncBytesSent, d.SyncEntriesSent, d.SyncBumpsSent)
	if d.SyncBumpsReceived != uint64(half) || d.SyncBumpsRefused != 0 {
		t.Errorf("the initiator received %d bumps (%d refused), want the %d heartbeats", d.SyncBumpsReceived, d.SyncBumpsRefused, half)
	}
	// Whole: the changed entry, the fresh peer and the responder's own.
	if d.SyncEntriesReceived != 3 {
		t.Errorf("the initiator received %d whole entries, want 3", d.SyncEntriesReceived)
	}
	if d.Updated != uint64(half)+1 || d.Added != 2 {
		t.Errorf("the initiator updated %d and added %d, want %d and 2", d.Updated, d.Added, half+1)
	}
	if rd.SyncBumpsReceived != uint64(len(big.updates)-half) || rd.SyncBumpsRefused != 0 || rd.SyncEntriesReceived != 0 {
		t.Errorf("the responder received %d bumps (%d refused) and %d entries, want %d bumps and no entry",
			rd.SyncBumpsReceived, rd.SyncBumpsRefused, rd.SyncEntriesReceived, len(big.updates)-half)
	}

	_, _, old, _ := run(t, true)
	t.Logf("2.0.0: initiator received %d B (%d entries), sent %d B", old.SyncBytesReceived, old.SyncEntriesReceived, old.SyncBytesSent)
	if old.SyncBumpsReceived != 0 || old.SyncEntriesReceived != uint64(half)+3 {
		t.Errorf("over 2.0.0 the initiator received %d bumps and %d entries, want none and %d", old.SyncBumpsReceived, old.SyncEntriesReceived, half+3)
	}
	// The heartbeats are most of what moves: whole, they cost several
	// times their bumps.
	if got, was := d.SyncBytesReceived, old.SyncBytesReceived; 3*got > was {
		t.Errorf("2.1.0 received %d bytes, more than a third of 2.0.0's %d", got, was)
	}
}

// bumpRecord packs one bump: key, version, signature.
func bumpRecord(key uint64, v catalog.Version, sig []byte) []byte {
	b := binary.BigEndian.AppendUint64(nil, key)
	b = binary.BigEndian.AppendUint64(b, uint64(v.StartMS))
	b = binary.BigEndian.AppendUint64(b, uint64(v.UpdateMS))
	return append(b, sig...)
}

func saltedKey(salt []byte, p peer.ID) uint64 {
	h := sha256.Sum256(append(append([]byte{}, salt...), p...))
	return binary.BigEndian.Uint64(h[:])
}

// TestSyncBump_ForgedBumpsAreRefused: a responder that lies in its bumps
// gets none merged. A bump with a made-up signature, with the signature of
// another peer's heartbeat, or naming a key the digest did not list is
// rejected and counted by reason; one of an older version is ignored as
// not newer; each counts in SyncBumpsRefused, and the honest bump of the
// same page is merged. Bumps that are not whole, and bumps in a 2.0.0
// page, fail the sync.
func TestSyncBump_ForgedBumpsAreRefused(t *testing.T) {
	nw := catalog.IDFromString("discovery-test/forged-bumps")
	a := newNode(t, nw, withoutPubSub(), withParams(func(p *discovery.Params) {
		p.DisableGossip, p.DisableSync = true, true
		p.Catalog.MinUpdateInterval = 0
	}))
	r := newHost(t)
	rOwn := sealEntry(t, hostKey(t, r), nw, catalog.NewVersion(time.Now())).Bytes()
	xKey, x := newKey(t)
	yKey, _ := newKey(t)
	zKey, z := newKey(t)
	v0 := catalog.NewVersion(time.Now().Add(-time.Second))
	v1 := v0.Next(time.Now().Add(-500 * time.Millisecond))
	v2 := v1.Next(time.Now())
	x0 := sealEntry(t, xKey, nw, v0)
	x1 := sealEntry(t, xKey, nw, v1)
	x2 := sealEntry(t, xKey, nw, v2)
	y2 := sealEntry(t, yKey, nw, v2)
	z1 := sealEntry(t, zKey, nw, v1)
	z2 := sealEntry(t, zKey, nw, v2)
	mergeAll(t, a.svc, []*catalog.SignedEntry{x1, sealEntry(t, yKey, nw, v1), z1})
	sig := func(e *catalog.SignedEntry) []byte {
		s, ok := e.Signature()
		if !ok {
			t.Fatal("a sealed entry has no bump signature")
		}
		return s
	}
	// serve answers 2.1.0 syncs: it reads the hello and the digest, then
	// writes what pages(salt) returns.
	serve := func(pages func(salt []byte) [][]byte) {
		r.SetStreamHandler(discovery.SyncProtocol(nw), func(st network.Stream) {
			br := bufio.NewReader(st)
			var hello pb.SyncHello
			if err := framer.ReadProto(br, 1<<20, &hello); err != nil {
				_ = st.Reset()
				return
			}
			for {
				var dg pb.SyncDigest
				if err := framer.ReadProto(br, 1<<20, &dg); err != nil {
					_ = st.Reset()
					return
				}
				if dg.Last {
					break
				}
			}
			for _, p := range pages(hello.Salt) {
				_, _ = st.Write(p)
			}
			_ = st.Close()
		})
	}
	sync := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), testutil.Scale(10*time.Second))
		defer cancel()
		return a.svc.SyncWith(ctx, addrInfo(r))
	}

	serve(func(salt []byte) [][]byte {
		kx, kz := saltedKey(salt, x), saltedKey(salt, z)
		var b []byte
		b = append(b, bumpRecord(kx, v2, bytes.Repeat([]byte{7}, 64))...) // made-up signature
		b = append(b, bumpRecord(kx, v2, sig(y2))...)                     // another peer's heartbeat
		b = append(b, bumpRecord(kx, v0, sig(x0))...)                     // older, validly signed
		b = append(b, bumpRecord(kx^1, v2, sig(x2))...)                   // a key not in the digest
		b = append(b, bumpRecord(kz, v2, sig(z2))...)                     // honest
		return [][]byte{frame(t, &pb.SyncPage{Entries: [][]byte{rOwn}, Bumps: b, Last: true})}
	})
	before := a.svc.Stats()
	if err := sync(); err != nil {
		t.Fatalf("SyncWith: %v", err)
	}
	after := a.svc.Stats()
	d := reasonDelta(before, after)
	if d["rejected/bad_signature"] != 2 || d["rejected/bad_bump"] != 1 || after.RejectedBy["ignored/not_newer"] != before.RejectedBy["ignored/not_newer"]+1 {
		t.Errorf("refusals by reason: %v (ignored/not_newer %d -> %d)", d, before.RejectedBy["ignored/not_newer"], after.RejectedBy["ignored/not_newer"])
	}
	if got := statsDelta(before, after); got.SyncBumpsReceived != 5 || got.SyncBumpsRefused != 4 {
		t.Errorf("%d bumps received, %d refused; want 5 and 4", got.SyncBumpsReceived, got.SyncBumpsRefused)
	}
	if e, _ := a.svc.Catalog().Get(x); e.Entry.Version != v1 || !bytes.Equal(e.Bytes(), x1.Bytes()) {
		t.Errorf("the entry of the forged peer moved to %v", e.Entry.Version)
	}
	if e, _ := a.svc.Catalog().Get(z); !bytes.Equal(e.Bytes(), z2.Bytes()) {
		t.Errorf("the honest bump was not merged as the peer sealed it (version %v)", e.Entry.Version)
	}

	for name, pg := range map[string]*pb.SyncPage{
		"partial bump":           {Bumps: make([]byte, 87), Last: true},
		"page of too many bumps": {Bumps: make([]byte, 2049*88), Last: true},
	} {
		t.Run(name, func(t *testing.T) {
			serve(func([]byte) [][]byte { return [][]byte{frame(t, pg)} })
			before := a.svc.Stats()
			if err := sync(); err == nil {
				t.Fatal("SyncWith succeeded")
			}
			if a := a.svc.Stats(); a.SyncErrorsBy["out/malformed"]+a.SyncErrorsBy["out/oversize"] != before.SyncErrorsBy["out/malformed"]+before.SyncErrorsBy["out/oversize"]+1 {
				t.Errorf("the failed sync was not counted: %v", a.SyncErrorsBy)
			}
		})
	}
}

// TestSyncBump_OldInitiatorGetsWholeEntries: an initiator of 2.0.0 (an
// older node, here a raw stream) is sent whole entries, never bumps,
// even for a peer it holds with the same content at an older version.
func TestSyncBump_OldInitiatorGetsWholeEntries(t *testing.T) {
	nw := catalog.IDFromString("discovery-test/old-initiator")
	v := newNode(t, nw, withoutPubSub(), withParams(func(p *discovery.Params) { p.DisableGossip = true }))
	pKey, p := newKey(t)
	v0 := catalog.NewVersion(time.Now())
	v1 := v0.Next(time.Now().Add(time.Millisecond))
	newer := sealEntry(t, pKey, nw, v1)
	mergeAll(t, v.svc, []*catalog.SignedEntry{newer})
	x := newHost(t)
	connect(t, x, v.h)
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Scale(10*time.Second))
	defer cancel()
	st, err := x.NewStream(ctx, v.h.ID(), discovery.SyncProtocolV2(nw))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Reset()
	_ = st.SetDeadline(time.Now().Add(testutil.Scale(10 * time.Second)))
	own := sealEntry(t, hostKey(t, x), nw, catalog.NewVersion(time.Now())).Bytes()
	msg := frame(t, &pb.SyncHello{Network: nw[:], Entry: own, Salt: testSalt})
	msg = append(msg, frame(t, &pb.SyncDigest{Items: digestBytes([3]uint64{saltedKey(testSalt, p), uint64(v0.StartMS), uint64(v0.UpdateMS)}), Last: true})...)
	if _, err := st.Write(msg); err != nil {
		t.Fatal(err)
	}
	_ = st.CloseWrite()
	br := bufio.NewReader(st)
	var got [][]byte
	for {
		var pg pb.SyncPage
		if err := framer.ReadProto(br, 1<<20, &pg); err != nil {
			t.Fatalf("read page: %v", err)
		}
		if len(pg.Bumps) > 0 {
			t.Fatal("a 2.0.0 page carries bumps")
		}
		got = append(got, pg.Entries...)
		if pg.Last {
			break
		}
	}
	found := false
	for _, b := range got {
		found = found || bytes.Equal(b, newer.Bytes())
	}
	if !found {
		t.Errorf("the newer entry did not come whole (%d entries)", len(got))
	}
}

// TestSyncBump_HostileInitiator: in 2.1.0 the initiator answers the
// responder's want with entries or bumps. A bump for a peer the responder
// does not hold is refused and counted (rejected/bad_bump) without failing
// the sync; more bumps than wanted reset it with code 400.
func TestSyncBump_HostileInitiator(t *testing.T) {
	nw := catalog.IDFromString("discovery-test/hostile-initiator-bumps")
	v := newNode(t, nw, withoutPubSub(), withParams(func(p *discovery.Params) { p.DisableGossip = true }))
	pKey, p := newKey(t)
	beat := sealEntry(t, pKey, nw, catalog.NewVersion(time.Now()))
	sig, _ := beat.Signature()
	item := func(key uint64) []byte {
		b := binary.BigEndian.AppendUint64(nil, key)
		b = binary.BigEndian.AppendUint64(b, uint64(beat.Entry.Version.StartMS))
		b = binary.BigEndian.AppendUint64(b, uint64(beat.Entry.Version.UpdateMS))
		return binary.BigEndian.AppendUint64(b, 1) // some content hash
	}
	for _, tc := range []struct {
		name  string
		bumps int
		reset bool
	}{
		{"bump of a peer the responder lacks", 1, false},
		{"more bumps than wanted", 2, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x := newHost(t)
			connect(t, x, v.h)
			ctx, cancel := context.WithTimeout(context.Background(), testutil.Scale(10*time.Second))
			defer cancel()
			st, err := x.NewStream(ctx, v.h.ID(), discovery.SyncProtocol(nw))
			if err != nil {
				t.Fatal(err)
			}
			defer st.Reset()
			_ = st.SetDeadline(time.Now().Add(testutil.Scale(10 * time.Second)))
			own := sealEntry(t, hostKey(t, x), nw, catalog.NewVersion(time.Now())).Bytes()
			key := saltedKey(testSalt, p)
			msg := frame(t, &pb.SyncHello{Network: nw[:], Entry: own, Salt: testSalt})
			msg = append(msg, frame(t, &pb.SyncDigest{Items: item(key), Last: true})...)
			if _, err := st.Write(msg); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(st)
			var want []byte
			for {
				var pg pb.SyncPage
				if err := framer.ReadProto(br, 1<<20, &pg); err != nil {
					t.Fatalf("read page: %v", err)
				}
				if pg.Last {
					want = pg.Want
					break
				}
			}
			if len(want) != 16 || binary.BigEndian.Uint64(want) != key || binary.BigEndian.Uint64(want[8:]) != 0 {
				t.Fatalf("want %x, expected the key with a zero hash (the responder lacks the peer)", want)
			}
			var bumps []byte
			for range tc.bumps {
				bumps = append(bumps, bumpRecord(key, beat.Entry.Version, sig)...)
			}
			before := v.svc.Stats()
			if _, err := st.Write(frame(t, &pb.SyncPage{Bumps: bumps, Last: true})); err != nil {
				t.Fatal(err)
			}
			_ = st.CloseWrite()
			se, err := remoteReset(st)
			if tc.reset {
				if se == nil || se.ErrorCode != discovery.CodeProtocolViolation {
					t.Fatalf("stream ended with %v, want a reset with code 400", err)
				}
				testutil.Eventually(t, 5*time.Second, func() bool {
					return v.svc.Stats().SyncErrorsBy["in/too_many_entries"] == before.SyncErrorsBy["in/too_many_entries"]+1
				}, "in/too_many_entries did not move: %v", testutil.Lazy(func() any { return v.svc.Stats().SyncErrorsBy }))
				return
			}
			if se != nil || err != nil {
				t.Fatalf("stream ended with %v, want a clean close", err)
			}
			after := v.svc.Stats()
			if d := reasonDelta(before, after); d["rejected/bad_bump"] != 1 || after.SyncBumpsRefused != before.SyncBumpsRefused+1 {
				t.Errorf("refusals %v, SyncBumpsRefused %d -> %d; want one bad_bump", d, before.SyncBumpsRefused, after.SyncBumpsRefused)
			}
			if knows(v.svc, p) {
				t.Error("a bump made up a peer")
			}
		})
	}
}
