package groups

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/mosaik-go/mosaik/internal/framer"
	"github.com/mosaik-go/mosaik/internal/testutil"
)

// sameReply reports whether two decoded replies are equal: the same
// chunk, or errors of the same kind.
func sameReply(c1 snapshotChunk, err1 error, c2 snapshotChunk, err2 error) bool {
	if (err1 == nil) != (err2 == nil) {
		return false
	}
	if err1 != nil {
		var r1, r2 *snapshotRefusedError
		if errors.As(err1, &r1) != errors.As(err2, &r2) {
			return false
		}
		return r1 == nil || *r1 == *r2
	}
	return c1.Anchor == c2.Anchor && c1.Offset == c2.Offset && c1.TotalSize == c2.TotalSize && c1.Last == c2.Last && bytes.Equal(c1.Data, c2.Data)
}

// readWhole is how a reply was read before in-place reads.
func readWhole(frame []byte, maxBytes uint32) (snapshotChunk, error) {
	b, err := readSnapshotReply(bufio.NewReader(bytes.NewReader(frame)), maxBytes)
	if err != nil {
		return snapshotChunk{}, err
	}
	return decodeSnapshotChunkReply(b)
}

// A reply read in place decodes as one read whole; the usual chunk's data
// lands in dst, anything else is decoded from its own memory.
func TestReadSnapshotReplyInto_MatchesWhole(t *testing.T) {
	data := bytes.Repeat([]byte("chunk"), 1000)
	usual := snapshotChunk{Anchor: snapshotAnchor{1 << 40, 3}, Offset: 5000, Data: data, TotalSize: 20000}
	var framed bytes.Buffer
	if err := writeSnapshotChunkFrame(&framed, usual); err != nil {
		t.Fatal(err)
	}
	body := encodeSnapshotChunk(usual)
	withUnknown := append(bytes.Clone(body), 0x30, 0x01) // field 6 after the chunk: proto.Unmarshal skips it
	inner := protowire.AppendTag(nil, 3, protowire.BytesType)
	inner = protowire.AppendBytes(inner, data)
	inner = protowire.AppendTag(inner, 1, protowire.BytesType)
	inner = protowire.AppendBytes(inner, nil)
	inner = protowire.AppendTag(inner, 4, protowire.VarintType)
	inner = protowire.AppendVarint(inner, uint64(len(data)))
	dataFirst := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), inner)
	for name, tc := range map[string]struct {
		frame   []byte
		dst     int
		inPlace bool
	}{
		"usual chunk":          {framed.Bytes(), len(data), true},
		"usual chunk, no dst":  {framed.Bytes(), 0, false},
		"other size":           {framed.Bytes(), len(data) + 1, false},
		"unknown field":        {framer.AppendFrame(nil, withUnknown), len(data), false},
		"data first":           {framer.AppendFrame(nil, dataFirst), len(data), false},
		"refusal":              {framer.AppendFrame(nil, encodeSnapshotRefusal(snapshotUnknownAnchor, "gone")), len(data), false},
		"cut short":            {framed.Bytes()[:framed.Len()-100], len(data), true},
		"garbage":              {framer.AppendFrame(nil, []byte{0x0a, 0x05, 0xff}), 3, false},
		"data of another size": {framer.AppendFrame(nil, encodeSnapshotChunk(snapshotChunk{Anchor: snapshotAnchor{1, 1}, Data: []byte("ab"), TotalSize: 2, Last: true})), 3, false},
	} {
		t.Run(name, func(t *testing.T) {
			want, werr := readWhole(tc.frame, uint32(len(data)+1))
			var dst []byte
			if tc.dst > 0 {
				dst = make([]byte, tc.dst)
			}
			for _, direct := range []bool{false, true} {
				src := bytes.NewReader(tc.frame)
				var via io.Reader
				if direct {
					via = src
				}
				clear(dst)
				got, err := readSnapshotReplyInto(bufio.NewReader(src), via, uint32(len(data)+1), dst)
				if !sameReply(got, err, want, werr) {
					t.Fatalf("in place (direct %v): %+v, %v; whole: %+v, %v", direct, got.Anchor, err, want.Anchor, werr)
				}
				if err == nil && sameStart(got.Data, dst) != tc.inPlace {
					t.Fatalf("data in dst (direct %v): %v, want %v", direct, sameStart(got.Data, dst), tc.inPlace)
				}
			}
		})
	}
}

// framedReads is a stream that hands out at most max bytes a Read (as a
// muxer hands out what one frame brought) and counts the Reads whose
// memory is not inside in.
type framedReads struct {
	r       *bytes.Reader
	max     int
	in      []byte
	outside int
}

func (f *framedReads) Read(p []byte) (int, error) {
	start := uintptr(unsafe.Pointer(unsafe.SliceData(f.in)))
	if at := uintptr(unsafe.Pointer(unsafe.SliceData(p))); at < start || at >= start+uintptr(len(f.in)) {
		f.outside++
	}
	return f.r.Read(p[:min(len(p), f.max)])
}

