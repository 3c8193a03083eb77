package groups

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/mosaik-go/mosaik/groups/pb"
)

// Snapshot transfer messages (groups/pb/snapshot.proto, PROTOCOL.md
// "Snapshot transfer"). A snapshot is the state machine's bytes; a member
// that lags behind the leader's log fetches it in chunks, byte ranges of
// at most snapshotMaxChunk, from any member that holds a snapshot at the
// same anchor. Chunks are byte ranges rather than mosaik's items (2000 a
// chunk) because a group's snapshot is opaque bytes; collections may size
// their chunks to hold about that many items.

const (
	// snapshotMaxChunk caps max_bytes of a request, and so the data of a
	// response.
	snapshotMaxChunk = 1 << 20
	// snapshotMaxReason caps a refusal's reason.
	snapshotMaxReason = 256
	// snapshotRequestCap and snapshotReplyCap cap the encoded messages:
	// a request is an anchor, two varints and a hash; a reply is one chunk
	// and a few varints.
	snapshotRequestCap = 128
	snapshotReplyCap   = snapshotMaxChunk + 128
	// snapshotRefusalCap bounds an encoded refusal: a code and a reason
	// of at most snapshotMaxReason bytes, with their tags and lengths.
	snapshotRefusalCap = snapshotMaxReason + 32
)

// snapshotAnchor names one snapshot: the raft index and term it was taken
// at. Members holding a snapshot at the same anchor hold the same bytes.
type snapshotAnchor struct{ Index, Term uint64 }

func (a snapshotAnchor) String() string { return fmt.Sprintf("%d/%d", a.Index, a.Term) }

func (a snapshotAnchor) toPB() *pb.SnapshotAnchor {
	return &pb.SnapshotAnchor{Index: a.Index, Term: a.Term}
}

func anchorFromPB(p *pb.SnapshotAnchor) snapshotAnchor {
	return snapshotAnchor{Index: p.GetIndex(), Term: p.GetTerm()}
}

// snapshotCode is the code of a SnapshotRefusal.
type snapshotCode uint32

const (
	// snapshotUnknownAnchor: the holder has no snapshot at that anchor with
	// that hash (never had, it expired, or its bytes differ). The fetcher
	// drops the holder for this transfer.
	snapshotUnknownAnchor snapshotCode = 1
	// snapshotBadRequest: offset past the end, or max_bytes out of range.
	snapshotBadRequest snapshotCode = 2
	// snapshotUnavailable: the holder cannot serve now (closing, or not
	// allowed to serve this peer).
	snapshotUnavailable snapshotCode = 3
)

func (c snapshotCode) String() string {
	switch c {
	case snapshotUnknownAnchor:
		return "unknown anchor"
	case snapshotBadRequest:
		return "bad request"
	case snapshotUnavailable:
		return "unavailable"
	default:
		return fmt.Sprintf("code %d", uint32(c))
	}
}

// snapshotRefusedError is a holder's refusal, as the fetcher sees it.
type snapshotRefusedError struct {
	Code   snapshotCode
	Reason string
}

func (e *snapshotRefusedError) Error() string {
	return fmt.Sprintf("groups: snapshot chunk refused (%d, %v): %s", uint32(e.Code), e.Code, e.Reason)
}

// errSnapshotWire is wrapped by every error about an undecodable or
// out-of-range snapshot message.
var errSnapshotWire = errors.New("groups: malformed snapshot message")

// snapshotChunkRequest asks for bytes [Offset, Offset+MaxBytes) of the
// snapshot at Anchor whose blake3-256 is Hash, cut at its end. The hash
// makes a holder whose state machine wrote other bytes at the same anchor
// (a snapshot encoding that is not canonical) refuse instead of serving
// pieces of another snapshot.
type snapshotChunkRequest struct {
	Anchor   snapshotAnchor
	Offset   uint64
	MaxBytes uint32
	Hash     [32]byte
}

// isChunkVarint reports whether num is one of snapshotChunk's varint
// fields (offset, total size, last).
func isChunkVarint(num protowire.Number) bool { return num == 2 || num == 4 || num == 5 }

