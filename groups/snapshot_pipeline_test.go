package groups

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/internal/framer"
	"github.com/mosaik-go/mosaik/internal/testutil"
)

// Snapshot protocol 1.1.0 on real hosts: a holder answering many chunk
// requests on one stream, in order, and the fetcher's session over it.

// pipelinePair is a fetcher host and a holder host serving f's snapshot
// on 1.1.0 through serve (nil: the fixture's cache, honestly).
func pipelinePair(t *testing.T, f fixture, serve func(from peer.ID, req []byte) (snapshotChunk, []byte)) (fetcher, holder *bondNode) {
	t.Helper()
	fetcher, holder = newBondNode(t, bare()), newBondNode(t, bare())
	if serve == nil {
		serve = cacheServe(f.cache)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	closed := false
	holder.h.SetStreamHandler(SnapshotPipelineProtocolID(testNetwork), func(st network.Stream) {
		mu.Lock()
		if closed {
			mu.Unlock()
			_ = st.Reset()
			return
		}
		wg.Add(1)
		mu.Unlock()
		defer wg.Done()
		servePipelined(st, serve, func(string, ...any) {})
	})
	t.Cleanup(func() {
		holder.h.RemoveStreamHandler(SnapshotPipelineProtocolID(testNetwork))
		mu.Lock()
		closed = true
		mu.Unlock()
		wg.Wait()
	})
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Scale(5*time.Second))
	defer cancel()
	if err := fetcher.h.Connect(ctx, peer.AddrInfo{ID: holder.h.ID(), Addrs: holder.h.Addrs()}); err != nil {
		t.Fatal(err)
	}
	return fetcher, holder
}

// cacheServe answers requests from c, as Service.serveSnapshotReply does
// for a bonded peer.
func cacheServe(c *snapshotCache) func(peer.ID, []byte) (snapshotChunk, []byte) {
	return func(_ peer.ID, raw []byte) (snapshotChunk, []byte) {
		req, err := decodeSnapshotChunkRequest(raw)
		if err != nil {
			return snapshotChunk{}, encodeSnapshotRefusal(snapshotBadRequest, err.Error())
		}
		chunk, err := c.serve(req, time.Now())
		if err != nil {
			ref := err.(*snapshotRefusedError)
			return snapshotChunk{}, encodeSnapshotRefusal(ref.Code, ref.Reason)
		}
		return chunk, nil
	}
}

func openSession(t *testing.T, fetcher, holder *bondNode) *snapshotSession {
	t.Helper()
	st, err := fetcher.h.NewStream(tctx(t, 5*time.Second), holder.h.ID(), SnapshotPipelineProtocolID(testNetwork))
	if err != nil {
		t.Fatal(err)
	}
	s := newSnapshotSession(st, holder.h.ID())
	t.Cleanup(s.close)
	return s
}

