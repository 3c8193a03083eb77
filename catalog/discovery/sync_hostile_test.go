package discovery_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"google.golang.org/protobuf/proto"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/catalog/discovery"
	"github.com/mosaik-go/mosaik/catalog/pb"
	"github.com/mosaik-go/mosaik/internal/framer"
	"github.com/mosaik-go/mosaik/internal/testutil"
)

// TestSync_HostileStreamsAreReset opens raw sync streams and sends what no
// mosaik node sends. Each stream must be reset with the documented code,
// counted as refused, and the service must keep serving honest peers.
// Every case uses its own attacker host, so the per-peer rate limit does
// not interfere.
func TestSync_HostileStreamsAreReset(t *testing.T) {
	nw := catalog.IDFromString("discovery-test/hostile-sync")
	v := newNode(t, nw)
	other := catalog.IDFromString("discovery-test/hostile-sync-other")
	request := func(network catalog.NetworkID) []byte {
		b, err := proto.Marshal(&pb.SyncRequest{Network: network[:]})
		if err != nil {
			t.Fatal(err)
		}
		return framer.AppendFrame(nil, b)
	}
	// More entries than any sync may carry (16384), each tiny.
	many, err := proto.Marshal(&pb.SyncRequest{Network: nw[:], Entries: make([][]byte, 16385)})
	if err != nil {
		t.Fatal(err)
	}
	tooMany := framer.AppendFrame(nil, many)
	cases := []struct {
		name string
		data []byte
		// closeWrite ends the request after data; without it the stream
		// stays open, so a server waiting for more bytes would hang until
		// its SyncTimeout.
		closeWrite bool
		code       network.StreamErrorCode
		malformed  bool // counted as rejected/malformed
	}{
		{"framed garbage", framer.AppendFrame(nil, []byte{0xff, 0xff, 0xff}), true, discovery.CodeProtocolViolation, true},
		{"truncated frame", []byte("GET / HTTP/1.1\r\n\r\n"), true, discovery.CodeProtocolViolation, true},
		{"1 GiB length prefix", binary.AppendUvarint(nil, 1<<30), false, discovery.CodeProtocolViolation, true},
		{"request of another network", request(other), true, discovery.CodeDifferentNetwork, false},
		{"too many entries", tooMany, true, discovery.CodeProtocolViolation, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			x := newHost(t)
			connect(t, x, v.h)
			before := v.svc.Stats()
			ctx, cancel := context.WithTimeout(context.Background(), testutil.Scale(10*time.Second))
			defer cancel()
			var ms0 runtime.MemStats
			runtime.ReadMemStats(&ms0)
			start := time.Now()
			st := openSync(t, ctx, x, v.h.ID(), nw)
			_ = st.SetDeadline(time.Now().Add(testutil.Scale(10 * time.Second)))
			// The server may reset the stream before the write side is
			// closed: a write error then carries the same reset.
			_, werr := st.Write(tc.data)
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
				// Refused on the length alone: the server did not wait for
				// the body (which would take SyncTimeout) nor allocate it.
				var ms1 runtime.MemStats
				runtime.ReadMemStats(&ms1)
				if grew := ms1.TotalAlloc - ms0.TotalAlloc; grew > 256<<20 {
					t.Errorf("the process allocated %d MiB while refusing a 1 GiB frame", grew>>20)
				}
				if limit := discovery.TestParams().SyncTimeout; took >= limit {
					t.Errorf("refusal took %v, as long as the sync timeout %v", took, limit)
				}
			}
			testutil.Eventually(t, 5*time.Second, func() bool { return v.svc.Stats().SyncsRefused == before.SyncsRefused+1 },
				"SyncsRefused did not move by one: %d -> %d", before.SyncsRefused, testutil.Lazy(func() any { return v.svc.Stats().SyncsRefused }))
			after := v.svc.Stats()
			var want uint64
			if tc.malformed {
				want = 1
			}
			if d := after.RejectedBy["rejected/malformed"] - before.RejectedBy["rejected/malformed"]; d != want {
				t.Errorf("rejected/malformed moved by %d, want %d", d, want)
			}
			if after.SyncsServed != before.SyncsServed {
				t.Error("a hostile sync was counted as served")
			}
		})
	}
	if v.svc.Catalog().Len() != 0 {
		t.Errorf("hostile syncs added %d peers", v.svc.Catalog().Len())
	}

	// The service still serves an honest peer.
	honest := newNode(t, nw)
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Scale(10*time.Second))
	defer cancel()
	if err := honest.svc.SyncWith(ctx, addrInfo(v.h)); err != nil {
		t.Fatalf("honest SyncWith after the attacks: %v", err)
	}
	if !knows(v.svc, honest.h.ID()) || !knows(honest.svc, v.h.ID()) {
		t.Error("honest sync did not exchange entries")
	}
}

