package groups

import (
	"bufio"
	"bytes"
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/mosaik-go/mosaik/groups/pb"
	"github.com/mosaik-go/mosaik/internal/framer"
)

// frameSnapshotData must frame a state exactly as proto.Marshal does.
func TestFrameSnapshotData_MatchesMarshal(t *testing.T) {
	for _, epoch := range []uint64{0, 1, 127, 128, 1 << 63, ^uint64(0)} {
		for _, n := range []int{0, 1, 127, 128, 300, 70000} {
			state := bytes.Repeat([]byte{0xab}, n)
			b := append(make([]byte, snapshotHeadRoom), state...)
			got := frameSnapshotData(epoch, b, snapshotHeadRoom)
			want, err := proto.MarshalOptions{Deterministic: true}.Marshal(&pb.CoreSnapshot{Epoch: epoch, State: state})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("epoch %d, %d bytes: framed %x..., want %x...", epoch, n, got[:min(len(got), 24)], want[:min(len(want), 24)])
			}
		}
	}
}

// TestWriteSnapshotChunkFrame_SameBytes: a chunk written in place is the
// frame of its encoding, and its reply takes the decoder's fast path.
func TestWriteSnapshotChunkFrame_SameBytes(t *testing.T) {
	big := bytes.Repeat([]byte{0xab}, 300<<10)
	for _, c := range []snapshotChunk{
		{Anchor: snapshotAnchor{9, 2}, Offset: 2, Data: []byte("abc"), TotalSize: 5, Last: true},
		{Anchor: snapshotAnchor{1, 0}, Offset: 0, Data: big, TotalSize: 1 << 30},
		{Anchor: snapshotAnchor{0, 7}, Offset: 5, TotalSize: 5, Last: true},
		{},
	} {
		var got bytes.Buffer
		if err := writeSnapshotChunkFrame(&got, c); err != nil {
			t.Fatal(err)
		}
		want := framer.AppendFrame(nil, encodeSnapshotChunk(c))
		if !bytes.Equal(got.Bytes(), want) {
			t.Fatalf("chunk at %d of %d: wrote %d bytes, want the %d of its frame", c.Offset, c.TotalSize, got.Len(), len(want))
		}
		dc, ok := parseSimpleChunkReply(encodeSnapshotChunk(c))
		if !ok || dc.Anchor != c.Anchor || dc.Offset != c.Offset || !bytes.Equal(dc.Data, c.Data) || dc.TotalSize != c.TotalSize || dc.Last != c.Last {
			t.Fatalf("fast path: %v, %+v", ok, dc)
		}
	}
}

// recordWrites keeps each Write's bytes.
type recordWrites struct{ writes [][]byte }

func (r *recordWrites) Write(b []byte) (int, error) {
	r.writes = append(r.writes, bytes.Clone(b))
	return len(b), nil
}

// TestWriteSnapshotChunkFrame_Pieces: a chunk's frame goes out in the
// fewest Writes of at most snapshotWritePiece bytes (each one yamux frame
// in one Noise message), the head and the tail not on their own.
func TestWriteSnapshotChunkFrame_Pieces(t *testing.T) {
	for _, n := range []int{0, 3, snapshotWritePiece - 40, snapshotWritePiece, 256 << 10, 1 << 20} {
		c := snapshotChunk{Anchor: snapshotAnchor{1 << 20, 3}, Offset: 1 << 30, Data: bytes.Repeat([]byte{0xcd}, n), TotalSize: 1 << 31}
		var r recordWrites
		if err := writeSnapshotChunkFrame(&r, c); err != nil {
			t.Fatal(err)
		}
		want := framer.AppendFrame(nil, encodeSnapshotChunk(c))
		if got := bytes.Join(r.writes, nil); !bytes.Equal(got, want) {
			t.Fatalf("%d bytes of data: wrote %d bytes, want the %d of its frame", n, len(got), len(want))
		}
		if fewest := (len(want) + snapshotWritePiece - 1) / snapshotWritePiece; len(r.writes) != fewest {
			t.Fatalf("%d bytes of data: %d writes, want %d", n, len(r.writes), fewest)
		}
		for i, w := range r.writes {
			if len(w) > snapshotWritePiece {
				t.Fatalf("%d bytes of data: write %d of %d bytes, over %d", n, i, len(w), snapshotWritePiece)
			}
		}
	}
}

// TestWritePieces_Segments: any cut of the bytes into segments is written
// whole, in pieces of the given size but the last.
func TestWritePieces_Segments(t *testing.T) {
	all := make([]byte, 1000)
	for i := range all {
		all[i] = byte(i * 7)
	}
	for _, cut := range [][]int{{0}, {1000}, {10, 990}, {0, 0, 1000, 0}, {3, 500, 497}, {999, 1}, {250, 250, 250, 250}} {
		for _, piece := range []int{1, 7, 100, 250, 999, 1000, 4096} {
			var segs [][]byte
			at := 0
			for _, k := range cut {
				segs = append(segs, all[at:at+k])
				at += k
			}
			var r recordWrites
			if err := writePieces(&r, segs, piece); err != nil {
				t.Fatal(err)
			}
			if got := bytes.Join(r.writes, nil); !bytes.Equal(got, all[:at]) {
				t.Fatalf("cut %v, piece %d: wrote other bytes", cut, piece)
			}
			for i, w := range r.writes {
				if len(w) == 0 || len(w) > piece || (i < len(r.writes)-1 && len(w) != piece) {
					t.Fatalf("cut %v, piece %d: write %d of %d bytes", cut, piece, i, len(w))
				}
			}
		}
	}
}

// TestReadSnapshotReply_BoundedByRequest: a reply is read whole when it
// fits the request (a chunk of the asked size, or a refusal of the
// longest reason even to a 1-byte request), and refused before any body
// is read when it claims more.
func TestReadSnapshotReply_BoundedByRequest(t *testing.T) {
	chunk := encodeSnapshotChunk(snapshotChunk{Anchor: snapshotAnchor{1 << 40, 1 << 40}, Offset: 1 << 40, Data: bytes.Repeat([]byte{7}, 256<<10), TotalSize: 1 << 41})
	refusal := encodeSnapshotRefusal(snapshotUnknownAnchor, strings.Repeat("é", snapshotMaxReason))
	for _, tc := range []struct {
		body []byte
		max  uint32
		ok   bool
	}{
		{chunk, 256 << 10, true},
		{chunk, 256<<10 - 1024, false},
		{refusal, 1, true},
		{refusal, snapshotMaxChunk, true},
	} {
		got, err := readSnapshotReply(bufio.NewReader(bytes.NewReader(framer.AppendFrame(nil, tc.body))), tc.max)
		if tc.ok && (err != nil || !bytes.Equal(got, tc.body)) {
			t.Fatalf("reply of %d bytes to a request for %d: %v", len(tc.body), tc.max, err)
		}
		if !tc.ok && !errors.Is(err, errSnapshotWire) {
			t.Fatalf("reply of %d bytes to a request for %d: error %v, want errSnapshotWire", len(tc.body), tc.max, err)
		}
	}
}
