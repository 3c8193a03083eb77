package streams_test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"google.golang.org/protobuf/proto"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/node"
	"github.com/mosaik-go/mosaik/streams"
	"github.com/mosaik-go/mosaik/streams/pb"
)

// rbRawHost starts a bare libp2p host on 127.0.0.1 (TCP) that speaks the
// streams protocol by hand, and closes it at the end of the test.
func rbRawHost(t *testing.T) (host.Host, crypto.PrivKey) {
	t.Helper()
	key, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	h, err := libp2p.New(libp2p.Identity(key), libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"),
		libp2p.DisableRelay(), libp2p.DisableMetrics())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return h, key
}

// rbMemGrowth returns the bytes allocated by the whole process while f ran.
func rbMemGrowth(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// rbNoHugeAlloc bounds what a test may allocate while a peer claims a
// 1 GiB frame: far below the claim, far above what the test itself needs.
const rbNoHugeAlloc = 256 << 20

// TestRobust_HostileConsumerWire speaks the streams protocol to a producer
// node by hand, from a raw libp2p host that is in the producer's catalog
// ("known") and from one that is not ("stranger"). Every malformed opening
// is refused, promptly, with a stream reset carrying ProtocolViolation
// (400) or a Reject frame with the right code, counted in
// ServiceStats.Rejected, and the service still admits a real consumer after.
func TestRobust_HostileConsumerWire(t *testing.T) {
	const name = "robust-hostile-consumer"
	// Long-lived catalog entries: the raw host's entry is put into the
	// producer's catalog by hand and never refreshed.
	pnode := startNode(t, node.WithDiscoveryParams(rbLongLivedParams()))
	prod := mustProducer[int](t, pnode, name)
	svc := pnode.Streams()
	known, knownKey := rbRawHost(t)
	stranger, _ := rbRawHost(t)
	local, err := catalog.NewLocal(knownKey, pnode.Network(), time.Now(), func(e *catalog.Entry) { e.Addrs = known.Addrs() })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pnode.Discovery().Store().Merge(local.Current(), time.Now()); err != nil {
		t.Fatal(err)
	}
	for _, h := range []host.Host{known, stranger} {
		h.Peerstore().AddAddrs(pnode.ID(), pnode.Host().Addrs(), time.Hour)
	}
	open := func(t *testing.T, h host.Host) network.Stream {
		t.Helper()
		st, err := h.NewStream(testCtx(t, 10*time.Second), pnode.ID(), streams.ProtocolID)
		if err != nil {
			t.Fatalf("NewStream: %v", err)
		}
		t.Cleanup(func() { _ = st.Reset() })
		return st
	}
	nw, sid := pnode.Network(), prod.StreamID()
	handshake := svc.Params().HandshakeTimeout

	resets := []struct {
		name       string
		send       []byte
		closeWrite bool
	}{
		{"http garbage then EOF", []byte("GET / HTTP/1.1\r\nHost: mosaik\r\n\r\n"), true},
		{"empty frame", []byte{0}, false},
		{"overlong varint", bytes.Repeat([]byte{0xff}, 11), false},
		{"control frame over 4 KiB", append(binary.AppendUvarint(nil, 4<<10+2), rbFrameSubscribe), false},
		{"data frame instead of Subscribe", append(binary.AppendUvarint(nil, 3), rbFrameData, 1, 42), false},
		{"Accept instead of Subscribe", rbFrame(rbFrameAccept, &pb.Accept{Network: nw[:], Stream: sid[:]}), false},
		{"undecodable Subscribe", append(binary.AppendUvarint(nil, 4), rbFrameSubscribe, 0xff, 0xff, 0xff), false},
		{"truncated Subscribe then EOF", rbSubscribe(nw, sid)[:20], true},
	}
	for _, tc := range resets {
		t.Run(tc.name, func(t *testing.T) {
			r0 := svc.Stats().Rejected
			st := open(t, known)
			start := time.Now()
			if _, err := st.Write(tc.send); err != nil {
				t.Fatal(err)
			}
			if tc.closeWrite {
				_ = st.CloseWrite()
			}
			se := rbStreamReset(t, st, 10*time.Second)
			if streams.Code(se.ErrorCode) != streams.CodeProtocolViolation || !se.Remote {
				t.Errorf("reset %v, want remote code %d", se, streams.CodeProtocolViolation)
			}
			// Refused on sight, not by the handshake timeout.
			if el := time.Since(start); el >= handshake*3/4 {
				t.Errorf("refused after %v, want well before the %v handshake timeout", el, handshake)
			}
			if got := svc.Stats().Rejected - r0; got != 1 {
				t.Errorf("Rejected grew by %d, want 1", got)
			}
		})
	}

	// The cap is the message's (4 KiB), the type byte comes on top, at the
	// producer as at the consumer: a Subscribe of exactly 4 KiB is read
	// (and refused here for its codec, in a Reject frame). The producer
	// capped the frame, type byte included, and reset it with 400.
	t.Run("Subscribe of 4 KiB", func(t *testing.T) {
		m := &pb.Subscribe{Network: nw[:], Stream: sid[:]}
		for proto.Size(m) < 4<<10 {
			m.Codec += "x"
		}
		frame := rbFrame(rbFrameSubscribe, m)
		if proto.Size(m) != 4<<10 {
			t.Fatalf("Subscribe of %d bytes", proto.Size(m))
		}
		st := open(t, known)
		if _, err := st.Write(frame); err != nil {
			t.Fatal(err)
		}
		_ = st.SetReadDeadline(time.Now().Add(10 * time.Second))
		typ, body, err := rbReadFrame(bufio.NewReader(st), 4<<10+1)
		if err != nil || typ != rbFrameReject {
			t.Fatalf("answer type %#x, %v; want a Reject frame", typ, err)
		}
		var rej pb.Reject
		if err := proto.Unmarshal(body, &rej); err != nil || streams.Code(rej.Code) != streams.CodeCodecMismatch {
			t.Fatalf("Reject %v (%v), want CodecMismatch", &rej, err)
		}
	})

	t.Run("length prefix claiming 1 GiB", func(t *testing.T) {
		st := open(t, known)
		var se *network.StreamError
		grew := rbMemGrowth(func() {
			if _, err := st.Write(append(binary.AppendUvarint(nil, 1<<30), rbFrameSubscribe, 0, 0, 0)); err != nil {
				t.Fatal(err)
			}
			se = rbStreamReset(t, st, 10*time.Second)
		})
		if streams.Code(se.ErrorCode) != streams.CodeProtocolViolation || !se.Remote {
			t.Errorf("reset %v, want remote code %d", se, streams.CodeProtocolViolation)
		}
		if grew > rbNoHugeAlloc {
			t.Errorf("the process allocated %d MiB while refusing the frame", grew>>20)
		}
		t.Logf("allocated %d KiB in all while refusing a 1 GiB frame", grew>>10)
	})

	rejects := []struct {
		name string
		from host.Host
		send []byte
		code streams.Code
	}{
		{"Subscribe for another network", known, rbSubscribe(catalog.IDFromString("another network"), sid), streams.CodeDifferentNetwork},
		{"Subscribe for an unknown stream", known, rbSubscribe(nw, catalog.IDFromString("no such stream")), streams.CodeStreamNotFound},
		{"Subscribe from a peer not in the catalog", stranger, rbSubscribe(nw, sid), streams.CodeUnknownPeer},
		{"bytes after Subscribe", known, append(rbSubscribe(nw, sid), 0xde, 0xad), streams.CodeProtocolViolation},
		{"stream ID of 31 bytes", known, rbFrame(rbFrameSubscribe, &pb.Subscribe{Network: nw[:], Stream: sid[:31]}), streams.CodeProtocolViolation},
	}
	for _, tc := range rejects {
		t.Run(tc.name, func(t *testing.T) {
			r0 := svc.Stats().Rejected
			st := open(t, tc.from)
			// One Write: the Subscribe and anything after it arrive together.
			if _, err := st.Write(tc.send); err != nil {
				t.Fatal(err)
			}
			_ = st.SetReadDeadline(time.Now().Add(testutil.Scale(10 * time.Second)))
			r := bufio.NewReader(st)
			typ, body, err := rbReadFrame(r, 4<<10)
			if err != nil {
				t.Fatalf("reading the answer: %v", err)
			}
			if typ != rbFrameReject {
				t.Fatalf("answer is frame type %#x, want Reject (%#x)", typ, rbFrameReject)
			}
			var rej pb.Reject
			if err := proto.Unmarshal(body, &rej); err != nil {
				t.Fatalf("Reject body: %v", err)
			}
			if streams.Code(rej.Code) != tc.code {
				t.Errorf("Reject code %d (%q), want %d (%s)", rej.Code, rej.Reason, tc.code, tc.code)
			}
			// Then the producer closes its side cleanly.
			if _, err := r.ReadByte(); !errors.Is(err, io.EOF) {
				t.Errorf("after the Reject: %v, want EOF", err)
			}
			if got := svc.Stats().Rejected - r0; got != 1 {
				t.Errorf("Rejected grew by %d, want 1", got)
			}
		})
	}

	t.Run("consumer that never subscribes", func(t *testing.T) {
		r0 := svc.Stats().Rejected
		st := open(t, known)
		start := time.Now()
		// Reading sends the protocol header (lazy negotiation) but no frame.
		se := rbStreamReset(t, st, 10*time.Second)
		el := time.Since(start)
		if streams.Code(se.ErrorCode) != streams.CodeProtocolViolation || !se.Remote {
			t.Errorf("reset %v, want remote code %d", se, streams.CodeProtocolViolation)
		}
		if el < handshake*3/4 {
			t.Errorf("reset after %v, before the %v handshake timeout", el, handshake)
		}
		t.Logf("silent consumer reset after %v (handshake timeout %v)", el, handshake)
		if got := svc.Stats().Rejected - r0; got != 1 {
			t.Errorf("Rejected grew by %d, want 1", got)
		}
	})

	if n := len(prod.Consumers()); n != 0 {
		t.Fatalf("the producer admitted %d hostile consumers", n)
	}
	// Every refusal is counted under its code, for the metric's reason label.
	st := svc.Stats()
	var byCode uint64
	for _, n := range st.RejectedBy {
		byCode += n
	}
	if byCode != st.Rejected || st.RejectedBy[streams.CodeProtocolViolation] == 0 {
		t.Errorf("RejectedBy %v sums to %d, Rejected %d; want equal, with ProtocolViolation", st.RejectedBy, byCode, st.Rejected)
	}
	// The service survived all that: a real consumer is admitted and served.
	cnode := startNode(t, node.WithBootstrapPeers(pnode.AddrInfo()))
	cons := mustConsumer[int](t, cnode, name)
	testutil.Eventually(t, 10*time.Second, func() bool { return rbAllConnected(prod.Consumers(), 1) }, "real consumer not admitted")
	ctx := testCtx(t, 10*time.Second)
	if err := prod.Send(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if v, err := cons.Recv(ctx); err != nil || v != 1 {
		t.Fatalf("real consumer: %v, %v", v, err)
	}
}

// rbEvil is a hostile producer: a node that advertises streams (real
// Producers) but whose streams protocol handler is replaced by one that
// accepts every Subscribe and then misbehaves as its stream's mode says.
type rbEvil struct {
	modes map[catalog.StreamID]func(w io.Writer) error
	// answers replace the Accept of a stream (its mode then follows).
	answers map[catalog.StreamID]func(w io.Writer) error
	// halfClose: after its mode, the stream's write side is closed (FIN).
	halfClose map[catalog.StreamID]bool

	mu       sync.Mutex
	attempts map[catalog.StreamID]int
	resets   map[catalog.StreamID][]network.StreamErrorCode // codes the consumer reset with
	eofs     map[catalog.StreamID]int                       // streams the consumer closed without a reset
	other    []error                                        // handler failures
}

// start runs e on a node that advertises the named streams, and returns
// a consumer node that sees them all in its catalog.
func (e *rbEvil) start(t *testing.T, names ...string) (cnode *node.Node) {
	t.Helper()
	enode := startNode(t)
	for _, name := range names {
		mustProducer[rbRun](t, enode, name) // advertises the stream
	}
	enode.Host().SetStreamHandler(streams.ProtocolID, e.handle)
	cnode = startNode(t, node.WithBootstrapPeers(enode.AddrInfo()))
	testutil.Eventually(t, 10*time.Second, func() bool {
		en, ok := cnode.Catalog().Get(enode.ID())
		return ok && !slices.ContainsFunc(names, func(n string) bool { return !en.Entry.Produces(catalog.IDFromString(n)) })
	}, "the consumer node does not see the hostile producer")
	return cnode
}

func (e *rbEvil) handle(st network.Stream) {
	defer func() { _ = st.Reset() }()
	_ = st.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(st)
	typ, body, err := rbReadFrame(r, 4<<10)
	var sub pb.Subscribe
	if err == nil && typ == rbFrameSubscribe {
		err = proto.Unmarshal(body, &sub)
	}
	id, ierr := catalog.IDFromBytes(sub.Stream)
	mode, ok := e.modes[id]
	if err != nil || ierr != nil || !ok {
		e.fail(errors.Join(err, ierr, errors.New("unexpected Subscribe")))
		return
	}
	e.mu.Lock()
	e.attempts[id]++
	e.mu.Unlock()
	w := bufio.NewWriter(st)
	if answer := e.answers[id]; answer != nil {
		err = answer(w)
	} else {
		_, err = w.Write(rbFrame(rbFrameAccept, &pb.Accept{Network: sub.Network, Stream: sub.Stream}))
	}
	if err == nil {
		err = mode(w)
	}
	if err == nil {
		err = w.Flush()
	}
	if err == nil && e.halfClose[id] {
		err = st.CloseWrite()
	}
	if err == nil {
		_, err = io.Copy(io.Discard, r) // until the consumer resets
	}
	if err == nil {
		e.mu.Lock()
		if e.eofs == nil {
			e.eofs = map[catalog.StreamID]int{}
		}
		e.eofs[id]++
		e.mu.Unlock()
		return
	}
	var se *network.StreamError
	if !errors.As(err, &se) || !se.Remote {
		e.fail(err)
		return
	}
	e.mu.Lock()
	e.resets[id] = append(e.resets[id], se.ErrorCode)
	e.mu.Unlock()
}

func (e *rbEvil) fail(err error) {
	e.mu.Lock()
	e.other = append(e.other, err)
	e.mu.Unlock()
}

func (e *rbEvil) stats(id catalog.StreamID) (attempts int, resets []network.StreamErrorCode) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.attempts[id], append([]network.StreamErrorCode(nil), e.resets[id]...)
}

// TestRobust_HostileProducerWire: a producer that accepts and then sends a
// data frame claiming 1 GiB, or a datum the consumer's codec cannot
// decode, is reset by the consumer with ProtocolViolation; the consumer
// delivers nothing from it, allocates nothing like the claim, does not
// panic, and (TestMain) leaks nothing.
func TestRobust_HostileProducerWire(t *testing.T) {
	const (
		giant     = "robust-evil-giant"
		junk      = "robust-evil-junk"
		bigAnswer = "robust-evil-big-answer"
	)
	evil := &rbEvil{
		answers: map[catalog.StreamID]func(io.Writer) error{
			// An answer claiming 64 KiB (under MaxFrameSize, over the
			// control frames' cap) whose body never comes.
			catalog.IDFromString(bigAnswer): func(w io.Writer) error {
				_, err := w.Write(append(binary.AppendUvarint(nil, 64<<10), rbFrameAccept))
				return err
			},
		},
		modes: map[catalog.StreamID]func(io.Writer) error{
			catalog.IDFromString(bigAnswer): func(io.Writer) error { return nil },
			catalog.IDFromString(giant): func(w io.Writer) error {
				hdr := binary.AppendUvarint(nil, 1<<30)
				_, err := w.Write(append(hdr, rbFrameData, 1, 0xab, 0xcd))
				return err
			},
			catalog.IDFromString(junk): func(w io.Writer) error {
				// A well-formed data frame (seq 1) whose payload is no CBOR
				// encoding of the datum type (0xff is a stray "break").
				payload := []byte{0xff, 0xfe, 0xfd}
				b := binary.AppendUvarint(nil, uint64(2+len(payload)))
				_, err := w.Write(append(append(b, rbFrameData, 1), payload...))
				return err
			},
		},
		attempts: map[catalog.StreamID]int{},
		resets:   map[catalog.StreamID][]network.StreamErrorCode{},
	}
	cnode := evil.start(t, giant, junk, bigAnswer)
	fast := streams.WithBackoff(func() backoff.BackOff { return backoff.NewConstantBackOff(100 * time.Millisecond) })
	checkResets := func(t *testing.T, resets []network.StreamErrorCode) {
		t.Helper()
		for _, c := range resets {
			if streams.Code(c) != streams.CodeProtocolViolation {
				t.Errorf("consumer reset the hostile stream with %d, want %d", c, streams.CodeProtocolViolation)
			}
		}
	}

	t.Run("data frame claiming 1 GiB", func(t *testing.T) {
		id := catalog.IDFromString(giant)
		var (
			n      int
			resets []network.StreamErrorCode
		)
		grew := rbMemGrowth(func() {
			cons, err := streams.NewConsumer[rbRun](cnode.Streams(), giant, fast)
			if err != nil {
				t.Fatal(err)
			}
			defer cons.Close()
			// A frame over MaxFrameSize is a protocol violation, not a final
			// code: the consumer keeps retrying with its backoff.
			testutil.Eventually(t, 15*time.Second, func() bool {
				n, resets = evil.stats(id)
				return n >= 3 && len(resets) >= 3
			}, "consumer did not retry the hostile producer")
			if infos := cons.Producers(); len(infos) != 1 || infos[0].Err == nil || !strings.Contains(infos[0].Err.Error(), "exceeds the limit") {
				t.Errorf("receivers %+v, want one whose error is the frame-size refusal", infos)
			}
			if _, err := cons.TryRecv(); !errors.Is(err, streams.ErrEmpty) {
				t.Errorf("TryRecv = %v, want ErrEmpty: nothing may be delivered", err)
			}
		})
		checkResets(t, resets)
		if grew > rbNoHugeAlloc {
			t.Errorf("the process allocated %d MiB over %d attempts", grew>>20, n)
		}
		t.Logf("%d attempts, %d KiB allocated in all", n, grew>>10)
	})

	// The answer to a Subscribe is a control frame: one over that cap is
	// refused on its length, before its body is awaited or buffered.
	t.Run("answer over the control cap", func(t *testing.T) {
		id := catalog.IDFromString(bigAnswer)
		cons := mustConsumer[rbRun](t, cnode, bigAnswer, fast)
		testutil.Eventually(t, 10*time.Second, func() bool {
			_, resets := evil.stats(id)
			infos := cons.Producers()
			return len(resets) >= 1 && len(infos) == 1 && infos[0].Err != nil && strings.Contains(infos[0].Err.Error(), "exceeds the limit")
		}, "consumer did not refuse the oversize answer on its length")
		_, resets := evil.stats(id)
		checkResets(t, resets)
	})

	t.Run("undecodable datum", func(t *testing.T) {
		id := catalog.IDFromString(junk)
		cons := mustConsumer[rbRun](t, cnode, junk, fast)
		testutil.Eventually(t, 15*time.Second, func() bool {
			_, resets := evil.stats(id)
			return len(resets) >= 1
		}, "consumer did not reset the hostile producer")
		// The receiver gives up on such a producer; a new one may try again
		// on the next catalog change. Count attempts over three changes of
		// the consumer node's catalog (heartbeats, every 250-750 ms).
		got, changes := rbCountOverChanges(t, cnode, 3, func() uint64 { n, _ := evil.stats(id); return uint64(n) })
		_, resets := evil.stats(id)
		checkResets(t, resets)
		if _, err := cons.TryRecv(); !errors.Is(err, streams.ErrEmpty) {
			t.Errorf("TryRecv = %v, want ErrEmpty: nothing may be delivered", err)
		}
		t.Logf("%d attempts over %d catalog changes", got, changes)
		// Regression (fixed): same hot loop as TestRobust_UnknownPeerWithoutSyncResponder:
		// the receiver returns on errDecode ("producer presumed broken or
		// hostile"), but its deferred c.poke() makes the worker start a new
		// receiver for the same producer at once, without backoff.
		if got > changes+2 {
			t.Errorf("the hostile producer saw %d subscriptions over %d catalog changes, want at most one per change (+2)", got, changes)
		}
	})

	evil.checkHandler(t)
}

// checkHandler fails t on any failure of e's handler other than a stream
// error: the consumer closing (end of a subtest) may cancel a stream
// before it is reset with a code; anything else is unexpected.
func (e *rbEvil) checkHandler(t *testing.T) {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, err := range e.other {
		var se *network.StreamError
		if !errors.As(err, &se) {
			t.Errorf("hostile handler: %v", err)
		}
	}
}