// TestSync_PerPeerRateLimit fires a burst of well-formed syncs from one
// peer: beyond SyncBurst (plus what refills meanwhile) they are reset with
// libp2p's rate-limit code, while another peer's SyncWith succeeds at the
// same time.
func TestSync_PerPeerRateLimit(t *testing.T) {
	nw := catalog.IDFromString("discovery-test/rate-limit")
	p := discovery.TestParams()
	v := newNode(t, nw)
	honest := newNode(t, nw)
	x := newHost(t)
	connect(t, x, v.h)

	ctx, cancel := context.WithTimeout(context.Background(), testutil.Scale(15*time.Second))
	defer cancel()
	const n = 12
	errs := make([]error, n)
	var honestErr error
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		wg.Go(func() {
			resp, err := rawSync(ctx, x, v.h.ID(), nw, p.MaxSyncMessage)
			if err == nil && len(resp.Entries) == 0 {
				err = errors.New("empty sync response: the server's own entry is missing")
			}
			errs[i] = err
		})
	}
	wg.Go(func() { honestErr = honest.svc.SyncWith(ctx, addrInfo(v.h)) })
	wg.Wait()
	took := time.Since(start)

	if honestErr != nil {
		t.Errorf("honest SyncWith during the burst: %v", honestErr)
	}
	var served, limited int
	for i, err := range errs {
		var se *network.StreamError
		switch {
		case err == nil:
			served++
		case errors.As(err, &se) && se.Remote && se.ErrorCode == network.StreamRateLimited:
			limited++
		default:
			t.Errorf("sync %d failed otherwise than by the rate limit: %v", i, err)
		}
	}
	t.Logf("burst of %d in %v: %d served, %d rate limited", n, took, served, limited)
	if served == 0 {
		t.Error("no sync of the burst was served")
	}
	if limited == 0 {
		t.Error("no sync of the burst was rate limited")
	}
	if maxServed := p.SyncBurst + int(took/p.SyncMinInterval) + 1; served > maxServed {
		t.Errorf("%d syncs served in %v, the limit allows at most %d", served, took, maxServed)
	}
	if st := v.svc.Stats(); st.SyncsRefused < uint64(limited) {
		t.Errorf("SyncsRefused = %d, but %d syncs were rate limited", st.SyncsRefused, limited)
	}
	if !knows(v.svc, honest.h.ID()) || !knows(honest.svc, v.h.ID()) {
		t.Error("honest sync did not exchange entries")
	}
}

// TestSync_ForgedEntriesInRequest: a well-formed sync request that carries
// forged entries is served, but only valid entries enter the catalog and
// each forgery is counted for its reason.
func TestSync_ForgedEntriesInRequest(t *testing.T) {
	nw := catalog.IDFromString("discovery-test/forged-request")
	v := newNode(t, nw, withParams(func(p *discovery.Params) { p.DisableGossip = true }), withoutPubSub())
	x := newHost(t)
	xKey := hostKey(t, x)
	_, third := newKey(t)
	now := catalog.NewVersion(time.Now())
	other := catalog.IDFromString("discovery-test/forged-request-other")
	entries := [][]byte{
		seal(t, xKey, catalog.EntryDomain, catalog.EntryPayloadType, entryPB(third, nw, now)),      // signer mismatch
		sealEntry(t, xKey, other, now).Bytes(),                                                     // other network
		[]byte("garbage"),                                                                          // malformed
		tamper(t, sealEntry(t, xKey, nw, now).Bytes(), func(e *pb.Entry) { e.Version.UpdateMs++ }), // bad signature
		sealEntry(t, xKey, nw, now).Bytes(),                                                        // valid
	}
	connect(t, x, v.h)
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Scale(10*time.Second))
	defer cancel()
	before := v.svc.Stats()
	st, err := x.NewStream(ctx, v.h.ID(), discovery.SyncProtocolV1(nw))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := framer.WriteProto(st, &pb.SyncRequest{Network: nw[:], Entries: entries}); err != nil {
		t.Fatal(err)
	}
	if err := st.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	var resp pb.SyncResponse
	if err := framer.ReadProto(bufio.NewReader(st), 1<<20, &resp); err != nil {
		t.Fatalf("sync with forged entries not served: %v", err)
	}
	after := v.svc.Stats()
	d := reasonDelta(before, after)
	for _, k := range []string{"rejected/signer_mismatch", "rejected/other_network", "rejected/malformed", "rejected/bad_signature"} {
		if d[k] != 1 {
			t.Errorf("%s moved by %d, want 1 (delta %v)", k, d[k], d)
		}
	}
	if knows(v.svc, third) {
		t.Error("forged entry of a third peer merged")
	}
	if !knows(v.svc, x.ID()) || v.svc.Catalog().Len() != 1 {
		t.Errorf("catalog holds %d peers, want only the sender's valid entry", v.svc.Catalog().Len())
	}
	// Counted after the response is written, so possibly after we read it.
	testutil.Eventually(t, 5*time.Second, func() bool { return v.svc.Stats().SyncsServed == before.SyncsServed+1 },
		"SyncsServed did not move by one")
}

