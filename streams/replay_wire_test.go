package streams_test

import (
	"bufio"
	"encoding/binary"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"google.golang.org/protobuf/proto"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/node"
	"github.com/mosaik-go/mosaik/streams"
	"github.com/mosaik-go/mosaik/streams/pb"
)

// TestReplay_WireInterop speaks the handshake by hand, as an old consumer
// (a Subscribe without features or resume fields) and as a new one, to a
// producer with a replay window and to one without:
//   - an old consumer of a producer with a window is served live, as before;
//   - a new consumer resuming within the run gets the window from the
//     requested point (what left it is skipped: its first frame jumps),
//     then the live datums;
//   - resuming with another epoch (a producer restart) gets only live ones;
//   - a producer without a window does not confirm feature 2 and serves
//     live datums, whatever the Subscribe asks.
func TestReplay_WireInterop(t *testing.T) {
	pnode := startNode(t, node.WithDiscoveryParams(rbLongLivedParams()))
	bytesCodec := streams.WithCodec[[]byte](streams.Bytes{})
	withWin := mustProducer[[]byte](t, pnode, "replay-wire", bytesCodec, streams.WithReplay(streams.Replay{Datums: 10}))
	noWin := mustProducer[[]byte](t, pnode, "replay-wire-nowin", bytesCodec)
	raw, key := rbRawHost(t)
	local, err := catalog.NewLocal(key, pnode.Network(), time.Now(), func(e *catalog.Entry) { e.Addrs = raw.Addrs() })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pnode.Discovery().Store().Merge(local.Current(), time.Now()); err != nil {
		t.Fatal(err)
	}
	raw.Peerstore().AddAddrs(pnode.ID(), pnode.Host().Addrs(), time.Hour)
	nw := pnode.Network()
	type sub struct {
		st  network.Stream
		r   *bufio.Reader
		acc *pb.Accept
	}
	open := func(t *testing.T, s *pb.Subscribe) *sub {
		t.Helper()
		st, err := raw.NewStream(testCtx(t, 10*time.Second), pnode.ID(), streams.ProtocolID)
		if err != nil {
			t.Fatalf("NewStream: %v", err)
		}
		t.Cleanup(func() { _ = st.Reset() })
		s.Network = nw[:]
		if _, err := st.Write(rbFrame(rbFrameSubscribe, s)); err != nil {
			t.Fatal(err)
		}
		_ = st.SetReadDeadline(time.Now().Add(20 * time.Second))
		r := bufio.NewReader(st)
		typ, body, err := rbReadFrame(r, 4<<10)
		if err != nil || typ != rbFrameAccept {
			t.Fatalf("answer to Subscribe: type %#x, %v", typ, err)
		}
		acc := &pb.Accept{}
		if err := proto.Unmarshal(body, acc); err != nil {
			t.Fatal(err)
		}
		return &sub{st, r, acc}
	}
	// seqs reads n data frames and returns their sequence numbers.
	seqs := func(t *testing.T, s *sub, n int) []uint64 {
		t.Helper()
		var out []uint64
		for range n {
			typ, body, err := rbReadFrame(s.r, 1<<20)
			if err != nil || (typ != rbFrameData && typ != 0x11) { // data or timed data: both start with the sequence number
				t.Fatalf("data frame: type %#x, %v", typ, err)
			}
			seq, k := binary.Uvarint(body)
			if k <= 0 {
				t.Fatal("bad sequence number")
			}
			out = append(out, seq)
		}
		return out
	}
	span := func(first, last uint64) []uint64 {
		var out []uint64
		for s := first; s <= last; s++ {
			out = append(out, s)
		}
		return out
	}
	ctx := testCtx(t, 30*time.Second)
	send := func(p *streams.Producer[[]byte], n int) {
		t.Helper()
		for i := range n {
			if err := p.Send(ctx, rbU64(uint64(i))); err != nil {
				t.Fatal(err)
			}
		}
	}
	sid, nsid := withWin.StreamID(), noWin.StreamID()

	old := open(t, &pb.Subscribe{Stream: sid[:]})
	if old.acc.GetFeatures() != 0 || old.acc.GetEpoch() == 0 {
		t.Fatalf("Accept to an old consumer: features %d, epoch %d", old.acc.GetFeatures(), old.acc.GetEpoch())
	}
	epoch := old.acc.GetEpoch()
	send(withWin, 30)
	if got := seqs(t, old, 30); !slices.Equal(got, span(1, 30)) {
		t.Fatalf("old consumer got %v", got)
	}

	// Resume after 5: 6..20 left the window of 10, 21..30 are resent.
	resumed := open(t, &pb.Subscribe{Stream: sid[:], Features: 3, Resume: true, ResumeEpoch: epoch, ResumeAfter: 5})
	if f := resumed.acc.GetFeatures(); f != 3 {
		t.Fatalf("Accept to a resuming consumer confirms features %d, want 3", f)
	}
	if got := seqs(t, resumed, 10); !slices.Equal(got, span(21, 30)) {
		t.Fatalf("resumed consumer got %v, want 21..30", got)
	}
	// Resume after 27: 28..30 resent, nothing expired.
	late := open(t, &pb.Subscribe{Stream: sid[:], Features: 2, Resume: true, ResumeEpoch: epoch, ResumeAfter: 27})
	if got := seqs(t, late, 3); !slices.Equal(got, span(28, 30)) {
		t.Fatalf("consumer resuming after 27 got %v", got)
	}
	// Another epoch: live only.
	other := open(t, &pb.Subscribe{Stream: sid[:], Features: 2, Resume: true, ResumeEpoch: epoch + 1, ResumeAfter: 5})
	send(withWin, 1)
	for _, s := range []*sub{old, resumed, late, other} {
		if got := seqs(t, s, 1); got[0] != 31 {
			t.Fatalf("after the resumes, a subscription got seq %d, want 31", got[0])
		}
	}

	nw1 := open(t, &pb.Subscribe{Stream: nsid[:], Features: 3})
	send(noWin, 5)
	_ = seqs(t, nw1, 5)
	nw2 := open(t, &pb.Subscribe{Stream: nsid[:], Features: 3, Resume: true, ResumeEpoch: nw1.acc.GetEpoch(), ResumeAfter: 1})
	if f := nw2.acc.GetFeatures(); f != 1 {
		t.Fatalf("a producer without a window confirms features %d, want 1", f)
	}
	send(noWin, 1)
	if got := seqs(t, nw2, 1); got[0] != 6 {
		t.Fatalf("a producer without a window sent seq %d, want the live 6", got[0])
	}
	for _, h := range pnode.Streams().Handles() {
		if h.Stream == sid && (h.Replay == nil || h.Replay.Replayed != 13 || h.Replay.Expired != 15) {
			t.Errorf("replay stats %+v, want 13 replayed and 15 expired", h.Replay)
		}
		if h.Stream == nsid && h.Replay != nil {
			t.Errorf("a producer without a window reports %+v", h.Replay)
		}
	}
}
