package groups

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/groups/pb"
)

// FuzzBondHandshake feeds arbitrary bodies to the handshake decoders
// (Hello, Welcome, Proof, Close). They must never panic, and what they
// accept must hold the invariants the handshake relies on.
func FuzzBondHandshake(f *testing.F) {
	n := nonce()
	g := catalog.IDFromString("g")
	for _, m := range [][]byte{
		encodeMsg(frameHello, &pb.BondHello{Network: testNetwork[:], Group: g[:], Nonce: n[:], Role: 1})[2:],
		encodeMsg(frameWelcome, &pb.BondWelcome{Nonce: n[:], Proof: n[:], Role: 2})[2:],
		encodeMsg(frameProof, &pb.BondProof{Proof: n[:]})[2:],
		encodeClose(CodeInvalidProof, "bad")[2:],
		{}, {0xff, 0xff}, bytes.Repeat([]byte{0x0a}, maxHandshakeFrame+1),
	} {
		f.Add(m)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if h, err := decodeHello(body); err == nil {
			if h.role != RoleWriter && h.role != RoleReader || len(body) > maxHandshakeFrame {
				t.Fatalf("accepted hello %+v", h)
			}
		} else if !errors.Is(err, errProtocol) {
			t.Fatalf("hello refusal %v is not a protocol violation", err)
		}
		if w, err := decodeWelcome(body); err == nil && w.role != RoleWriter && w.role != RoleReader {
			t.Fatalf("accepted welcome %+v", w)
		}
		_, _ = decodeProof(body)
		if ce, err := decodeClose(body); err == nil && (ce.Code == 0 || len(ce.Reason) > maxReason || !ce.Remote) {
			t.Fatalf("accepted close %+v", ce)
		}
	})
}

// FuzzBondFrames feeds an arbitrary byte stream to the bond frame parser
// (the shared framer with the bond's cap, the type byte, frames rebuilt
// from pieces, and each frame kind's decoder). It must never panic, never return a frame above the
// cap, and only types the protocol defines.
func FuzzBondFrames(f *testing.F) {
	var stream []byte
	stream = append(stream, encodeFrame(framePing, nil)...)
	stream = append(stream, encodeFrame(firstCoreFrame, []byte("raft"))...)
	stream = append(stream, encodeMsg(frameEntry, &pb.BondEntry{Entry: []byte("x")})...)
	stream = append(stream, encodeClose(CodeCancelled, "bye")...)
	f.Add(stream)
	// A core frame of 5 bytes in two pieces, a Ping between them.
	var pieces []byte
	pieces = append(pieces, encodeFrame(framePieceFirst, []byte{5, firstCoreFrame, 'a'})...)
	pieces = append(pieces, encodeFrame(framePing, nil)...)
	pieces = append(pieces, encodeFrame(framePiece, []byte("bcd"))...)
	f.Add(pieces)
	f.Add([]byte{0})
	f.Add(binary.AppendUvarint(nil, 1<<30))
	f.Add([]byte{0x02, 0x15, 0x00})
	const max = 64 << 10
	f.Fuzz(func(t *testing.T, data []byte) {
		fr := newFrameReader(bytes.NewReader(data), max)
		b := &bond{asm: assembler{max: max}}
		for {
			typ, body, err := fr.next()
			if err != nil {
				return // a clean end, a truncated frame or a protocol violation
			}
			if typ == framePieceFirst || typ == framePiece {
				if typ, body, err = b.piece(typ, body); err != nil {
					return // a protocol violation ends the bond
				}
				if body == nil {
					continue
				}
			}
			if len(body)+1 > max {
				t.Fatalf("frame of %d bytes above the cap", len(body)+1)
			}
			switch {
			case typ >= firstCoreFrame && typ <= lastCoreFrame:
			case typ == frameEntry || typ == frameFormed:
				if raw, err := decodeEntryFrame(body, catalog.DefaultMaxEntrySize); err == nil {
					_, _ = catalog.OpenEntry(raw, catalog.DefaultMaxEntrySize)
				}
			case typ == frameClose:
				_, _ = decodeClose(body)
			case typ >= frameHello && typ <= frameFormed:
			default:
				t.Fatalf("parser returned undefined frame type %#x", typ)
			}
		}
	})
}