// Many requests in flight on one stream come back in order, each read
// into its caller's memory; a refusal fails its request and ends the
// session.
func TestSnapshotPipeline_InOrderInPlace(t *testing.T) {
	f := newFixture(1<<20 + 123)
	fetcher, holder := pipelinePair(t, f, nil)
	s := openSession(t, fetcher, holder)
	const size = 64 << 10
	got := make([]byte, len(f.data))
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for off := 0; off < len(f.data); off += size {
		n := min(size, len(f.data)-off)
		req := snapshotChunkRequest{Anchor: f.desc.Anchor, Offset: uint64(off), MaxBytes: uint32(n), Hash: f.desc.Hash}
		dst := got[off : off+n : off+n]
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := s.fetch(tctx(t, 10*time.Second), req, dst)
			switch {
			case err != nil:
				errs <- err
			case !sameStart(c.Data, dst) || c.Offset != req.Offset || c.Last != (off+n == len(f.data)):
				errs <- errors.New("chunk not in place or not the one asked")
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if !bytes.Equal(got, f.data) {
		t.Fatal("bytes differ from the snapshot")
	}
	bad := snapshotChunkRequest{Anchor: f.desc.Anchor, MaxBytes: 10, Hash: f.desc.Hash}
	bad.Hash[0] ^= 1
	_, err := s.fetch(tctx(t, 5*time.Second), bad, nil)
	var ref *snapshotRefusedError
	if !errors.As(err, &ref) || ref.Code != snapshotUnknownAnchor {
		t.Fatalf("other hash: %v, want an unknown-anchor refusal", err)
	}
	if _, err := s.fetch(tctx(t, 5*time.Second), snapshotChunkRequest{Anchor: f.desc.Anchor, MaxBytes: 10, Hash: f.desc.Hash}, nil); err == nil {
		t.Fatal("the session took a request after a refusal")
	}
}

// A holder that reads requests and never answers: a request whose ctx
// ends returns at once, with the other request pending on the stream,
// and neither writes into its memory afterwards (the stream is reset
// before they return).
func TestSnapshotPipeline_TimeoutEndsSession(t *testing.T) {
	f := newFixture(8 << 10)
	release := make(chan struct{})
	fetcher, holder := pipelinePair(t, f, func(peer.ID, []byte) (snapshotChunk, []byte) {
		<-release
		return snapshotChunk{}, encodeSnapshotRefusal(snapshotUnavailable, "released (test)")
	})
	defer close(release)
	s := openSession(t, fetcher, holder)
	req := snapshotChunkRequest{Anchor: f.desc.Anchor, MaxBytes: 4 << 10, Hash: f.desc.Hash}
	other := make(chan error, 1)
	go func() {
		r := req
		r.Offset = 4 << 10
		_, err := s.fetch(tctx(t, 30*time.Second), r, make([]byte, 4<<10))
		other <- err
	}()
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Scale(200*time.Millisecond))
	defer cancel()
	start := time.Now()
	_, err := s.fetch(ctx, req, make([]byte, 4<<10))
	if !errors.Is(err, context.DeadlineExceeded) && err == nil {
		t.Fatalf("hanging holder: %v", err)
	}
	if d := time.Since(start); d > testutil.Scale(3*time.Second) {
		t.Fatalf("returned %v after its deadline", d)
	}
	select {
	case err := <-other:
		if err == nil {
			t.Fatal("the other pending request succeeded on a reset stream")
		}
	case <-tctx(t, 5*time.Second).Done():
		t.Fatal("the other pending request did not end with the session")
	}
}

// An oversize request frame is answered with a bad-request refusal, and
// the stream ends; a fetcher's closed write side ends it cleanly after
// the answers.
func TestSnapshotPipeline_HolderBadRequest(t *testing.T) {
	f := newFixture(4 << 10)
	fetcher, holder := pipelinePair(t, f, nil)
	st, err := fetcher.h.NewStream(tctx(t, 5*time.Second), holder.h.ID(), SnapshotPipelineProtocolID(testNetwork))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = st.Reset() }()
	req := snapshotChunkRequest{Anchor: f.desc.Anchor, MaxBytes: 1 << 10, Hash: f.desc.Hash}
	if err := framer.WriteFrame(st, encodeSnapshotChunkRequest(req)); err != nil {
		t.Fatal(err)
	}
	if err := framer.WriteFrame(st, make([]byte, snapshotRequestCap+1)); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(st)
	if c, err := readSnapshotReplyInto(r, nil, req.MaxBytes, nil); err != nil || !bytes.Equal(c.Data, f.data[:1<<10]) {
		t.Fatalf("first request: %v", err)
	}
	_, err = readSnapshotReplyInto(r, nil, req.MaxBytes, nil)
	var ref *snapshotRefusedError
	if !errors.As(err, &ref) || ref.Code != snapshotBadRequest {
		t.Fatalf("oversize request: %v, want a bad-request refusal", err)
	}
	if _, err := r.ReadByte(); err == nil {
		t.Fatal("the stream goes on after an unreadable request")
	}
}

