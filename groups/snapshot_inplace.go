package groups

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"unsafe"

	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/encoding/protowire"
)

// Chunks read in place: a fetch reads each chunk's data from the stream
// straight into its place in the snapshot's buffer, instead of into a
// buffer of its own that the fetch loop then copies. Fresh memory is what
// a late reader's sync pays most for (each page is faulted in on first
// touch), and this halves it: the snapshot's buffer is the only one the
// chunks' bytes land in.

// snapshotPlacingNet is a snapshotNet that can read a chunk's data into
// memory the caller gives (bondNet; the test networks need not).
type snapshotPlacingNet interface {
	// fetchChunkInto is fetchChunk with dst, of req.MaxBytes bytes, as
	// the place for the chunk's data: the chunk returned has its Data in
	// dst when the reply had the usual shape (readSnapshotReplyInto).
	// dst is not written after it returned.
	fetchChunkInto(ctx context.Context, holder peer.ID, req snapshotChunkRequest, dst []byte) (snapshotChunk, error)
}

// chunkPlacer is a fetch's writer that lends the memory a chunk's data
// ends in before the chunk's turn to be written comes (stagedWriter).
type chunkPlacer interface {
	// place returns the n bytes at offset off of the snapshot's memory,
	// or nil when chunks cannot be placed (any more).
	place(off uint64, n int) []byte
	// relocate moves the bytes written so far to memory of their own and
	// stops placing: a placed region may still be written by an attempt
	// that failed and has not returned yet.
	relocate()
}

// snapshotReplyHeadPeek is how much of a reply is looked at before its
// data: the chunk field's tag and length, an anchor (two varints), an
// offset and the data's tag and length fit in it.
const snapshotReplyHeadPeek = 64

// readSnapshotReplyInto reads and decodes the reply frame answering a
// request for maxBytes, as readSnapshotReply then decodeSnapshotChunkReply
// do, with the data of a chunk in the shape writeSnapshotChunkFrame
// writes (the chunk field, an anchor and an offset, then data of exactly
// len(dst) bytes) read straight into dst. Any other reply, and dst nil,
// are read whole and decoded as before. A refusal is returned as a
// *snapshotRefusedError. src, when not nil, is what r reads from: the
// data's bytes that r does not hold yet are read from it into dst
// directly (readFullVia).
func readSnapshotReplyInto(r *bufio.Reader, src io.Reader, maxBytes uint32, dst []byte) (snapshotChunk, error) {
	n, err := readSnapshotReplyLen(r, maxBytes)
	if err != nil {
		return snapshotChunk{}, err
	}
	if len(dst) > 0 {
		peek, _ := r.Peek(int(min(n, snapshotReplyHeadPeek)))
		if head, ok := placedReplyHead(peek, n, len(dst)); ok {
			return readPlacedReply(r, src, n, head, dst)
		}
	}
	b, err := readSnapshotReplyBody(r, n)
	if err != nil {
		return snapshotChunk{}, err
	}
	return decodeSnapshotChunkReply(b)
}

// placedReplyHead returns the length of the bytes of a reply of n bytes
// that come before its data, when b (its start) holds them and they are
// the chunk field's tag and length, the fields before data (numbers 1
// and 2, each at most once, in order) and data's tag and a length of
// exactly size. The fields are checked again when the whole is decoded.
func placedReplyHead(b []byte, n uint64, size int) (int, bool) {
	num, typ, k := protowire.ConsumeTag(b)
	if k < 0 || num != 1 || typ != protowire.BytesType {
		return 0, false
	}
	l, m := protowire.ConsumeVarint(b[k:])
	if m < 0 || uint64(k+m)+l != n {
		return 0, false
	}
	off := k + m
	var last protowire.Number
	for {
		num, typ, k := protowire.ConsumeTag(b[off:])
		if k < 0 || num <= last {
			return 0, false
		}
		last = num
		switch {
		case num == 3 && typ == protowire.BytesType:
			dl, m := protowire.ConsumeVarint(b[off+k:])
			if m < 0 || dl != uint64(size) || uint64(off+k+m)+dl > n {
				return 0, false
			}
			return off + k + m, true
		case num == 1 && typ == protowire.BytesType:
			m := protowire.ConsumeFieldValue(num, typ, b[off+k:])
			if m < 0 {
				return 0, false
			}
			off += k + m
		case num == 2 && typ == protowire.VarintType:
			_, m := protowire.ConsumeVarint(b[off+k:])
			if m < 0 {
				return 0, false
			}
			off += k + m
		default:
			return 0, false
		}
	}
}

