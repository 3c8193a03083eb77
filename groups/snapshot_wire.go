package groups

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

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
		n := uint64(len(c.GetData()))
		if n > snapshotMaxChunk || c.GetOffset() > c.GetTotalSize() || n > c.GetTotalSize()-c.GetOffset() {
			return snapshotChunk{}, fmt.Errorf("%w: chunk of %d bytes at %d of %d", errSnapshotWire, n, c.GetOffset(), c.GetTotalSize())
		}
		if c.GetLast() != (c.GetOffset()+n == c.GetTotalSize()) {
			return snapshotChunk{}, fmt.Errorf("%w: last flag %v on a chunk ending at %d of %d", errSnapshotWire, c.GetLast(), c.GetOffset()+n, c.GetTotalSize())
		}
		return snapshotChunk{Anchor: anchorFromPB(c.Anchor), Offset: c.Offset, Data: c.Data, TotalSize: c.TotalSize, Last: c.Last}, nil
	default:
		return snapshotChunk{}, fmt.Errorf("%w: empty reply", errSnapshotWire)
	}
}
