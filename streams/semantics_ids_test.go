package streams_test

// Ports of mosaik's tests/streams/smoke.rs (custom_stream_id,
// custom_datum_encoding, stream_def), tests/streams/declare.rs (IDs by the
// string rule) and tests/streams/producer/builder.rs
// (multiple_producers_one_stream), plus the Go-specific construction
// errors: codec type mismatches and options of the other side.

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"lukechampine.com/blake3"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/node"
	"github.com/mosaik-go/mosaik/streams"
)

// A producer named by the 64-hex form of blake3("my-stream1") and
// consumers named "my-stream1" and by the upper-case hex all share one
// stream ID and connect (mosaik's stream_def and stream_macro_named).
func TestSemantics_CustomStreamID_HexNameMatchesPlainName(t *testing.T) {
	t.Parallel()
	nodes := semNodes(t, nil, nil)
	sum := blake3.Sum256([]byte("my-stream1"))
	hexName := hex.EncodeToString(sum[:])

	prod := mustProducer[string](t, nodes[0], hexName)
	plain := mustConsumer[string](t, nodes[1], "my-stream1")
	upper := mustConsumer[string](t, nodes[1], strings.ToUpper(hexName))
	// 63 hex characters are not an ID: they are hashed like any name.
	other := mustConsumer[string](t, nodes[1], hexName[:63])

	want := catalog.StreamID(sum)
	for name, got := range map[string]catalog.StreamID{
		"producer": prod.StreamID(), "plain consumer": plain.StreamID(), "upper-case consumer": upper.StreamID(),
	} {
		if got != want {
			t.Errorf("%s stream ID = %s, want blake3(\"my-stream1\") = %s", name, got, want)
		}
	}
	if other.StreamID() == want {
		t.Errorf("a 63-character hex name gave the ID itself; it must be hashed")
	}
	if !nodes[0].Catalog().Local().Entry.Produces(want) {
		t.Errorf("the producer's stream is not in its node's catalog entry")
	}

	testutil.Eventually(t, 10*time.Second, func() bool { return len(semConnectedPeers(prod.Consumers())) == 2 },
		"producer has %d consumers, want the plain and upper-case ones", testutil.Lazy(func() any { return len(prod.Consumers()) }))
	semSend(t, prod, "hello", 5*time.Second)
	for name, c := range map[string]*streams.Consumer[string]{"plain": plain, "upper-case": upper} {
		if v := semRecv(t, c, 5*time.Second); v != "hello" {
			t.Errorf("%s consumer got %q, want hello", name, v)
		}
	}
	if len(other.Producers()) != 0 {
		t.Errorf("the consumer of another stream found producers: %+v", other.Producers())
	}
}

// Two producers with different stream names on one node: each consumer
// subscribes only to its own stream (mosaik's custom_stream_id).
func TestSemantics_CustomStreamID_TwoStreamsOnOneNode(t *testing.T) {
	t.Parallel()
	nodes := semNodes(t, nil, nil)
	p1 := mustProducer[string](t, nodes[0], "stream1234")
	p2 := mustProducer[string](t, nodes[0], "stream5678")
	if p1.StreamID() == p2.StreamID() {
		t.Fatal("two stream names gave one ID")
	}
	c1 := mustConsumer[string](t, nodes[1], "stream1234")
	c2 := mustConsumer[string](t, nodes[1], "stream5678")
	testutil.Eventually(t, 10*time.Second, func() bool {
		return semConnected(p1.Consumers(), nodes[1].ID()) && semConnected(p2.Consumers(), nodes[1].ID())
	}, "consumers did not subscribe")
	semSend(t, p1, "one-a", 5*time.Second)
	semSend(t, p2, "two-a", 5*time.Second)
	semSend(t, p1, "one-b", 5*time.Second)
	for _, want := range []string{"one-a", "one-b"} {
		if v := semRecv(t, c1, 5*time.Second); v != want {
			t.Fatalf("stream1234 consumer got %q, want %q", v, want)
		}
	}
	if v := semRecv(t, c2, 5*time.Second); v != "two-a" {
		t.Fatalf("stream5678 consumer got %q, want two-a", v)
	}
	// Each producer holds exactly one subscription (node 1 subscribed once
	// per stream), so no datum of one stream can reach the other's
	// consumer; the per-subscription counts confirm it. A producer counts a
	// datum once its write returned, which can be after the consumer read
	// it: wait for the counts, then check they do not grow past.
	for name, tc := range map[string]struct {
		p      *streams.Producer[string]
		datums uint64
	}{"stream1234": {p1, 2}, "stream5678": {p2, 1}} {
		counted := func() bool {
			infos := tc.p.Consumers()
			return len(infos) == 1 && infos[0].Stats.Datums >= tc.datums
		}
		testutil.Eventually(t, 5*time.Second, counted, name+" producer did not count its datums")
		if infos := tc.p.Consumers(); len(infos) != 1 || infos[0].Stats.Datums != tc.datums {
			t.Errorf("%s producer: consumers %+v, want one with %d datums", name, infos, tc.datums)
		}
	}
	if got := c2.Stats().Datums; got != 1 {
		t.Errorf("stream5678 consumer took %d datums, want 1", got)
	}
}

