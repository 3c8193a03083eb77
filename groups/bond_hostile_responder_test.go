package groups

import (
	"crypto/rand"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/groups/pb"
	"github.com/mosaik-go/mosaik/internal/testutil"
)

// Hostile responders: the victim dials a peer whose entry lists the group
// and whose handler answers badly. Each answer is refused with its code
// (sent back in a Close frame when the victim has something to say),
// counted, and forms no bond; the victim's dial goroutines end.
func TestBonds_HostileResponders(t *testing.T) {
	s := testSpec("hostile-responder", RoleWriter)
	cases := []struct {
		name    string
		answer  func(st network.Stream, fr *frameReader, h hello) // after reading the Hello
		want    Code                                              // counted at the victim
		replied bool                                              // the victim answers with a Close of that code
	}{
		{"bad proof", func(st network.Stream, _ *frameReader, _ hello) {
			var p [proofSize]byte
			_, _ = rand.Read(p[:])
			n := nonce()
			_, _ = st.Write(encodeMsg(frameWelcome, &pb.BondWelcome{Nonce: n[:], Proof: p[:], Role: 1}))
		}, CodeInvalidProof, true},
		{"initiator's proof reflected", func(st network.Stream, _ *frameReader, _ hello) {
			// Without the key the responder cannot prove; it cannot reuse
			// anything the initiator sent either (the Hello carries no proof).
			n := nonce()
			_, _ = st.Write(encodeMsg(frameWelcome, &pb.BondWelcome{Nonce: n[:], Proof: n[:], Role: 1}))
		}, CodeInvalidProof, true},
		{"garbage welcome", func(st network.Stream, _ *frameReader, _ hello) {
			_, _ = st.Write(encodeFrame(frameWelcome, []byte{0xff, 0xff}))
		}, CodeInvalidHandshake, true},
		{"ping instead of welcome", func(st network.Stream, _ *frameReader, _ hello) {
			_, _ = st.Write(encodeFrame(framePing, nil))
		}, CodeProtocolViolation, true},
		{"silent", func(network.Stream, *frameReader, hello) {}, CodeTimeout, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			victim := newBondNode(t, withParams(func(p *BondParams) {
				p.HandshakeTimeout = 300 * time.Millisecond
				p.DialBackoff, p.MaxDialBackoff = time.Hour, time.Hour // one attempt
			}))
			evil := newBondNode(t, withoutService())
			got := make(chan Code, 8)
			done := make(chan struct{})
			t.Cleanup(func() { close(done) })
			evil.h.SetStreamHandler(ProtocolID(testNetwork), func(st network.Stream) {
				defer func() { _ = st.Reset() }()
				_ = st.SetDeadline(time.Now().Add(testutil.Scale(5 * time.Second)))
				fr := newFrameReader(st, 1<<20)
				typ, body, err := fr.next()
				if err != nil || typ != frameHello {
					return
				}
				h, err := decodeHello(body)
				if err != nil {
					return
				}
				tc.answer(st, fr, h)
				if typ, body, err := fr.next(); err == nil && typ == frameClose {
					if ce, err := decodeClose(body); err == nil {
						got <- ce.Code
					}
				}
				if tc.name == "silent" {
					<-done
				}
			})
			t.Cleanup(func() { evil.h.RemoveStreamHandler(ProtocolID(testNetwork)) })
			if _, err := evil.disc.UpdateLocal(func(e *catalog.Entry) {
				e.Groups = append(e.Groups, catalog.Membership{Group: s.ID, Role: 1})
			}); err != nil {
				t.Fatal(err)
			}
			meshed(t, victim, evil)
			_, in := victim.attach(t, s)
			testutil.Eventually(t, 5*time.Second, func() bool {
				return victim.svc.BondStatus().Refusals[tc.want] >= 1
			}, "victim did not count %s", tc.want)
			if tc.replied {
				select {
				case c := <-got:
					if c != tc.want {
						t.Fatalf("victim closed with %d, want %d", c, tc.want)
					}
				case <-time.After(testutil.Scale(3 * time.Second)):
					t.Fatal("victim sent no Close")
				}
			}
			if len(in.peers()) != 0 {
				t.Fatal("a hostile responder formed a bond")
			}
		})
	}
}
