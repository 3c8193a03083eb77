package groups

import (
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"google.golang.org/protobuf/proto"
	"lukechampine.com/blake3"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/groups/pb"
	"github.com/mosaik-go/mosaik/internal/framer"
)

// ProtocolPrefix is the bond protocol without its network part; the full ID
// is ProtocolPrefix + "/" + the network's 64 hex digits, so nodes of other
// networks fail protocol negotiation. Version 1.1.0 added the piece frames
// (PROTOCOL.md §19.7).
const ProtocolPrefix = "/mosaik/groups/1.1.0"

// ProtocolPrefix10 is bonds 1.0.0, without pieces: still served, and
// dialed when a peer does not speak 1.1.0. A bond over it writes every
// frame whole.
const ProtocolPrefix10 = "/mosaik/groups/1.0.0"

// ProtocolID returns the bond protocol of a network.
func ProtocolID(nw catalog.NetworkID) protocol.ID {
	return protocol.ID(ProtocolPrefix + "/" + nw.String())
}

// ProtocolID10 returns the network's bond protocol 1.0.0 (ProtocolPrefix10),
// still served: a host that limits streams per protocol limits both.
func ProtocolID10(nw catalog.NetworkID) protocol.ID {
	return protocol.ID(ProtocolPrefix10 + "/" + nw.String())
}

// Frame types of the bond layer (0x01–0x1f). Core frames (0x20–0x3f) are
// carried opaquely.
const (
	frameHello     byte = 0x01
	frameWelcome   byte = 0x02
	frameProof     byte = 0x03
	frameClose     byte = 0x04 // a refusal during the handshake, or the end of a bond
	framePing      byte = 0x05
	framePong      byte = 0x06
	frameDeparture byte = 0x07
	frameEntry     byte = 0x08 // PeerEntryUpdate: the sender's sealed entry
	frameFormed    byte = 0x09 // BondFormed: a sealed entry of a new co-member
	// framePieceFirst and framePiece carry a frame larger than pieceSize in
	// pieces (bonds 1.1.0): the first says how long the whole frame is
	// (uvarint) and holds its first bytes, the others hold the rest, in
	// order. Whole frames may come between the pieces of one frame; the
	// pieces of two frames never interleave.
	framePieceFirst byte = 0x0a
	framePiece      byte = 0x0b
)

// pieceSize is the most frame bytes one piece carries: 64 KiB less 16, so
// that a piece with its header fits the smallest frame cap (64 KiB). A
// frame larger than this goes in pieces, so that raft's heartbeats and votes, queued with
// priority, are written between them: a large append then delays them by
// one piece's write, not by the whole frame's, and the peer's silence
// checks see pieces arrive.
const pieceSize = 64<<10 - 16

const (
	// maxHandshakeFrame caps Hello, Welcome, Proof and Close frames.
	maxHandshakeFrame = 1 << 10
	// maxReason caps the reason string of a Close frame.
	maxReason = 256
	// nonceSize and proofSize are the sizes of handshake nonces and proofs.
	nonceSize = 32
	proofSize = 32
)

// errProtocol marks malformed, oversize and unexpected frames.
var errProtocol = errors.New("groups: protocol violation")

// frameReader reads typed frames through the shared framer: the cap is
// checked before anything is read. A body is valid until the next call.
type frameReader struct{ fr *framer.Reader }

func newFrameReader(r io.Reader, max int) *frameReader {
	return &frameReader{fr: framer.NewReader(r, max)}
}

func (r *frameReader) next() (byte, []byte, error) {
	b, err := r.fr.Next()
	if err != nil {
		if errors.Is(err, framer.ErrTooLarge) || errors.Is(err, framer.ErrBadLength) {
			return 0, nil, fmt.Errorf("%w: %v", errProtocol, err)
		}
		return 0, nil, err
	}
	return splitFrame(b)
}

// newHandshakeReader reads handshake frames (a type byte and a body of at
// most maxHandshakeFrame) under their own cap, checked before anything is
// buffered; bonded raises it to the data frames' cap once the peer has
// proved the group key.
func newHandshakeReader(r io.Reader) *frameReader { return newFrameReader(r, 1+maxHandshakeFrame) }

func (r *frameReader) bonded(max int) { r.fr.SetMax(max) }

// splitFrame parses a frame body into its type and payload.
func splitFrame(b []byte) (byte, []byte, error) {
	if len(b) == 0 {
		return 0, nil, fmt.Errorf("%w: empty frame", errProtocol)
	}
	t := b[0]
	if t == 0 || (t > framePiece && t < firstCoreFrame) || t > lastCoreFrame {
		return 0, nil, fmt.Errorf("%w: unknown frame type %#x", errProtocol, t)
	}
	return t, b[1:], nil
}