// readPlacedReply reads a reply of n bytes whose first head bytes
// (buffered in r) come before data of len(dst) bytes: the data into dst,
// then what follows it, and decodes the whole as parseSimpleChunkReply
// does. A reply that the fast path does not take is put together in one
// buffer and decoded by decodeSnapshotChunkReply, which decides.
func readPlacedReply(r *bufio.Reader, src io.Reader, n uint64, head int, dst []byte) (snapshotChunk, error) {
	h := make([]byte, head)
	if _, err := io.ReadFull(r, h); err != nil {
		return snapshotChunk{}, fmt.Errorf("read %d-byte reply: %w", n, err)
	}
	if err := readFullVia(r, src, dst); err != nil {
		return snapshotChunk{}, fmt.Errorf("read %d-byte reply: %w", n, err)
	}
	tail := make([]byte, n-uint64(head)-uint64(len(dst)))
	if _, err := io.ReadFull(r, tail); err != nil {
		return snapshotChunk{}, fmt.Errorf("read %d-byte reply: %w", n, err)
	}
	// h is the chunk field's tag and length (placedReplyHead checked
	// them), then the body's fields up to data's tag and length.
	_, _, k := protowire.ConsumeTag(h)
	_, m := protowire.ConsumeVarint(h[k:])
	c, ok := parsePlacedChunk(h[k+m:], tail, dst)
	if ok {
		return checkSnapshotChunk(c)
	}
	whole := make([]byte, 0, n)
	whole = append(append(append(whole, h...), dst...), tail...)
	return decodeSnapshotChunkReply(whole)
}

// readFullVia fills dst with the next bytes of r: those r holds, then
// the rest from src, r's own source (nil: through r). Through r, every
// part of dst that is not a multiple of r's buffer (a chunk's last bytes,
// at least) is copied twice, into r's buffer and out of it; from src it
// is copied once, from the stream's buffers into dst.
func readFullVia(r *bufio.Reader, src io.Reader, dst []byte) error {
	if src == nil {
		_, err := io.ReadFull(r, dst)
		return err
	}
	k, err := io.ReadFull(r, dst[:min(r.Buffered(), len(dst))])
	if err != nil {
		return err
	}
	_, err = io.ReadFull(src, dst[k:])
	return err
}

// parsePlacedChunk decodes a chunk's body split around its data (before:
// the fields before data and data's tag and length; after: the fields
// after it) as parseSimpleChunkReply decodes the whole, with Data dst.
func parsePlacedChunk(before, after, dst []byte) (snapshotChunk, bool) {
	var c snapshotChunk
	var last protowire.Number
	anchor := false
	field := func(b []byte) ([]byte, bool) {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || num <= last {
			return nil, false
		}
		last = num
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.BytesType:
			a, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return nil, false
			}
			var ok bool
			if c.Anchor, ok = parseSimpleAnchor(a); !ok {
				return nil, false
			}
			anchor = true
			return b[m:], true
		case num == 3 && typ == protowire.BytesType:
			l, m := protowire.ConsumeVarint(b)
			if m < 0 || m != len(b) || l != uint64(len(dst)) {
				return nil, false // data's tag and length end before
			}
			c.Data = dst[:len(dst):len(dst)]
			return b[m:], true
		case isChunkVarint(num) && typ == protowire.VarintType:
			v, m := protowire.ConsumeVarint(b)
			if m < 0 {
				return nil, false
			}
			c.setVarint(num, v)
			return b[m:], true
		}
		return nil, false
	}
	for _, part := range [][]byte{before, after} {
		for len(part) > 0 {
			var ok bool
			if part, ok = field(part); !ok {
				return snapshotChunk{}, false
			}
		}
	}
	return c, anchor && c.Data != nil
}

// sameStart reports whether a and b start at the same address.
func sameStart(a, b []byte) bool {
	return len(a) > 0 && len(b) > 0 && unsafe.SliceData(a) == unsafe.SliceData(b)
}