// semRawUTF8 sends a string as its raw UTF-8 bytes and marks decoded values,
// like mosaik's custom_datum_encoding.
type semRawUTF8 struct{}

func (semRawUTF8) Encode(s string) ([]byte, error) { return []byte(s), nil }
func (semRawUTF8) Decode(b []byte) (string, error) { return string(b) + "-custom-decode", nil }

func TestSemantics_CustomCodec_RawUTF8(t *testing.T) {
	t.Parallel()
	nodes := semNodes(t, nil, nil)
	prod := mustProducer[string](t, nodes[0], "custom-codec", streams.WithCodec[string](semRawUTF8{}))
	cons := mustConsumer[string](t, nodes[1], "custom-codec", streams.WithCodec[string](semRawUTF8{}))
	const msg = "hello custom encoding"
	semSend(t, prod, msg, 10*time.Second)
	if v := semRecv(t, cons, 5*time.Second); v != msg+"-custom-decode" {
		t.Fatalf("got %q, want %q", v, msg+"-custom-decode")
	}
	// The payload on the wire is the raw UTF-8 (CBOR would add a header
	// byte): both ends count exactly len(msg) bytes.
	testutil.Eventually(t, 5*time.Second, func() bool {
		pi, ok1 := semInfo(prod.Consumers(), nodes[1].ID())
		ci, ok2 := semInfo(cons.Producers(), nodes[0].ID())
		return ok1 && ok2 && pi.Stats.Bytes == uint64(len(msg)) && ci.Stats.Bytes == uint64(len(msg))
	}, "byte counts are not len(%q) = %d: producer %+v, consumer %+v", msg, len(msg), testutil.Lazy(func() any { return prod.Consumers() }), testutil.Lazy(func() any { return cons.Producers() }))
}

// streams.Bytes passes payloads through (and the consumer's copies survive
// the reuse of frame buffers); streams.JSON round-trips structs.
func TestSemantics_Codecs_BytesAndJSON(t *testing.T) {
	t.Parallel()
	nodes := semNodes(t, nil, nil)

	bp := mustProducer[[]byte](t, nodes[0], "codec-bytes", streams.WithCodec[[]byte](streams.Bytes{}))
	bc := mustConsumer[[]byte](t, nodes[1], "codec-bytes", streams.WithCodec[[]byte](streams.Bytes{}))
	first, second := []byte{0, 1, 2, 0xff}, []byte{9, 9, 9, 9}
	semSend(t, bp, first, 10*time.Second)
	semSend(t, bp, second, 5*time.Second)
	got1 := semRecv(t, bc, 5*time.Second)
	got2 := semRecv(t, bc, 5*time.Second)
	if !bytes.Equal(got1, first) || !bytes.Equal(got2, second) {
		t.Errorf("Bytes: got %x then %x, want %x then %x", got1, got2, first, second)
	}
	if ci, ok := semInfo(bc.Producers(), nodes[0].ID()); !ok || ci.Stats.Bytes != 8 {
		t.Errorf("Bytes: consumer subscription %+v, want 8 payload bytes", ci)
	}

	jp := mustProducer[order](t, nodes[0], "codec-json", streams.WithCodec[order](streams.JSON[order]{}))
	jc := mustConsumer[order](t, nodes[1], "codec-json", streams.WithCodec[order](streams.JSON[order]{}))
	want := order{ID: 7, Price: 2.5}
	semSend(t, jp, want, 10*time.Second)
	if v := semRecv(t, jc, 5*time.Second); v != want {
		t.Errorf("JSON: got %+v, want %+v", v, want)
	}
	enc, _ := json.Marshal(want)
	testutil.Eventually(t, 5*time.Second, func() bool {
		ci, ok := semInfo(jc.Producers(), nodes[0].ID())
		return ok && ci.Stats.Bytes == uint64(len(enc))
	}, "JSON: consumer subscription %+v, want %d payload bytes (%s)", testutil.Lazy(func() any { return jc.Producers() }), len(enc), enc)
}

