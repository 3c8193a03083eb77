package groups

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/internal/testutil"
)

// assemble feeds the piece frames of ps (framed, as appendPieces returns
// them) to a, and returns the frame they rebuilt.
func assemble(t *testing.T, a *assembler, ps []byte) []byte {
	t.Helper()
	var out []byte
	for len(ps) > 0 {
		typ, body, err := newFrameReader(bytes.NewReader(ps), 1<<20).next()
		if err != nil {
			t.Fatal(err)
		}
		n, k := binary.Uvarint(ps)
		ps = ps[k+int(n):]
		f, err := a.add(typ, body)
		if err != nil {
			t.Fatal(err)
		}
		if f != nil {
			if out != nil || len(ps) > 0 {
				t.Fatal("a frame before the last piece")
			}
			out = f
		}
	}
	return out
}

func TestPieces_RoundTrip(t *testing.T) {
	for _, n := range []int{pieceSize, pieceSize + 1, 3*pieceSize - 1, 3 * pieceSize, 5<<20 + 7} {
		body := make([]byte, n-1) // the type byte makes n
		for i := range body {
			body[i] = byte(i * 7)
		}
		f := encodeFrame(0x30, body)
		if got := needsPieces(f); got != (n > pieceSize) {
			t.Fatalf("%d bytes: needsPieces %v", n, got)
		}
		if n <= pieceSize {
			continue
		}
		ps := appendPieces(nil, f)
		if want := (n + pieceSize - 1) / pieceSize; countFrames(t, ps) != want {
			t.Fatalf("%d bytes: %d pieces, want %d", n, countFrames(t, ps), want)
		}
		a := &assembler{max: 8 << 20}
		got := assemble(t, a, ps)
		typ, b, err := splitFrame(got)
		if err != nil || typ != 0x30 || !bytes.Equal(b, body) {
			t.Fatalf("%d bytes: rebuilt type %#x, %d bytes, %v", n, typ, len(b), err)
		}
		if a.want != 0 || a.buf != nil {
			t.Fatal("the assembler holds bytes after a whole frame")
		}
	}
}

func countFrames(t *testing.T, ps []byte) int {
	t.Helper()
	k := 0
	for len(ps) > 0 {
		n, w := binary.Uvarint(ps)
		if w <= 0 || uint64(len(ps)-w) < n {
			t.Fatal("malformed pieces")
		}
		ps = ps[w+int(n):]
		k++
	}
	return k
}

// Pieces out of place, over the cap or past their frame's length are
// protocol violations, before anything over the cap is allocated.
func TestPieces_Refusals(t *testing.T) {
	first := func(n uint64, data string) []byte { return append(binary.AppendUvarint(nil, n), data...) }
	cases := []struct {
		name  string
		steps [][2][]byte // type, body
	}{
		{"a piece of no frame", [][2][]byte{{{framePiece}, []byte("x")}}},
		{"a first piece inside a frame", [][2][]byte{{{framePieceFirst}, first(4, "ab")}, {{framePieceFirst}, first(4, "ab")}}},
		{"over the cap", [][2][]byte{{{framePieceFirst}, first(1<<20+1, "a")}}},
		{"a zero length", [][2][]byte{{{framePieceFirst}, first(0, "")}}},
		{"no length", [][2][]byte{{{framePieceFirst}, nil}}},
		{"past the length", [][2][]byte{{{framePieceFirst}, first(3, "ab")}, {{framePiece}, []byte("cd")}}},
		{"an empty piece", [][2][]byte{{{framePieceFirst}, first(3, "ab")}, {{framePiece}, nil}}},
	}
	for _, c := range cases {
		a := &assembler{max: 1 << 20}
		var err error
		for _, s := range c.steps {
			if _, err = a.add(s[0][0], s[1]); err != nil {
				break
			}
		}
		if !errors.Is(err, errProtocol) {
			t.Fatalf("%s: %v, want a protocol violation", c.name, err)
		}
		if cap(a.buf) > 1<<20 {
			t.Fatalf("%s: allocated %d bytes", c.name, cap(a.buf))
		}
	}
	// A claimed length costs memory only as the bytes arrive.
	a := &assembler{max: 4 << 20}
	if f, err := a.add(framePieceFirst, append(binary.AppendUvarint(nil, 4<<20), 'x')); f != nil || err != nil {
		t.Fatalf("first piece: %v", err)
	}
	if cap(a.buf) > pieceSize {
		t.Fatalf("a first piece of 1 byte claiming 4 MiB holds a buffer of %d bytes", cap(a.buf))
	}
	// A frame in pieces must not itself be a piece.
	b := &bond{asm: assembler{max: 1 << 20}}
	inner := encodeFrame(framePiece, make([]byte, 10))
	_, _, err := b.piece(framePieceFirst, append(binary.AppendUvarint(nil, uint64(len(inner)-1)), inner[1:]...))
	if !errors.Is(err, errProtocol) {
		t.Fatalf("a piece in pieces: %v", err)
	}
}