// TestReadSnapshotReplyInto_DataReadOnce: given the stream, a chunk's
// data that the buffer does not hold yet is read from the stream into
// dst, never through the buffer: the stream is read elsewhere only to
// fill the buffer for the head and for what follows the data.
func TestReadSnapshotReplyInto_DataReadOnce(t *testing.T) {
	data := bytes.Repeat([]byte{0x5a}, 40_000)
	c := snapshotChunk{Anchor: snapshotAnchor{7, 1}, Offset: 1 << 20, Data: data, TotalSize: 1 << 22}
	frame := framer.AppendFrame(nil, encodeSnapshotChunk(c))
	dst := make([]byte, len(data))
	src := &framedReads{r: bytes.NewReader(frame), max: 1000, in: dst}
	got, err := readSnapshotReplyInto(bufio.NewReaderSize(src, 4096), src, uint32(len(data)), dst)
	if err != nil || !sameStart(got.Data, dst) || !bytes.Equal(got.Data, data) || got.Offset != c.Offset {
		t.Fatalf("chunk at %d, in dst %v: %v", got.Offset, sameStart(got.Data, dst), err)
	}
	if src.outside > 2 {
		t.Fatalf("%d reads of the stream into other memory than dst, want 2 (the head's, the tail's)", src.outside)
	}
}

// FuzzSnapshotReplyInto: any frame body decodes in place exactly as it
// does read whole (the cap: a frame is refused past the request's bound
// before its body is read, in both).
func FuzzSnapshotReplyInto(f *testing.F) {
	f.Add(encodeSnapshotChunk(snapshotChunk{Anchor: snapshotAnchor{9, 2}, Offset: 2, Data: []byte("abc"), TotalSize: 5, Last: true}), uint16(3))
	f.Add(encodeSnapshotRefusal(snapshotUnknownAnchor, "gone"), uint16(3))
	f.Add([]byte{0x0a, 0x07, 0x0a, 0x00, 0x1a, 0x03, 'a', 'b', 'c'}, uint16(3))
	f.Add([]byte{0x0a, 0x05, 0x1a, 0x03, 'a', 'b', 'c', 0x20, 0x03}, uint16(3))
	f.Fuzz(func(t *testing.T, body []byte, size uint16) {
		if len(body) > 1<<16 {
			return
		}
		frame := framer.AppendFrame(nil, body)
		maxBytes := uint32(size) + 1
		want, werr := readWhole(frame, maxBytes)
		dst := make([]byte, size)
		got, err := readSnapshotReplyInto(bufio.NewReader(bytes.NewReader(frame)), nil, maxBytes, dst)
		if !sameReply(got, err, want, werr) {
			t.Fatalf("in place: %+v, %v; whole: %+v, %v", got, err, want, werr)
		}
		src := bytes.NewReader(frame)
		dst = make([]byte, size)
		got, err = readSnapshotReplyInto(bufio.NewReaderSize(src, 16), src, maxBytes, dst)
		if !sameReply(got, err, want, werr) {
			t.Fatalf("in place, direct: %+v, %v; whole: %+v, %v", got, err, want, werr)
		}
	})
}

// fetchInPlace fetches a 100 000-byte snapshot in place from holders
// "a" (made by first) and "b" (honest), checks the assembled bytes, and
// returns the net, the writer, the result, the writer's memory and how
// many requests were given a place.
func fetchInPlace(t *testing.T, first func(fixture) fakeHolder) (n *fakeNet, w *stagedWriter, got, mem []byte, placed func() int32) {
	t.Helper()
	f, p := newFixture(100_000), testFetchParams()
	n = newFakeNet()
	n.inPlace = true
	var count atomic.Int32
	fetch := func(ctx context.Context, h peer.ID, req snapshotChunkRequest, dst []byte) (snapshotChunk, error) {
		if dst != nil {
			count.Add(1)
		}
		return n.fetch(ctx, h, req, dst)
	}
	w = newStagedWriter(f.desc.TotalSize, nil)
	mem = w.buf[:cap(w.buf)]
	if err := fetchSnapshot(context.Background(), f.desc, []peer.ID{n.add("a", first(f)), n.add("b", f.honest())}, fetch, w, p); err != nil {
		t.Fatal(err)
	}
	got, _ = w.result()
	if !bytes.Equal(got, f.data) {
		t.Fatal("assembled bytes differ")
	}
	return n, w, got, mem, count.Load
}

// Every chunk of a transfer from honest holders is read straight into
// its place in the writer's memory: no chunk is copied.
func TestFetchSnapshot_InPlace(t *testing.T) {
	n, w, got, mem, placed := fetchInPlace(t, func(f fixture) fakeHolder { return f.honest() })
	if w.relocated || !sameStart(got, mem) {
		t.Fatalf("assembled bytes are not in the writer's memory (relocated: %v)", w.relocated)
	}
	if placed() != 25 || n.count("a")+n.count("b") != 25 {
		t.Fatalf("%d requests in place, %d in all; want 25 and 25", placed(), n.count("a")+n.count("b"))
	}
}