// A codec or undelivered sink of another type makes the constructor fail,
// without registering or advertising the stream.
func TestSemantics_WrongCodecType(t *testing.T) {
	t.Parallel()
	n := startNode(t, node.WithoutDHT())
	svc := n.Streams()
	if p, err := streams.NewProducer[string](svc, "typed", streams.WithCodec[int](streams.CBOR[int]{})); err == nil {
		_ = p.Close()
		t.Error("NewProducer[string] accepted a Codec[int]")
	}
	if p, err := streams.NewProducer[string](svc, "typed", streams.WithCodec[[]byte](streams.Bytes{})); err == nil {
		_ = p.Close()
		t.Error("NewProducer[string] accepted streams.Bytes")
	}
	if p, err := streams.NewProducer[string](svc, "typed", streams.WithUndelivered(func(int) {})); err == nil {
		_ = p.Close()
		t.Error("NewProducer[string] accepted an undelivered sink of int")
	}
	if c, err := streams.NewConsumer[string](svc, "typed", streams.WithCodec[order](streams.JSON[order]{})); err == nil {
		_ = c.Close()
		t.Error("NewConsumer[string] accepted a Codec[order]")
	}
	if n.Catalog().Local().Entry.Produces(catalog.IDFromString("typed")) {
		t.Error("a failed NewProducer advertised its stream")
	}
	// Nothing was registered: a well-typed producer of the stream works.
	p := mustProducer[string](t, n, "typed", streams.WithCodec[string](streams.CBOR[string]{}))
	if !n.Catalog().Local().Entry.Produces(p.StreamID()) {
		t.Error("the producer's stream is not advertised")
	}
}

// A second producer of one stream on one node fails with
// ErrProducerExists whatever its type or spelling of the name; the first
// keeps working. After Close the stream leaves the catalog entry and a
// new producer can be created (mosaik's multiple_producers_one_stream;
// unlike mosaik the existing handle is not returned and Close withdraws
// the stream).
func TestSemantics_ProducerExists(t *testing.T) {
	t.Parallel()
	nodes := semNodes(t, nil, nil)
	n0, n1 := nodes[0], nodes[1]
	id := catalog.IDFromString("dup")
	first, err := streams.NewProducer[string](n0.Streams(), "dup")
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	if !n0.Catalog().Local().Entry.Produces(id) {
		t.Fatal("the open producer's stream is not in the local catalog entry")
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		e, ok := n1.Catalog().Get(n0.ID())
		return ok && e.Entry.Produces(id)
	}, "the remote catalog does not list the stream")

	for name, create := range map[string]func() (func() error, error){
		"same type": func() (func() error, error) {
			p, err := streams.NewProducer[string](n0.Streams(), "dup")
			return semCloser(p), err
		},
		"other type": func() (func() error, error) {
			p, err := streams.NewProducer[int](n0.Streams(), "dup")
			return semCloser(p), err
		},
		"hex name": func() (func() error, error) {
			p, err := streams.NewProducer[string](n0.Streams(), id.String())
			return semCloser(p), err
		},
	} {
		c, err := create()
		if !errors.Is(err, streams.ErrProducerExists) {
			if c != nil {
				_ = c()
			}
			t.Errorf("%s: second NewProducer: err = %v, want ErrProducerExists", name, err)
		}
	}

	// The first producer is untouched by the failed attempts.
	cons := mustConsumer[string](t, n1, "dup", streams.WithBackoff(semFastBackoff))
	semSend(t, first, "from-first", 10*time.Second)
	if v := semRecv(t, cons, 5*time.Second); v != "from-first" {
		t.Fatalf("got %q, want from-first", v)
	}

	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	if err := first.TrySend("late"); !errors.Is(err, streams.ErrClosed) {
		t.Errorf("TrySend after Close: %v, want ErrClosed", err)
	}
	if n0.Catalog().Local().Entry.Produces(id) {
		t.Error("the closed producer's stream is still in the local catalog entry")
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		e, ok := n1.Catalog().Get(n0.ID())
		return ok && !e.Entry.Produces(id)
	}, "the remote catalog still lists the closed producer's stream")

	second := mustProducer[string](t, n0, "dup")
	if !n0.Catalog().Local().Entry.Produces(id) {
		t.Error("the new producer's stream is not in the local catalog entry")
	}
	// The consumer, still open, subscribes to the new producer.
	semSend(t, second, "from-second", 15*time.Second)
	if v := semRecv(t, cons, 5*time.Second); v != "from-second" {
		t.Fatalf("got %q, want from-second", v)
	}
}