// setVarint sets the varint field num (see isChunkVarint) to v.
func (c *snapshotChunk) setVarint(num protowire.Number, v uint64) {
	switch num {
	case 2:
		c.Offset = v
	case 4:
		c.TotalSize = v
	case 5:
		c.Last = v != 0
	}
}

// snapshotChunk is a holder's answer: exactly min(MaxBytes, TotalSize −
// Offset) bytes from Offset. Data may alias the holder's snapshot: it must
// not be modified.
type snapshotChunk struct {
	Anchor    snapshotAnchor
	Offset    uint64
	Data      []byte
	TotalSize uint64
	Last      bool
}

func encodeSnapshotChunkRequest(r snapshotChunkRequest) []byte {
	b, _ := proto.Marshal(&pb.SnapshotChunkRequest{Anchor: r.Anchor.toPB(), Offset: r.Offset, MaxBytes: r.MaxBytes, Hash: r.Hash[:]})
	return b
}

// decodeSnapshotChunkRequest decodes a request and checks its ranges.
func decodeSnapshotChunkRequest(b []byte) (snapshotChunkRequest, error) {
	if len(b) > snapshotRequestCap {
		return snapshotChunkRequest{}, fmt.Errorf("%w: request of %d bytes (cap %d)", errSnapshotWire, len(b), snapshotRequestCap)
	}
	var m pb.SnapshotChunkRequest
	if err := proto.Unmarshal(b, &m); err != nil {
		return snapshotChunkRequest{}, fmt.Errorf("%w: %v", errSnapshotWire, err)
	}
	if m.Anchor == nil {
		return snapshotChunkRequest{}, fmt.Errorf("%w: request without anchor", errSnapshotWire)
	}
	if m.MaxBytes == 0 || m.MaxBytes > snapshotMaxChunk {
		return snapshotChunkRequest{}, fmt.Errorf("%w: max_bytes %d not in [1, %d]", errSnapshotWire, m.MaxBytes, snapshotMaxChunk)
	}
	if len(m.Hash) != 32 {
		return snapshotChunkRequest{}, fmt.Errorf("%w: hash of %d bytes", errSnapshotWire, len(m.Hash))
	}
	r := snapshotChunkRequest{Anchor: anchorFromPB(m.Anchor), Offset: m.Offset, MaxBytes: m.MaxBytes}
	copy(r.Hash[:], m.Hash)
	return r, nil
}

func encodeSnapshotChunk(c snapshotChunk) []byte {
	b, _ := proto.Marshal(&pb.SnapshotChunkReply{Body: &pb.SnapshotChunkReply_Chunk{Chunk: &pb.SnapshotChunkResponse{
		Anchor: c.Anchor.toPB(), Offset: c.Offset, Data: c.Data, TotalSize: c.TotalSize, Last: c.Last,
	}}})
	return b
}

// writeSnapshotChunkFrame writes c as one frame (section 10.2: a varint
// length, then the SnapshotChunkReply), the bytes of
// framer.WriteFrame(w, encodeSnapshotChunk(c)), with the data written
// from where it lies: no copy of a chunk of up to a megabyte into a
// message and again into a frame.
func writeSnapshotChunkFrame(w io.Writer, c snapshotChunk) error {
	// proto.Marshal writes fields in number order: anchor and offset,
	// then data, then total_size and last.
	pre, err := proto.Marshal(&pb.SnapshotChunkResponse{Anchor: c.Anchor.toPB(), Offset: c.Offset})
	if err != nil {
		return err
	}
	post, err := proto.Marshal(&pb.SnapshotChunkResponse{TotalSize: c.TotalSize, Last: c.Last})
	if err != nil {
		return err
	}
	if len(c.Data) > 0 {
		pre = protowire.AppendTag(pre, 3, protowire.BytesType)
		pre = protowire.AppendVarint(pre, uint64(len(c.Data)))
	}
	chunkLen := len(pre) + len(c.Data) + len(post)
	replyLen := 1 + protowire.SizeVarint(uint64(chunkLen)) + chunkLen
	head := make([]byte, 0, binary.MaxVarintLen64+1+binary.MaxVarintLen64+len(pre))
	head = protowire.AppendVarint(head, uint64(replyLen))
	head = protowire.AppendTag(head, 1, protowire.BytesType)
	head = protowire.AppendVarint(head, uint64(chunkLen))
	head = append(head, pre...)
	return writePieces(w, [][]byte{head, c.Data, post}, snapshotWritePiece)
}

