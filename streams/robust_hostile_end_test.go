package streams_test

import (
	"encoding/binary"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/libp2p/go-libp2p/core/network"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/node"
	"github.com/mosaik-go/mosaik/streams"
)

// TestRobust_HostileProducerEnds: how a producer ends a subscription
// badly is named in the consumer's Ends, and the consumer ends its side
// with a code:
//   - a Close frame that does not decode is a protocol violation; the
//     consumer resets with ProtocolViolation (it closed the stream
//     without a code, so an in-band producer waited for a write timeout);
//   - a Reject frame that does not decode, the same;
//   - a stream that ends inside a frame is UnexpectedClose, as one that
//     ends between frames (it was counted under no code at all).
func TestRobust_HostileProducerEnds(t *testing.T) {
	const (
		badClose  = "robust-evil-bad-close"
		badReject = "robust-evil-bad-reject"
		midFrame  = "robust-evil-mid-frame"
	)
	// A control frame whose body is no protobuf (field 1, wire type 7).
	junkControl := func(typ byte) []byte { return []byte{2, typ, 0x0f} }
	evil := &rbEvil{
		answers: map[catalog.StreamID]func(io.Writer) error{
			catalog.IDFromString(badReject): func(w io.Writer) error {
				_, err := w.Write(junkControl(rbFrameReject))
				return err
			},
		},
		modes: map[catalog.StreamID]func(io.Writer) error{
			catalog.IDFromString(badClose): func(w io.Writer) error {
				_, err := w.Write(junkControl(rbFrameClose))
				return err
			},
			catalog.IDFromString(badReject): func(io.Writer) error { return nil },
			catalog.IDFromString(midFrame): func(w io.Writer) error {
				// A data frame claiming 10 bytes, of which 3 come.
				_, err := w.Write(append(binary.AppendUvarint(nil, 10), rbFrameData, 1, 0xab))
				return err
			},
		},
		halfClose: map[catalog.StreamID]bool{catalog.IDFromString(midFrame): true},
		attempts:  map[catalog.StreamID]int{},
		resets:    map[catalog.StreamID][]network.StreamErrorCode{},
	}
	cnode := evil.start(t, badClose, badReject, midFrame)
	fast := streams.WithBackoff(func() backoff.BackOff { return backoff.NewConstantBackOff(100 * time.Millisecond) })

	for _, tt := range []struct {
		name  string
		reset bool         // the consumer resets (with ProtocolViolation)
		want  streams.Code // counted in the consumer's Ends
	}{
		{badClose, true, streams.CodeProtocolViolation},
		{badReject, true, streams.CodeProtocolViolation},
		{midFrame, false, streams.CodeUnexpectedClose},
	} {
		t.Run(tt.name, func(t *testing.T) {
			id := catalog.IDFromString(tt.name)
			cons := mustConsumer[rbRun](t, cnode, tt.name, fast)
			testutil.Eventually(t, 15*time.Second, func() bool {
				return consumerEnds(cnode, id)[tt.want] >= 2
			}, "consumer Ends %v, receivers %+v", testutil.Lazy(func() any { return consumerEnds(cnode, id) }), testutil.Lazy(func() any { return cons.Producers() }))
			evil.mu.Lock()
			resets, eofs := append([]network.StreamErrorCode(nil), evil.resets[id]...), evil.eofs[id]
			evil.mu.Unlock()
			if tt.reset {
				if eofs != 0 || len(resets) == 0 {
					t.Errorf("consumer reset %d streams and closed %d without a code, want resets only", len(resets), eofs)
				}
				for _, c := range resets {
					if streams.Code(c) != streams.CodeProtocolViolation {
						t.Errorf("consumer reset with %d, want %d", c, streams.CodeProtocolViolation)
					}
				}
			}
			if _, err := cons.TryRecv(); !errors.Is(err, streams.ErrEmpty) {
				t.Errorf("TryRecv = %v, want ErrEmpty", err)
			}
		})
	}
	evil.checkHandler(t)
}

// consumerEnds is the Ends of n's consumer of id (nil if it has none).
func consumerEnds(n *node.Node, id streams.StreamID) map[streams.Code]uint64 {
	for _, h := range n.Streams().Handles() {
		if h.Role == streams.RoleConsumer && h.Stream == id {
			return h.Ends
		}
	}
	return nil
}