func semCloser[T any](p *streams.Producer[T]) func() error {
	if p == nil {
		return nil
	}
	return p.Close
}

// Options of one side do not implement the other side's option interface,
// so passing one to the wrong constructor does not compile; a codec or
// sink for another datum type is refused by the constructor; out-of-range
// values fail on their own side.
func TestSemantics_OptionsOfOtherSide(t *testing.T) {
	t.Parallel()
	n := startNode(t, node.WithoutDHT())
	svc := n.Streams()
	producerOnly := map[string]any{
		"WithMaxConsumers": streams.WithMaxConsumers(1),
		"WithQueueSize":    streams.WithQueueSize(8),
		"WithDropLagging":  streams.WithDropLagging(),
		"WithUndelivered":  streams.WithUndelivered(func(string) {}),
		"WithPolicy":       streams.WithPolicy(streams.Policy{}),
	}
	consumerOnly := map[string]any{
		"WithBackoff":   streams.WithBackoff(semFastBackoff),
		"WithBuffer":    streams.WithBuffer(8),
		"WithLowestRTT": streams.WithLowestRTT(1, 0.2),
	}
	for name, opt := range producerOnly {
		if _, ok := opt.(streams.ConsumerOption); ok {
			t.Errorf("%s is a ConsumerOption", name)
		}
		if _, ok := opt.(streams.ProducerOption); !ok {
			t.Errorf("%s is not a ProducerOption", name)
		}
	}
	for name, opt := range consumerOnly {
		if _, ok := opt.(streams.ProducerOption); ok {
			t.Errorf("%s is a ProducerOption", name)
		}
		if _, ok := opt.(streams.ConsumerOption); !ok {
			t.Errorf("%s is not a ConsumerOption", name)
		}
	}
	// A codec or sink for another type is refused, and nothing is advertised.
	if p, err := streams.NewProducer[string](svc, "sides", streams.WithCodec[[]byte](streams.Bytes{})); err == nil {
		_ = p.Close()
		t.Error("NewProducer[string] accepted a []byte codec")
	}
	if p, err := streams.NewProducer[string](svc, "sides", streams.WithUndelivered(func([]byte) {})); err == nil {
		_ = p.Close()
		t.Error("NewProducer[string] accepted a []byte sink")
	}
	if c, err := streams.NewConsumer[string](svc, "sides", streams.WithCodec[[]byte](streams.Bytes{})); err == nil {
		_ = c.Close()
		t.Error("NewConsumer[string] accepted a []byte codec")
	}
	if n.Catalog().Local().Entry.Produces(catalog.IDFromString("sides")) {
		t.Error("a refused NewProducer advertised the stream")
	}
	p, err := streams.NewProducer[[]byte](svc, "sides", streams.WithCodec[[]byte](streams.Bytes{}), streams.WithUndelivered(func([]byte) {}))
	if err != nil {
		t.Fatalf("NewProducer[[]byte] with a []byte codec and sink: %v", err)
	}
	_ = p.Close()
	for name, opt := range map[string]streams.ProducerOption{
		"WithMaxConsumers(0)": streams.WithMaxConsumers(0), "WithQueueSize(0)": streams.WithQueueSize(0),
	} {
		if p, err := streams.NewProducer[string](svc, "sides", opt); err == nil {
			_ = p.Close()
			t.Errorf("NewProducer accepted %s", name)
		}
	}
	for name, opt := range map[string]streams.ConsumerOption{
		"WithBuffer(0)": streams.WithBuffer(0), "WithLowestRTT(0, 0.2)": streams.WithLowestRTT(0, 0.2),
		"WithLowestRTT(1, 1)": streams.WithLowestRTT(1, 1),
	} {
		if c, err := streams.NewConsumer[string](svc, "sides", opt); err == nil {
			_ = c.Close()
			t.Errorf("NewConsumer accepted %s", name)
		}
	}
}