// TestSync_ConcurrencyLimit: with MaxConcurrentSyncs (1) held by a sync
// that has not sent its whole request, a new sync takes the slot: it is
// served, and the stalled one is reset with libp2p's resource-limit code
// and counted as refused. Both peers are members of the catalog (they
// synced their entries in first), so only the overall cap applies, not
// the share of peers without an entry (TestSync_FloodFromManyPeers). A
// refusal when every slot is past its request is TestSlots_Eviction's.
func TestSync_ConcurrencyLimit(t *testing.T) {
	nw := catalog.IDFromString("discovery-test/sync-capacity")
	p := discovery.TestParams()
	p.MaxConcurrentSyncs = 1
	p.SyncBurst = 1000                 // keep the rate limit out of the way
	p.Catalog.PurgeAfter = time.Minute // nothing re-announces the raw peers' entries
	v := newNode(t, nw, withParams(func(q *discovery.Params) { *q = p }))
	slow, y := newHost(t), newHost(t)
	connect(t, slow, v.h)
	connect(t, y, v.h)
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Scale(15*time.Second))
	defer cancel()
	for _, x := range []host.Host{slow, y} {
		own := sealEntry(t, hostKey(t, x), nw, catalog.NewVersion(time.Now())).Bytes()
		// The previous joining sync may still hold the only slot for a
		// moment after its response arrived: then this one is refused for
		// capacity; try again.
		testutil.Eventually(t, 5*time.Second, func() bool {
			st := openSync(t, ctx, x, v.h.ID(), nw)
			err := framer.WriteProto(st, &pb.SyncRequest{Network: nw[:], Entries: [][]byte{own}})
			if err == nil {
				var resp pb.SyncResponse
				err = framer.ReadProto(bufio.NewReader(st), p.MaxSyncMessage, &resp)
			}
			if err != nil {
				t.Logf("joining sync failed, trying again: %v", err)
			}
			return err == nil
		}, "no joining sync succeeded")
		if !knows(v.svc, x.ID()) {
			t.Fatal("the joining sync did not make the peer a member")
		}
	}

	// A slow sync holds the only slot: it sends the first byte of a length
	// prefix and then nothing (the server waits for the rest until its
	// SyncTimeout).
	var held network.Stream
	hold := func() {
		held = openSync(t, ctx, slow, v.h.ID(), nw)
		if _, err := held.Write([]byte{0x80}); err != nil {
			t.Fatal(err)
		}
	}
	hold()
	// Once the slow sync is in the handler (our read of it times out
	// rather than seeing a reset), y's sync evicts it. Before that, y's
	// sync may be served first and the slow one then find the slot taken
	// by y's, which is past its request: hold it again.
	testutil.Eventually(t, 5*time.Second, func() bool {
		_ = held.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		var ne net.Error
		if _, err := held.Read(make([]byte, 1)); !errors.As(err, &ne) || !ne.Timeout() {
			hold() // refused (reset), not waiting in the handler
			return false
		}
		return true
	}, "the slow sync never waited in the handler")
	refused := v.svc.Stats().SyncsRefused
	if _, err := rawSync(ctx, y, v.h.ID(), nw, p.MaxSyncMessage); err != nil {
		t.Fatalf("a sync while a stalled one held the only slot: %v", err)
	}
	_ = held.SetReadDeadline(time.Now().Add(testutil.Scale(5 * time.Second)))
	se, err := remoteReset(held)
	if se == nil || se.ErrorCode != network.StreamResourceLimitExceeded {
		t.Fatalf("the stalled sync ended with %v, want a reset with the resource-limit code", err)
	}
	if got := v.svc.Stats().SyncsRefused; got != refused+1 {
		t.Errorf("SyncsRefused moved from %d to %d, want one eviction", refused, got)
	}
}