func FuzzAssembler(f *testing.F) {
	f.Add([]byte{framePieceFirst, 4, 3, 'a', 'b', framePiece, 2, 'c', 'd'})
	f.Fuzz(func(t *testing.T, in []byte) {
		// in: a sequence of (type, length byte, bytes) pieces.
		a := &assembler{max: 4 << 10}
		for len(in) >= 2 {
			typ, n := in[0], int(in[1])
			in = in[2:]
			n = min(n, len(in))
			f, err := a.add(typ%2+framePieceFirst, in[:n])
			in = in[n:]
			if err != nil {
				return
			}
			if len(f) > a.max || cap(a.buf) > a.max {
				t.Fatalf("frame of %d bytes, buffer of %d, over the cap", len(f), cap(a.buf))
			}
		}
	})
}

// gatedInbox holds the first core frame's delivery until its gate opens,
// so that the reader stops reading and the sender's stream window fills.
type gatedInbox struct {
	*recInbox
	gate chan struct{}
	held bool
}

func (g *gatedInbox) Deliver(from peer.ID, kind byte, body []byte) {
	if !g.held {
		g.held = true // the reader goroutine is the only caller
		<-g.gate
	}
	g.recInbox.Deliver(from, kind, body)
}

// A large frame crosses a real bond in pieces, and a priority frame sent
// while its pieces are written arrives before it; a frame sent before the
// large one with Send keeps its place.
func TestBonds_PriorityFramePassesALargeFrame(t *testing.T) {
	a, b := newBondNode(t), newBondNode(t)
	meshed(t, a, b)
	s := testSpec("pieces", RoleWriter)
	ga, _ := a.attach(t, s)
	in := &gatedInbox{recInbox: newInbox(), gate: make(chan struct{})}
	tr, err := b.net.attach(s, in)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	opened := false
	open := func() {
		if !opened {
			opened = true
			close(in.gate)
		}
	}
	t.Cleanup(open)
	testutil.Eventually(t, 10*time.Second, func() bool { return len(ga.bonds()) == 1 && len(in.peers()) == 1 }, "no bond")
	bd := ga.bonds()[0]
	if !ga.Send(b.h.ID(), 0x30, []byte("first")) {
		t.Fatal("send first")
	}
	large := bytes.Repeat([]byte("L"), 3<<20)
	sent0 := bd.bytesSent.Load()
	if !ga.Send(b.h.ID(), 0x31, large) {
		t.Fatal("send large")
	}
	// The peer's reader is stuck on "first", so the stream's window stops
	// the large frame's pieces a few hundred KiB in.
	testutil.Eventually(t, 5*time.Second, func() bool { return bd.bytesSent.Load()-sent0 >= 2*pieceSize },
		"the large frame's pieces did not start")
	if !ga.SendPriority(b.h.ID(), 0x32, []byte("priority")) {
		t.Fatal("send priority")
	}
	open()
	testutil.Eventually(t, 10*time.Second, func() bool { return len(in.received()) == 3 }, "not every frame arrived")
	got := in.received()
	if got[0].kind != 0x30 || got[1].kind != 0x32 || got[2].kind != 0x31 {
		t.Fatalf("frames arrived as %#x, %#x, %#x; want first, priority, large", got[0].kind, got[1].kind, got[2].kind)
	}
	if !bytes.Equal(got[2].body, large) || string(got[1].body) != "priority" {
		t.Fatal("a frame's body changed on the way")
	}
	if len(ga.bonds()) != 1 {
		t.Fatal("the bond ended")
	}
	if got, want := tr.(*groupNet).bonds()[0].piecesRecv.Load(), uint64(3<<20/pieceSize); got < want {
		t.Fatalf("%d pieces received, want at least %d", got, want)
	}
}

// A peer that speaks only bonds 1.0.0 still bonds, over 1.0.0, and gets
// large frames whole: it would not know the pieces.
func TestBonds_OldPeerGetsWholeFrames(t *testing.T) {
	a, b := newBondNode(t), newBondNode(t)
	// b serves and dials 1.0.0 only.
	b.h.RemoveStreamHandler(b.net.proto)
	b.net.proto = b.net.proto10
	meshed(t, a, b)
	s := testSpec("old-peer", RoleWriter)
	ga, _ := a.attach(t, s)
	gb, inB := b.attach(t, s)
	testutil.Eventually(t, 10*time.Second, func() bool { return len(ga.bonds()) == 1 && len(gb.bonds()) == 1 }, "no bond")
	for _, bd := range []*bond{ga.bonds()[0], gb.bonds()[0]} {
		if bd.st.Protocol() != b.net.proto10 || bd.pieces {
			t.Fatalf("bond over %s (pieces %v), want %s without pieces", bd.st.Protocol(), bd.pieces, b.net.proto10)
		}
	}
	large := bytes.Repeat([]byte("W"), 1<<20)
	if !ga.Send(b.h.ID(), 0x30, large) {
		t.Fatal("send")
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return len(inB.received()) == 1 }, "the large frame did not arrive")
	if !bytes.Equal(inB.received()[0].body, large) {
		t.Fatal("the frame changed on the way")
	}
	if got := gb.bonds()[0].piecesRecv.Load(); got != 0 {
		t.Fatalf("%d pieces received on a 1.0.0 bond", got)
	}
}
