package discovery_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"runtime"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"google.golang.org/protobuf/proto"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/catalog/discovery"
	"github.com/mosaik-go/mosaik/catalog/pb"
	"github.com/mosaik-go/mosaik/internal/framer"
	"github.com/mosaik-go/mosaik/internal/testutil"
)

func frame(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return framer.AppendFrame(nil, b)
}

// digestBytes packs digest items (key, start_ms, update_ms).
func digestBytes(items ...[3]uint64) []byte {
	var b []byte
	for _, it := range items {
		for _, x := range it {
			b = binary.BigEndian.AppendUint64(b, x)
		}
	}
	return b
}

var testSalt = []byte("saltsalt")

// TestSyncV2_HostileRequestsAreReset sends sync 2.0.0 streams no mosaik
// node sends. Each must be reset with the documented code and counted
// under its cause ("in/<cause>"), quickly and without allocating what a
// length prefix claims; the service then still serves an honest peer.
// Every case uses its own attacker host (the per-peer rate limit stays
// out of the way) whose hello, where a case needs a valid one, carries
// its own fresh entry.
func TestSyncV2_HostileRequestsAreReset(t *testing.T) {
	nw := catalog.IDFromString("discovery-test/hostile-sync-v2")
	other := catalog.IDFromString("discovery-test/hostile-sync-v2-other")
	v := newNode(t, nw, withoutPubSub(), withParams(func(p *discovery.Params) { p.DisableGossip = true }))
	thirdKey, third := newKey(t)
	hello := func(own []byte) []byte {
		return frame(t, &pb.SyncHello{Network: nw[:], Entry: own, Salt: testSalt})
	}
	cases := []struct {
		name       string
		data       func(own []byte) []byte
		closeWrite bool
		code       network.StreamErrorCode
		cause      string
	}{
		{"garbage hello", func([]byte) []byte { return framer.AppendFrame(nil, []byte{0xff, 0xff, 0xff}) }, true, discovery.CodeProtocolViolation, "malformed"},
		{"1 GiB hello length", func([]byte) []byte { return binary.AppendUvarint(nil, 1<<30) }, false, discovery.CodeProtocolViolation, "oversize"},
		{"hello of another network", func(own []byte) []byte {
			return frame(t, &pb.SyncHello{Network: other[:], Entry: own, Salt: testSalt})
		}, true, discovery.CodeDifferentNetwork, "other_network"},
		{"short salt", func(own []byte) []byte {
			return frame(t, &pb.SyncHello{Network: nw[:], Entry: own, Salt: []byte{1}})
		}, true, discovery.CodeProtocolViolation, "malformed"},
		{"forged hello entry", func([]byte) []byte {
			return hello(tamper(t, sealEntry(t, thirdKey, nw, catalog.NewVersion(time.Now())).Bytes(), func(e *pb.Entry) { e.Version.UpdateMs++ }))
		}, true, discovery.CodeProtocolViolation, "bad_entry"},
		{"another peer's entry", func([]byte) []byte {
			return hello(sealEntry(t, thirdKey, nw, catalog.NewVersion(time.Now())).Bytes())
		}, true, discovery.CodeProtocolViolation, "foreign_entry"},
		{"non-member with a stale entry", nil, true, discovery.CodeUnknownPeer, "non_member"},
		{"non-member without an entry", func([]byte) []byte {
			return frame(t, &pb.SyncHello{Network: nw[:], Salt: testSalt})
		}, true, discovery.CodeProtocolViolation, "bad_entry"},
		{"digest out of order", func(own []byte) []byte {
			return append(hello(own), frame(t, &pb.SyncDigest{Items: digestBytes([3]uint64{5, 1, 1}, [3]uint64{4, 1, 1}), Last: true})...)
		}, true, discovery.CodeProtocolViolation, "digest_unsorted"},
		{"digest key repeated across pages", func(own []byte) []byte {
			return append(append(hello(own), frame(t, &pb.SyncDigest{Items: digestBytes([3]uint64{5, 1, 1})})...),
				frame(t, &pb.SyncDigest{Items: digestBytes([3]uint64{5, 1, 2}), Last: true})...)
		}, true, discovery.CodeProtocolViolation, "digest_unsorted"},
		{"digest of partial items", func(own []byte) []byte {
			return append(hello(own), frame(t, &pb.SyncDigest{Items: make([]byte, 25), Last: true})...)
		}, true, discovery.CodeProtocolViolation, "malformed"},
		{"1 GiB digest page", func(own []byte) []byte {
			return binary.AppendUvarint(hello(own), 1<<30)
		}, false, discovery.CodeProtocolViolation, "oversize"},
		{"digest page over 4096 items", func(own []byte) []byte {
			items := make([][3]uint64, 4097)
			for i := range items {
				items[i] = [3]uint64{uint64(i + 1), 1, 1}
			}
			return append(hello(own), frame(t, &pb.SyncDigest{Items: digestBytes(items...), Last: true})...)
		}, true, discovery.CodeProtocolViolation, "oversize"},
		{"more entries than wanted", func(own []byte) []byte {
			// The responder lacks key 1, so it wants one entry; two come.
			b := append(hello(own), frame(t, &pb.SyncDigest{Items: digestBytes([3]uint64{1, 1, 1}), Last: true})...)
			return append(b, frame(t, &pb.SyncPage{Entries: [][]byte{[]byte("a"), []byte("b")}, Last: true})...)
		}, false, discovery.CodeProtocolViolation, "too_many_entries"},
		{"endless empty digest pages", func(own []byte) []byte {
			return append(append(hello(own), frame(t, &pb.SyncDigest{})...), frame(t, &pb.SyncDigest{})...)
		}, false, discovery.CodeProtocolViolation, "empty_page"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			x := newHost(t)
			own := sealEntry(t, hostKey(t, x), nw, catalog.NewVersion(time.Now())).Bytes()
			data := tc.data
			if data == nil { // the stale entry
				data = func([]byte) []byte {
					return hello(sealEntry(t, hostKey(t, x), nw, catalog.NewVersion(time.Now().Add(-time.Hour))).Bytes())
				}
			}
			connect(t, x, v.h)
			before := v.svc.Stats()
			ctx, cancel := context.WithTimeout(context.Background(), testutil.Scale(10*time.Second))
			defer cancel()
			var ms0 runtime.MemStats
			runtime.ReadMemStats(&ms0)
			start := time.Now()
			st, err := x.NewStream(ctx, v.h.ID(), discovery.SyncProtocolV2(nw))
			if err != nil {
				t.Fatal(err)
			}
			defer st.Reset()
			_ = st.SetDeadline(time.Now().Add(testutil.Scale(10 * time.Second)))
			_, werr := st.Write(data(own))
			if werr == nil && tc.closeWrite {
				werr = st.CloseWrite()
			}
			se, err := remoteReset(st)
			if se == nil && werr != nil {
				err = werr
				if !errors.As(werr, &se) || !se.Remote {
					se = nil
				}
			}
			took := time.Since(start)
			if se == nil {
				t.Fatalf("stream not reset by the server: read ended with %v", err)
			}
			if se.ErrorCode != tc.code {
				t.Fatalf("reset with code %d, want %d (%v)", se.ErrorCode, tc.code, err)
			}
			if !tc.closeWrite {
				var ms1 runtime.MemStats
				runtime.ReadMemStats(&ms1)
				if grew := ms1.TotalAlloc - ms0.TotalAlloc; grew > 256<<20 {
					t.Errorf("the process allocated %d MiB while refusing", grew>>20)
				}
				if limit := discovery.TestParams().SyncTimeout; took >= limit {
					t.Errorf("refusal took %v, as long as the sync timeout %v", took, limit)
				}
			}
			key := "in/" + tc.cause
			testutil.Eventually(t, 5*time.Second, func() bool { return v.svc.Stats().SyncErrorsBy[key] == before.SyncErrorsBy[key]+1 },
				"%s did not move by one: %v", key, testutil.Lazy(func() any { return v.svc.Stats().SyncErrorsBy }))
			after := v.svc.Stats()
			if after.SyncsRefused != before.SyncsRefused+1 {
				t.Errorf("SyncsRefused moved by %d, want 1", after.SyncsRefused-before.SyncsRefused)
			}
			if after.SyncsServed != before.SyncsServed {
				t.Error("a hostile sync was counted as served")
			}
		})
	}
	if knows(v.svc, third) {
		t.Error("a hostile hello put a third peer into the catalog")
	}

	honest := newNode(t, nw, withoutPubSub(), withParams(func(p *discovery.Params) { p.DisableGossip = true }))
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Scale(10*time.Second))
	defer cancel()
	if err := honest.svc.SyncWith(ctx, addrInfo(v.h)); err != nil {
		t.Fatalf("honest SyncWith after the attacks: %v", err)
	}
	if !knows(v.svc, honest.h.ID()) || !knows(honest.svc, v.h.ID()) {
		t.Error("honest sync did not exchange entries")
	}
}