// snapshotWritePiece is the most a chunk reply gives one Write: the most
// one Noise transport message carries (65 535 bytes less its 16-byte tag)
// less a yamux frame header (12), so that each Write is one yamux frame,
// sealed into one Noise message and sent in one write system call. A
// larger Write is cut by yamux into 64 KiB frames, each of which Noise
// splits into a full message and one of 17 bytes: two syscalls, two seals
// and two opens per frame; and a chunk's small head and tail written on
// their own are a frame each. Other transports only see a different cut.
const snapshotWritePiece = 65535 - 16 - 12

// pieceScratch holds the pieces writePieces puts together.
var pieceScratch = sync.Pool{New: func() any {
	b := make([]byte, snapshotWritePiece)
	return &b
}}

// writePieces writes the concatenation of segs in Writes of piece bytes
// (the last one shorter): a piece inside one segment is written from
// where it lies, one that spans segments (a chunk's head and the first
// data, the last data and its tail) is put together first.
func writePieces(w io.Writer, segs [][]byte, piece int) error {
	var scratch *[]byte
	defer func() {
		if scratch != nil {
			pieceScratch.Put(scratch)
		}
	}()
	for len(segs) > 0 {
		if len(segs[0]) == 0 {
			segs = segs[1:]
			continue
		}
		if len(segs[0]) >= piece || len(segs) == 1 {
			n := min(len(segs[0]), piece)
			if _, err := w.Write(segs[0][:n]); err != nil {
				return err
			}
			segs[0] = segs[0][n:]
			continue
		}
		if scratch == nil {
			scratch = pieceScratch.Get().(*[]byte)
		}
		b := (*scratch)[:0]
		for len(segs) > 0 && len(b) < piece {
			n := min(len(segs[0]), piece-len(b))
			b = append(b, segs[0][:n]...)
			if segs[0] = segs[0][n:]; len(segs[0]) == 0 {
				segs = segs[1:]
			}
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
	return nil
}

// encodeSnapshotRefusal encodes a refusal, making the reason valid UTF-8
// and cutting it to its cap (on a rune boundary).
func encodeSnapshotRefusal(code snapshotCode, reason string) []byte {
	reason = strings.ToValidUTF8(reason, "?")
	if len(reason) > snapshotMaxReason {
		reason = reason[:snapshotMaxReason]
		for !utf8.ValidString(reason) {
			reason = reason[:len(reason)-1]
		}
	}
	b, _ := proto.Marshal(&pb.SnapshotChunkReply{Body: &pb.SnapshotChunkReply_Refusal{Refusal: &pb.SnapshotRefusal{
		Code: uint32(code), Reason: reason,
	}}})
	return b
}

// decodeSnapshotChunkReply decodes a reply: a chunk (checked for internal
// consistency; whether it answers the request is the fetcher's check) or
// a refusal, returned as a *snapshotRefusedError.
func decodeSnapshotChunkReply(b []byte) (snapshotChunk, error) {
	if len(b) > snapshotReplyCap {
		return snapshotChunk{}, fmt.Errorf("%w: reply of %d bytes (cap %d)", errSnapshotWire, len(b), snapshotReplyCap)
	}
	if c, ok := parseSimpleChunkReply(b); ok {
		return checkSnapshotChunk(c)
	}
	var m pb.SnapshotChunkReply
	if err := proto.Unmarshal(b, &m); err != nil {
		return snapshotChunk{}, fmt.Errorf("%w: %v", errSnapshotWire, err)
	}
	switch body := m.Body.(type) {
	case *pb.SnapshotChunkReply_Refusal:
		r := body.Refusal
		if r.GetCode() == 0 || len(r.GetReason()) > snapshotMaxReason {
			return snapshotChunk{}, fmt.Errorf("%w: refusal code %d, reason of %d bytes", errSnapshotWire, r.GetCode(), len(r.GetReason()))
		}
		return snapshotChunk{}, &snapshotRefusedError{Code: snapshotCode(r.GetCode()), Reason: r.GetReason()}
	case *pb.SnapshotChunkReply_Chunk:
		c := body.Chunk
		if c.GetAnchor() == nil {
			return snapshotChunk{}, fmt.Errorf("%w: chunk without anchor", errSnapshotWire)
		}
		return checkSnapshotChunk(snapshotChunk{Anchor: anchorFromPB(c.Anchor), Offset: c.Offset, Data: c.Data, TotalSize: c.TotalSize, Last: c.Last})
	default:
		return snapshotChunk{}, fmt.Errorf("%w: empty reply", errSnapshotWire)
	}
}

// checkSnapshotChunk checks a decoded chunk for internal consistency.
func checkSnapshotChunk(c snapshotChunk) (snapshotChunk, error) {
	n := uint64(len(c.Data))
	if n > snapshotMaxChunk || c.Offset > c.TotalSize || n > c.TotalSize-c.Offset {
		return snapshotChunk{}, fmt.Errorf("%w: chunk of %d bytes at %d of %d", errSnapshotWire, n, c.Offset, c.TotalSize)
	}
	if c.Last != (c.Offset+n == c.TotalSize) {
		return snapshotChunk{}, fmt.Errorf("%w: last flag %v on a chunk ending at %d of %d", errSnapshotWire, c.Last, c.Offset+n, c.TotalSize)
	}
	return c, nil
}

// parseSimpleChunkReply decodes a reply in the shape proto.Marshal
// gives a chunk (one chunk field spanning the reply; in it each field at
// most once, in number order, with its own wire type, an anchor among
// them) with Data aliasing b instead of copying up to a megabyte. It
// reports false for anything else, which decodeSnapshotChunkReply hands
// to proto.Unmarshal; for what it takes, both decode alike.
func parseSimpleChunkReply(b []byte) (snapshotChunk, bool) {
	num, typ, n := protowire.ConsumeTag(b)
	if n < 0 || num != 1 || typ != protowire.BytesType {
		return snapshotChunk{}, false
	}
	body, m := protowire.ConsumeBytes(b[n:])
	if m < 0 || n+m != len(b) {
		return snapshotChunk{}, false
	}
	var c snapshotChunk
	var last protowire.Number
	anchor := false
	for len(body) > 0 {
		num, typ, n := protowire.ConsumeTag(body)
		if n < 0 || num <= last {
			return snapshotChunk{}, false
		}
		last = num
		body = body[n:]
		switch {
		case num == 1 && typ == protowire.BytesType:
			a, m := protowire.ConsumeBytes(body)
			if m < 0 {
				return snapshotChunk{}, false
			}
			var ok bool
			if c.Anchor, ok = parseSimpleAnchor(a); !ok {
				return snapshotChunk{}, false
			}
			anchor, n = true, m
		case num == 3 && typ == protowire.BytesType:
			d, m := protowire.ConsumeBytes(body)
			if m < 0 {
				return snapshotChunk{}, false
			}
			c.Data, n = d[:len(d):len(d)], m
		case isChunkVarint(num) && typ == protowire.VarintType:
			v, m := protowire.ConsumeVarint(body)
			if m < 0 {
				return snapshotChunk{}, false
			}
			c.setVarint(num, v)
			n = m
		default:
			return snapshotChunk{}, false
		}
		body = body[n:]
	}
	return c, anchor
}

// parseSimpleAnchor decodes an anchor of at most an index and a term, in
// that order, for parseSimpleChunkReply.
func parseSimpleAnchor(b []byte) (snapshotAnchor, bool) {
	var a snapshotAnchor
	var last protowire.Number
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || num <= last || num > 2 || typ != protowire.VarintType {
			return snapshotAnchor{}, false
		}
		last = num
		v, m := protowire.ConsumeVarint(b[n:])
		if m < 0 {
			return snapshotAnchor{}, false
		}
		if num == 1 {
			a.Index = v
		} else {
			a.Term = v
		}
		b = b[n+m:]
	}
	return a, true
}