// When a holder vanishes, the chunks it failed are retried elsewhere into
// memory of their own (only a chunk's first attempt is given its place),
// and the result is whole. It stays in the writer's memory unless an
// attempt of the dropped holder had not returned when its chunk's retry
// landed: then the writer moves (TestFetchSnapshot_StalePlacedWriter), a
// race this test can lose on a loaded machine, and says so.
func TestFetchSnapshot_InPlaceRetries(t *testing.T) {
	n, w, got, mem, placed := fetchInPlace(t, func(f fixture) fakeHolder { return f.vanishing(3) })
	if n.count("a")+n.count("b") <= 25 {
		t.Fatalf("%d requests in all; want 25 and a few retries", n.count("a")+n.count("b"))
	}
	if w.relocated {
		// The writer moved: no place is given after that.
		t.Logf("the writer moved (%d requests in place): an attempt of the vanished holder was still running when its chunk's retry landed", placed())
		return
	}
	if !sameStart(got, mem) {
		t.Fatal("assembled bytes are not in the writer's memory, and the writer never moved")
	}
	// 25 chunks, each given its place once; the retries of the chunks
	// "a" failed on are not.
	if placed() != 25 {
		t.Fatalf("%d requests in place; want 25", placed())
	}
}

// An attempt that wrote its chunk in place, timed out and keeps writing
// there after the retry's data was written cannot change the result: the
// writer moves to memory of its own. Without the move the result carries
// the late writes.
func TestFetchSnapshot_StalePlacedWriter(t *testing.T) {
	f, n, p := newFixture(40_000), newFakeNet(), testFetchParams()
	n.inPlace = true
	release, scribbled := make(chan struct{}), make(chan struct{})
	var first atomic.Bool
	late := func(ctx context.Context, h peer.ID, req snapshotChunkRequest, dst []byte) (snapshotChunk, error) {
		if h != "late" {
			return n.fetch(ctx, h, req, dst)
		}
		if dst == nil || !first.CompareAndSwap(false, true) {
			return snapshotChunk{}, errors.New("gone") // "late" is dropped
		}
		<-ctx.Done()
		<-release
		for i := range dst {
			dst[i] = 0xee
		}
		close(scribbled)
		return snapshotChunk{}, ctx.Err()
	}
	n.add("honest", f.honest())
	w := newStagedWriter(f.desc.TotalSize, nil)
	err := fetchSnapshot(context.Background(), f.desc, []peer.ID{"late", "honest"}, late, w, p)
	close(release)
	select {
	case <-scribbled:
	case <-time.After(10 * time.Second):
		t.Fatal("the late attempt never wrote")
	}
	if err != nil {
		t.Fatal(err)
	}
	got, _ := w.result()
	if !bytes.Equal(got, f.data) {
		t.Fatal("a late in-place write changed the fetched snapshot")
	}
}

// While chunks are read in place, a fast holder does not wait behind a
// slow one: it is asked for chunks past the window, up to placedLead
// windows ahead of the next chunk to write, while the slow holder still
// holds the first ones. With a lead of one window (as without a place),
// the fast holder served its share of the window and then sat idle until
// the slow holder answered.
func TestFetchSnapshot_FastHolderPassesSlowOne(t *testing.T) {
	f, n, p := newFixture(100_000), newFakeNet(), testFetchParams() // 25 chunks
	n.inPlace = true
	p.Window, p.PerHolder = 4, 2
	last := placedLead*p.Window - 1 // the farthest chunk the lead allows
	release := make(chan struct{})
	var once sync.Once
	var stalled atomic.Bool
	fast := f.honest()
	fastID := n.add("fast", func(ctx context.Context, req snapshotChunkRequest) (snapshotChunk, error) {
		if req.Offset/uint64(p.ChunkBytes) == uint64(last) {
			once.Do(func() { close(release) })
		}
		return fast(ctx, req)
	})
	slow := f.honest()
	bound := testutil.Scale(2 * time.Second)
	slowID := n.add("slow", func(ctx context.Context, req snapshotChunkRequest) (snapshotChunk, error) {
		select {
		case <-release:
		case <-time.After(bound): // the fast holder stopped short of last
			stalled.Store(true)
		case <-ctx.Done():
			return snapshotChunk{}, ctx.Err()
		}
		return slow(ctx, req)
	})
	w := newStagedWriter(f.desc.TotalSize, nil)
	p.ChunkTimeout = 4 * bound
	if err := fetchSnapshot(context.Background(), f.desc, []peer.ID{slowID, fastID}, n.fetch, w, p); err != nil {
		t.Fatal(err)
	}
	if got, _ := w.result(); !bytes.Equal(got, f.data) {
		t.Fatal("assembled bytes differ")
	}
	if stalled.Load() {
		t.Fatalf("the fast holder was not asked for chunk %d while the slow one held the first chunks", last)
	}
}