// encodeFrame returns the framed bytes of a frame: uvarint(len) ‖ type ‖ body.
func encodeFrame(typ byte, body []byte) []byte {
	out := make([]byte, 0, binary.MaxVarintLen64+1+len(body))
	out = binary.AppendUvarint(out, uint64(1+len(body)))
	out = append(out, typ)
	return append(out, body...)
}

// appendPieces appends to dst the piece frames that carry the framed frame
// f (as encodeFrame returns it) and returns dst.
func appendPieces(dst, f []byte) []byte {
	for off := 0; ; {
		var more bool
		if dst, off, more = appendPiece(dst, f, off); !more {
			return dst
		}
	}
}

// appendPiece appends to dst the piece of the framed frame f that starts
// at byte off of its type and body, and returns dst, where the next piece
// starts, and whether there is one.
func appendPiece(dst, f []byte, off int) ([]byte, int, bool) {
	n, k := binary.Uvarint(f)
	inner := f[k:]
	if k <= 0 || uint64(len(inner)) != n || off >= len(inner) {
		panic("groups: appendPiece of a malformed frame or past its end")
	}
	end := min(off+pieceSize, len(inner))
	typ, head := framePiece, []byte(nil)
	if off == 0 {
		typ, head = framePieceFirst, binary.AppendUvarint(nil, n)
	}
	dst = binary.AppendUvarint(dst, uint64(1+len(head)+end-off))
	dst = append(append(append(dst, typ), head...), inner[off:end]...)
	return dst, end, end < len(inner)
}

// assembler rebuilds a frame sent in pieces, within a cap on its length.
type assembler struct {
	max  int
	want int    // the whole frame's length; 0: no frame under way
	buf  []byte // the bytes so far
}

// add takes one piece frame. It returns the whole frame (type and body,
// as splitFrame parses) once its last piece came, and an error for a
// piece out of place, a length over the cap or a piece past the length.
func (a *assembler) add(typ byte, body []byte) ([]byte, error) {
	switch {
	case typ == framePieceFirst && a.want != 0:
		return nil, fmt.Errorf("%w: a frame's first piece before the last one's end", errProtocol)
	case typ == framePiece && a.want == 0:
		return nil, fmt.Errorf("%w: a piece of no frame", errProtocol)
	case typ == framePieceFirst:
		n, k := binary.Uvarint(body)
		if k <= 0 || n == 0 || n > uint64(a.max) {
			return nil, fmt.Errorf("%w: a frame in pieces of length %d (cap %d)", errProtocol, n, a.max)
		}
		// The buffer grows with the bytes that arrive, not with the
		// length a peer claims (the shared framer's rule).
		a.want, a.buf, body = int(n), make([]byte, 0, min(int(n), pieceSize)), body[k:]
	}
	if len(body) == 0 {
		return nil, fmt.Errorf("%w: an empty piece", errProtocol)
	}
	if len(a.buf)+len(body) > a.want {
		return nil, fmt.Errorf("%w: pieces past their frame's length of %d", errProtocol, a.want)
	}
	a.buf = append(a.buf, body...)
	if len(a.buf) < a.want {
		return nil, nil
	}
	f := a.buf
	a.want, a.buf = 0, nil
	return f, nil
}

func encodeMsg(typ byte, m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil { // only for invalid UTF-8, which we never build
		panic(fmt.Sprintf("groups: marshal %T: %v", m, err))
	}
	return encodeFrame(typ, b)
}

// decodeHandshake decodes the body of a handshake or close frame, within
// maxHandshakeFrame.
func decodeHandshake[T any, P interface {
	*T
	proto.Message
}](body []byte) (P, error) {
	if len(body) > maxHandshakeFrame {
		return nil, fmt.Errorf("%w: handshake frame of %d bytes", errProtocol, len(body))
	}
	m := P(new(T))
	if err := proto.Unmarshal(body, m); err != nil {
		return nil, fmt.Errorf("%w: %v", errProtocol, err)
	}
	return m, nil
}

// hello is a decoded, checked Hello.
type hello struct {
	network catalog.NetworkID
	group   catalog.ID
	nonce   [nonceSize]byte
	role    Role
}

func decodeHello(body []byte) (hello, error) {
	var h hello
	m, err := decodeHandshake[pb.BondHello](body)
	if err != nil {
		return h, err
	}
	if h.network, err = catalog.IDFromBytes(m.GetNetwork()); err != nil {
		return h, fmt.Errorf("%w: network: %v", errProtocol, err)
	}
	if h.group, err = catalog.IDFromBytes(m.GetGroup()); err != nil {
		return h, fmt.Errorf("%w: group: %v", errProtocol, err)
	}
	if len(m.GetNonce()) != nonceSize {
		return h, fmt.Errorf("%w: nonce of %d bytes", errProtocol, len(m.GetNonce()))
	}
	copy(h.nonce[:], m.GetNonce())
	if h.role, err = decodeRole(m.GetRole()); err != nil {
		return h, err
	}
	return h, nil
}