// TestSyncV2_HostileResponder: the initiator's side of sync 2.0.0 must
// survive a responder that lies in its pages: each bad stream fails the
// sync with its cause counted ("out/<cause>"), quickly, and entries that
// fail validation are refused one by one, counted by reason, while the
// valid ones of the page are merged.
func TestSyncV2_HostileResponder(t *testing.T) {
	nw := catalog.IDFromString("discovery-test/hostile-responder-v2")
	a := newNode(t, nw, withoutPubSub(), withParams(func(p *discovery.Params) { p.DisableGossip, p.DisableSync = true, true }))
	r := newHost(t)
	rKey := hostKey(t, r)
	_, third := newKey(t)
	now := catalog.NewVersion(time.Now())
	done := make(chan struct{})
	defer close(done)
	serve := func(reply func(network.Stream)) {
		r.SetStreamHandler(discovery.SyncProtocolV2(nw), func(st network.Stream) {
			var hello pb.SyncHello
			if err := framer.ReadProto(bufio.NewReader(st), 1<<20, &hello); err != nil {
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
	own := sealEntry(t, rKey, nw, now).Bytes()
	cases := []struct {
		name  string
		reply func(st network.Stream)
		cause string
	}{
		{"1 GiB page", func(st network.Stream) {
			_, _ = st.Write(binary.AppendUvarint(nil, 1<<30))
			<-done // hold the stream: waiting for the body would hang
		}, "oversize"},
		{"garbage page", func(st network.Stream) {
			_, _ = st.Write(framer.AppendFrame(nil, []byte{0xff, 0xff, 0xff}))
			_ = st.Close()
		}, "malformed"},
		{"page of 257 entries", func(st network.Stream) {
			_, _ = st.Write(frame(t, &pb.SyncPage{Entries: make([][]byte, 257), Last: true}))
			_ = st.Close()
		}, "oversize"},
		{"endless empty pages", func(st network.Stream) {
			for {
				if _, err := st.Write(frame(t, &pb.SyncPage{})); err != nil {
					return
				}
				select {
				case <-done:
					return
				default:
				}
			}
		}, "empty_page"},
		{"want naming one key twice", func(st network.Stream) {
			key := binary.BigEndian.AppendUint64(nil, 7)
			_, _ = st.Write(frame(t, &pb.SyncPage{Last: true, Want: append(key, key...)}))
			_ = st.Close()
		}, "malformed"},
		{"want keys out of order", func(st network.Stream) {
			want := binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, 9), 8)
			_, _ = st.Write(frame(t, &pb.SyncPage{Last: true, Want: want}))
			_ = st.Close()
		}, "malformed"},
		{"no end marker", func(st network.Stream) {
			_, _ = st.Write(frame(t, &pb.SyncPage{Entries: [][]byte{own}}))
			_ = st.Close()
		}, "truncated"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			serve(tc.reply)
			before := a.svc.Stats()
			start := time.Now()
			if err := sync(); err == nil {
				t.Fatal("SyncWith succeeded")
			}
			if took := time.Since(start); took >= testutil.Scale(5*time.Second) {
				t.Errorf("failing the sync took %v", took)
			}
			key := "out/" + tc.cause
			if after := a.svc.Stats(); after.SyncErrorsBy[key] != before.SyncErrorsBy[key]+1 || after.SyncsFailed != before.SyncsFailed+1 {
				t.Errorf("%s moved %d -> %d, SyncsFailed %d -> %d", key, before.SyncErrorsBy[key], after.SyncErrorsBy[key], before.SyncsFailed, after.SyncsFailed)
			}
		})
	}

	t.Run("entries that fail validation", func(t *testing.T) {
		other := catalog.IDFromString("discovery-test/hostile-responder-v2-other")
		forged := seal(t, rKey, catalog.EntryDomain, catalog.EntryPayloadType, entryPB(third, nw, now))
		foreign := sealEntry(t, rKey, other, now).Bytes()
		serve(func(st network.Stream) {
			_, _ = st.Write(frame(t, &pb.SyncPage{Entries: [][]byte{forged, foreign}}))
			_, _ = st.Write(frame(t, &pb.SyncPage{Entries: [][]byte{[]byte("garbage"), own}, Last: true}))
			_ = st.Close()
		})
		before := a.svc.Stats()
		if err := sync(); err != nil {
			t.Fatalf("SyncWith: %v", err)
		}
		d := reasonDelta(before, a.svc.Stats())
		for _, k := range []string{"rejected/signer_mismatch", "rejected/other_network", "rejected/malformed"} {
			if d[k] != 1 {
				t.Errorf("%s moved by %d, want 1 (delta %v)", k, d[k], d)
			}
		}
		if knows(a.svc, third) {
			t.Error("the forged entry of a third peer was merged")
		}
		if !knows(a.svc, r.ID()) {
			t.Error("the valid entry of the page was not merged")
		}
	})
}

// TestSyncV2_EndlessDigest: a digest that keeps going, in valid ascending
// pages, is refused once it passes 1 048 576 items, with its cause
// counted, while the responder holds one page at a time.
func TestSyncV2_EndlessDigest(t *testing.T) {
	nw := catalog.IDFromString("discovery-test/endless-digest")
	v := newNode(t, nw, withoutPubSub(), withParams(func(p *discovery.Params) {
		p.DisableGossip = true
		p.SyncTimeout = time.Minute // the cap, not the deadline, must end it
	}))
	x := newHost(t)
	connect(t, x, v.h)
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Scale(time.Minute))
	defer cancel()
	st, err := x.NewStream(ctx, v.h.ID(), discovery.SyncProtocolV2(nw))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Reset()
	_ = st.SetDeadline(time.Now().Add(testutil.Scale(time.Minute)))
	own := sealEntry(t, hostKey(t, x), nw, catalog.NewVersion(time.Now())).Bytes()
	before := v.svc.Stats()
	// Read the responder's pages meanwhile, as an initiator must.
	readErr := make(chan error, 1)
	go func() {
		se, err := remoteReset(st)
		if se != nil {
			err = se
		}
		readErr <- err
	}()
	if _, err := st.Write(frame(t, &pb.SyncHello{Network: nw[:], Entry: own, Salt: testSalt})); err != nil {
		t.Fatal(err)
	}
	page := make([][3]uint64, 4096)
	key := uint64(0)
	for range 1<<20/4096 + 1 {
		for i := range page {
			key++
			page[i] = [3]uint64{key, 1, 1}
		}
		if _, err := st.Write(frame(t, &pb.SyncDigest{Items: digestBytes(page...)})); err != nil {
			break // reset by the responder
		}
	}
	err = <-readErr
	var se *network.StreamError
	if !errors.As(err, &se) || se.ErrorCode != discovery.CodeProtocolViolation {
		t.Fatalf("endless digest ended with %v, want a reset with code 400", err)
	}
	key2 := "in/digest_too_long"
	testutil.Eventually(t, 5*time.Second, func() bool { return v.svc.Stats().SyncErrorsBy[key2] == before.SyncErrorsBy[key2]+1 },
		"%s did not move by one: %v", key2, testutil.Lazy(func() any { return v.svc.Stats().SyncErrorsBy }))
}