// A whole transfer through sessions, from two holders of which one sends
// chunks of another offset: it is dropped, the honest one serves the
// rest, and the bytes check out. A holder that speaks only 1.0.0 is asked
// through the fallback.
func TestSnapshotPipeline_Fetch(t *testing.T) {
	f := newFixture(300 << 10)
	fetcher, honest := pipelinePair(t, f, nil)
	var lied atomic.Int32
	_, liar := pipelinePair(t, f, func(from peer.ID, raw []byte) (snapshotChunk, []byte) {
		c, refusal := cacheServe(f.cache)(from, raw)
		if refusal == nil {
			lied.Add(1)
			c.Offset++
			if c.Offset+uint64(len(c.Data)) > c.TotalSize {
				c.Data = c.Data[:len(c.Data)-1]
				c.Last = true
			}
		}
		return c, refusal
	})
	old := newBondNode(t, bare())
	old.h.SetStreamHandler(SnapshotProtocolID(testNetwork), func(st network.Stream) { _ = st.Reset() })
	for _, h := range []*bondNode{liar, old} {
		if err := fetcher.h.Connect(tctx(t, 5*time.Second), peer.AddrInfo{ID: h.h.ID(), Addrs: h.h.Addrs()}); err != nil {
			t.Fatal(err)
		}
	}
	var legacy atomic.Int32
	fallback := func(ctx context.Context, holder peer.ID, req snapshotChunkRequest, dst []byte) (snapshotChunk, error) {
		legacy.Add(1)
		return snapshotChunk{}, errors.New("1.0.0 holder unreachable (test)")
	}
	n := &bondNet{h: fetcher.h, network: testNetwork}
	ss := newSnapshotSessions(n, fallback)
	defer ss.close()
	p := testFetchParams()
	p.ChunkBytes = 16 << 10
	var buf bytes.Buffer
	holders := []peer.ID{old.h.ID(), liar.h.ID(), honest.h.ID()}
	if err := fetchSnapshot(tctx(t, 30*time.Second), f.desc, holders, ss.fetch, &buf, p); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), f.data) {
		t.Fatal("fetched bytes differ")
	}
	if lied.Load() == 0 || legacy.Load() == 0 {
		t.Fatalf("the liar served %d chunks and the 1.0.0 holder was asked %d times: both should have been tried", lied.Load(), legacy.Load())
	}
}

// A holder answers at most snapshotPipelineMaxRequests requests on one
// stream: a transfer of more chunks goes on on a new stream to the same
// holder, with no failure.
func TestSnapshotPipeline_NewStreamAfterMaxRequests(t *testing.T) {
	f := newFixture(snapshotPipelineMaxRequests + 300)
	fetcher, holder := pipelinePair(t, f, nil)
	var streams atomic.Int32
	n := &bondNet{h: fetcher.h, network: testNetwork}
	ss := newSnapshotSessions(countingSessions{n, &streams}, nil)
	defer ss.close()
	p := testFetchParams()
	p.ChunkBytes = 1
	var buf bytes.Buffer
	if err := fetchSnapshot(tctx(t, 60*time.Second), f.desc, []peer.ID{holder.h.ID()}, ss.fetch, &buf, p); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), f.data) {
		t.Fatal("fetched bytes differ")
	}
	if got := streams.Load(); got != 2 {
		t.Fatalf("%d streams for %d chunks, want 2", got, len(f.data))
	}
}

// countingSessions counts the sessions a snapshotSessionNet opens.
type countingSessions struct {
	snapshotSessionNet
	n *atomic.Int32
}

func (c countingSessions) openSnapshotSession(ctx context.Context, holder peer.ID) (*snapshotSession, bool, error) {
	c.n.Add(1)
	return c.snapshotSessionNet.openSnapshotSession(ctx, holder)
}

// Closing a holder's service ends a transfer's stream it serves at once,
// instead of waiting for the fetcher (or the 10 s exchange bound).
func TestSnapshotPipeline_CloseEndsServedStream(t *testing.T) {
	holder, fetcher := newBondNode(t), newBondNode(t)
	meshed(t, holder, fetcher)
	st, err := fetcher.h.NewStream(tctx(t, 5*time.Second), holder.h.ID(), SnapshotPipelineProtocolID(testNetwork))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = st.Reset() }()
	// An idle transfer: a request answered (a refusal: no bond), then
	// nothing more asked.
	f := newFixture(1 << 10)
	if err := framer.WriteFrame(st, encodeSnapshotChunkRequest(snapshotChunkRequest{Anchor: f.desc.Anchor, MaxBytes: 10, Hash: f.desc.Hash})); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(st)
	var ref *snapshotRefusedError
	if _, err := readSnapshotReplyInto(r, nil, 10, nil); !errors.As(err, &ref) {
		t.Fatalf("first request: %v, want a refusal", err)
	}
	start := time.Now()
	if err := holder.svc.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > testutil.Scale(3*time.Second) {
		t.Fatalf("Close took %v with a transfer's stream open", d)
	}
	if _, err := r.ReadByte(); err == nil {
		t.Fatal("the stream goes on after the holder closed")
	}
}
