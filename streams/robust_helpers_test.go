package streams_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/mosaik-go/mosaik/catalog/discovery"
	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/node"
	"github.com/mosaik-go/mosaik/streams"
	"github.com/mosaik-go/mosaik/streams/pb"
)

// Helpers of the robust_* tests. Their names carry an "rb" prefix so they
// cannot collide with helpers other test files of the package add.

// Frame types of the wire format (wire.go), for tests that speak it raw.
const (
	rbFrameSubscribe byte = 0x01
	rbFrameAccept    byte = 0x02
	rbFrameReject    byte = 0x03
	rbFrameClose     byte = 0x04
	rbFrameData      byte = 0x10
)

// rbLongLivedParams is the test discovery profile with entries that stay
// fresh for a minute: for tests that put entries into a catalog by hand
// (no heartbeat ever refreshes them there), so they are not purged
// mid-test after the profile's 3 s.
func rbLongLivedParams() discovery.Params {
	p := discovery.TestParams()
	p.Catalog.PurgeAfter = time.Minute
	return p
}

// rbU64 is an 8-byte big-endian counter datum (streams.Bytes keeps the
// slice, so every datum gets its own).
func rbU64(i uint64) []byte { return binary.BigEndian.AppendUint64(nil, i) }

// rbPadded is an n-byte datum whose first 8 bytes are the counter i.
func rbPadded(i uint64, n int) []byte {
	b := make([]byte, n)
	binary.BigEndian.PutUint64(b, i)
	return b
}

// rbVal decodes a counter datum.
func rbVal(b []byte) (uint64, error) {
	if len(b) < 8 {
		return 0, fmt.Errorf("datum of %d bytes, want >= 8", len(b))
	}
	return binary.BigEndian.Uint64(b), nil
}

// rbChannel returns the subscription to peer p in infos.
func rbSubscription(infos []streams.SubscriptionInfo, p peer.ID) (streams.SubscriptionInfo, bool) {
	for _, ci := range infos {
		if ci.Peer == p {
			return ci, true
		}
	}
	return streams.SubscriptionInfo{}, false
}

// rbOnlyConnected reports whether infos hold exactly one subscription, a
// Connected one to p.
func rbOnlyConnected(infos []streams.SubscriptionInfo, p peer.ID) bool {
	return len(infos) == 1 && infos[0].Peer == p && infos[0].State == streams.Connected
}

// rbAllConnected reports whether infos hold n subscriptions, all Connected.
func rbAllConnected(infos []streams.SubscriptionInfo, n int) bool {
	if len(infos) != n {
		return false
	}
	for _, ci := range infos {
		if ci.State != streams.Connected {
			return false
		}
	}
	return true
}

// rbProgress tracks how many datums each reader has taken, so a sender can
// stay within a window of the slowest one without polling.
type rbProgress struct {
	counts []atomic.Uint64
	wake   chan struct{}
}

func newRBProgress(n int) *rbProgress {
	return &rbProgress{counts: make([]atomic.Uint64, n), wake: make(chan struct{}, 1)}
}

func (p *rbProgress) add(i int) {
	p.counts[i].Add(1)
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

func (p *rbProgress) min() uint64 {
	m := p.counts[0].Load()
	for i := range p.counts[1:] {
		m = min(m, p.counts[i+1].Load())
	}
	return m
}

// waitWithin blocks until every reader is within window datums of sent.
func (p *rbProgress) waitWithin(ctx context.Context, sent, window uint64) error {
	for sent-p.min() > window {
		select {
		case <-p.wake:
		case <-ctx.Done():
			return fmt.Errorf("readers stuck at %d of %d: %w", p.min(), sent, ctx.Err())
		}
	}
	return nil
}

// rbReadFrame reads one frame of the streams wire format: uvarint length,
// type byte, body. It refuses frames above max without allocating them.
func rbReadFrame(r *bufio.Reader, max int) (byte, []byte, error) {
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return 0, nil, err
	}
	if n == 0 || n > uint64(max) {
		return 0, nil, fmt.Errorf("frame of %d bytes", n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return 0, nil, err
	}
	return b[0], b[1:], nil
}

// rbFrame frames a control message.
func rbFrame(typ byte, m proto.Message) []byte {
	body, err := proto.Marshal(m)
	if err != nil {
		panic(err)
	}
	b := binary.AppendUvarint(nil, uint64(len(body)+1))
	b = append(b, typ)
	return append(b, body...)
}

// rbSubscribe frames a Subscribe for the given network and stream IDs.
func rbSubscribe(network, stream [32]byte) []byte {
	return rbFrame(rbFrameSubscribe, &pb.Subscribe{Network: network[:], Stream: stream[:]})
}

// rbStreamReset reads st until it fails and returns the reset it ended
// with. It fails the test if st ends another way or not within d.
func rbStreamReset(t testing.TB, st network.Stream, d time.Duration) *network.StreamError {
	t.Helper()
	_ = st.SetReadDeadline(time.Now().Add(testutil.Scale(d)))
	_, err := io.Copy(io.Discard, st)
	var se *network.StreamError
	if !errors.As(err, &se) {
		t.Fatalf("stream ended with %v (read error %T), want a stream reset with a code", err, err)
	}
	return se
}

// rbCountOverChanges returns how much count grows while n's catalog
// changes at least minChanges times (in the test profile the local
// heartbeat alone changes it every 250-750 ms), and how many changes (new
// snapshot versions) there were in that time. Tests use it to bound how
// often a consumer comes back to a producer that refused it: mosaik
// re-attempts a producer given up on at the next catalog change.
func rbCountOverChanges(t testing.TB, n *node.Node, minChanges int, count func() uint64) (grew, changes uint64) {
	t.Helper()
	ctx := testCtx(t, 30*time.Second)
	snap := n.Catalog()
	v0, c0 := snap.Version(), count()
	for snap.Version()-v0 < uint64(minChanges) {
		select {
		case <-snap.Changed():
			snap = n.Catalog()
		case <-ctx.Done():
			t.Fatalf("the catalog of %s did not change %d times", n.ID(), minChanges)
		}
	}
	grew = count() - c0
	return grew, n.Catalog().Version() - v0
}