func decodeRole(r uint32) (Role, error) {
	switch Role(r) {
	case RoleWriter, RoleReader:
		return Role(r), nil
	}
	return 0, fmt.Errorf("%w: role %d", errProtocol, r)
}

// welcome is a decoded, checked Welcome.
type welcome struct {
	nonce [nonceSize]byte
	proof [proofSize]byte
	role  Role
}

func decodeWelcome(body []byte) (welcome, error) {
	var w welcome
	m, err := decodeHandshake[pb.BondWelcome](body)
	if err != nil {
		return w, err
	}
	if len(m.GetNonce()) != nonceSize || len(m.GetProof()) != proofSize {
		return w, fmt.Errorf("%w: nonce or proof of the wrong size", errProtocol)
	}
	copy(w.nonce[:], m.GetNonce())
	copy(w.proof[:], m.GetProof())
	if w.role, err = decodeRole(m.GetRole()); err != nil {
		return w, err
	}
	return w, nil
}

func decodeProof(body []byte) ([proofSize]byte, error) {
	var p [proofSize]byte
	m, err := decodeHandshake[pb.BondProof](body)
	if err != nil {
		return p, err
	}
	if len(m.GetProof()) != proofSize {
		return p, fmt.Errorf("%w: proof of %d bytes", errProtocol, len(m.GetProof()))
	}
	copy(p[:], m.GetProof())
	return p, nil
}

// decodeClose returns the peer's code and reason as a remote CodeError.
func decodeClose(body []byte) (*CodeError, error) {
	m, err := decodeHandshake[pb.BondClose](body)
	if err != nil {
		return nil, err
	}
	if m.GetCode() == 0 {
		return nil, fmt.Errorf("%w: close code 0", errProtocol)
	}
	// A longer reason (the frame's cap bounds it) is cut, not refused: the
	// code is what the peer meant.
	return &CodeError{Code: Code(m.GetCode()), Reason: cutReason(m.GetReason(), maxReason), Remote: true}, nil
}

func encodeClose(c Code, reason string) []byte {
	return encodeMsg(frameClose, &pb.BondClose{Code: uint32(c), Reason: cutReason(reason, maxReason)})
}

// cutReason cuts s to at most n bytes of valid UTF-8.
func cutReason(s string, n int) string {
	if len(s) > n {
		s = s[:n]
	}
	return strings.ToValidUTF8(s, "")
}

// errEntryOverCap marks an entry frame whose entry is over the receiver's
// MaxEntrySize.
var errEntryOverCap = errors.New("over MaxEntrySize")

// decodeEntryFrame returns the sealed entry bytes of an entry frame; the
// caller opens them against the catalog (signature, network, freshness).
func decodeEntryFrame(body []byte, max int) ([]byte, error) {
	m := new(pb.BondEntry)
	if err := proto.Unmarshal(body, m); err != nil {
		return nil, fmt.Errorf("%w: %v", errProtocol, err)
	}
	if len(m.GetEntry()) > max {
		return nil, fmt.Errorf("%w: entry of %d bytes > %d: %w", errProtocol, len(m.GetEntry()), max, errEntryOverCap)
	}
	if len(m.GetEntry()) == 0 {
		return nil, fmt.Errorf("%w: empty entry", errProtocol)
	}
	return m.GetEntry(), nil
}

// Sides of a proof.
const (
	sideInitiator byte = 'i'
	sideResponder byte = 'r'
)

// proofContext is the blake3 key-derivation context of bond proofs.
const proofContext = "mosaik groups bond v1"

// bondKey derives the proof key of a group from its key (blake3 of the
// group's secret).
func bondKey(groupKey [32]byte) [32]byte {
	var k [32]byte
	blake3.DeriveKey(k[:], proofContext, groupKey[:])
	return k
}

// proof computes keyed-blake3(k, side ‖ group ‖ uvarint(len) ‖ prover ‖
// uvarint(len) ‖ verifier ‖ nonce_i ‖ nonce_r): it binds knowledge of the
// key to this handshake's nonces and to both authenticated peer IDs (each
// prefixed by its length, since binary peer IDs vary in length).
func proof(k [32]byte, side byte, group catalog.ID, prover, verifier peer.ID, ni, nr [nonceSize]byte) [proofSize]byte {
	h := blake3.New(proofSize, k[:])
	_, _ = h.Write([]byte{side})
	_, _ = h.Write(group[:])
	_, _ = h.Write(binary.AppendUvarint(nil, uint64(len(prover))))
	_, _ = h.Write([]byte(prover))
	_, _ = h.Write(binary.AppendUvarint(nil, uint64(len(verifier))))
	_, _ = h.Write([]byte(verifier))
	_, _ = h.Write(ni[:])
	_, _ = h.Write(nr[:])
	var out [proofSize]byte
	h.Sum(out[:0])
	return out
}

func proofEqual(a, b [proofSize]byte) bool { return subtle.ConstantTimeCompare(a[:], b[:]) == 1 }
