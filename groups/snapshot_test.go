package groups

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"lukechampine.com/blake3"

	"github.com/mosaik-go/mosaik/groups/pb"
)

func TestSnapshotWire_RoundTrip(t *testing.T) {
	req := snapshotChunkRequest{Anchor: snapshotAnchor{9, 2}, Offset: 1 << 40, MaxBytes: snapshotMaxChunk, Hash: blake3.Sum256([]byte("x"))}
	got, err := decodeSnapshotChunkRequest(encodeSnapshotChunkRequest(req))
	if err != nil || got != req {
		t.Fatalf("request round trip: %+v, %v", got, err)
	}
	if n := len(encodeSnapshotChunkRequest(snapshotChunkRequest{
		Anchor: snapshotAnchor{^uint64(0), ^uint64(0)}, Offset: ^uint64(0), MaxBytes: snapshotMaxChunk, Hash: req.Hash,
	})); n > snapshotRequestCap {
		t.Fatalf("largest request encodes to %d bytes, over its cap %d", n, snapshotRequestCap)
	}

	data := bytes.Repeat([]byte{7}, snapshotMaxChunk)
	chunk := snapshotChunk{Anchor: snapshotAnchor{^uint64(0), ^uint64(0)}, Offset: ^uint64(0) - snapshotMaxChunk,
		Data: data, TotalSize: ^uint64(0), Last: true}
	b := encodeSnapshotChunk(chunk)
	if len(b) > snapshotReplyCap {
		t.Fatalf("largest chunk encodes to %d bytes, over its cap %d", len(b), snapshotReplyCap)
	}
	c, err := decodeSnapshotChunkReply(b)
	if err != nil || c.Anchor != chunk.Anchor || c.Offset != chunk.Offset || !bytes.Equal(c.Data, data) || !c.Last {
		t.Fatalf("chunk round trip: %v", err)
	}

	_, err = decodeSnapshotChunkReply(encodeSnapshotRefusal(snapshotUnknownAnchor, strings.Repeat("é", 200)+"\xff"))
	var ref *snapshotRefusedError
	if !errors.As(err, &ref) || ref.Code != snapshotUnknownAnchor || len(ref.Reason) > snapshotMaxReason {
		t.Fatalf("refusal round trip: %v", err)
	}

	d := describeSnapshot(snapshotAnchor{12, 3}, "kv/v1", []byte("state"))
	db, err := encodeSnapshotDescriptor(d)
	if err != nil {
		t.Fatal(err)
	}
	d2, err := decodeSnapshotDescriptor(db)
	if err != nil || d2 != d {
		t.Fatalf("descriptor round trip: %+v, %v", d2, err)
	}
	d.Machine = strings.Repeat("m", snapshotMaxMachineTag)
	d.Anchor, d.TotalSize = snapshotAnchor{^uint64(0), ^uint64(0)}, ^uint64(0)
	if db, err := encodeSnapshotDescriptor(d); err != nil || len(db) > snapshotDescriptorCap {
		t.Fatalf("largest descriptor: %d bytes (cap %d), %v", len(db), snapshotDescriptorCap, err)
	}
	d.Machine += "m"
	if _, err := encodeSnapshotDescriptor(d); !errors.Is(err, errSnapshotDescriptor) {
		t.Fatalf("oversize tag encoded: %v", err)
	}
}

func TestSnapshotWire_Rejects(t *testing.T) {
	marshal := func(m proto.Message) []byte { b, _ := proto.Marshal(m); return b }
	anchor := &pb.SnapshotAnchor{Index: 1, Term: 1}
	reply := func(c *pb.SnapshotChunkResponse) []byte {
		return marshal(&pb.SnapshotChunkReply{Body: &pb.SnapshotChunkReply_Chunk{Chunk: c}})
	}
	for name, b := range map[string][]byte{
		"garbage":           {0xff, 0xff, 0xff},
		"oversize":          make([]byte, snapshotRequestCap+1),
		"no anchor":         marshal(&pb.SnapshotChunkRequest{MaxBytes: 1}),
		"zero max bytes":    marshal(&pb.SnapshotChunkRequest{Anchor: anchor, Hash: make([]byte, 32)}),
		"max bytes too big": marshal(&pb.SnapshotChunkRequest{Anchor: anchor, MaxBytes: snapshotMaxChunk + 1, Hash: make([]byte, 32)}),
		"no hash":           marshal(&pb.SnapshotChunkRequest{Anchor: anchor, MaxBytes: 1}),
		"short hash":        marshal(&pb.SnapshotChunkRequest{Anchor: anchor, MaxBytes: 1, Hash: make([]byte, 31)}),
	} {
		if _, err := decodeSnapshotChunkRequest(b); !errors.Is(err, errSnapshotWire) {
			t.Errorf("request %s: %v, want errSnapshotWire", name, err)
		}
	}
	for name, b := range map[string][]byte{
		"garbage":           {0x0a, 0xff},
		"oversize":          make([]byte, snapshotReplyCap+1),
		"empty":             marshal(&pb.SnapshotChunkReply{}),
		"no anchor":         reply(&pb.SnapshotChunkResponse{TotalSize: 1, Data: []byte{1}, Last: true}),
		"past the end":      reply(&pb.SnapshotChunkResponse{Anchor: anchor, Offset: 2, TotalSize: 2, Data: []byte{1}, Last: true}),
		"offset overflow":   reply(&pb.SnapshotChunkResponse{Anchor: anchor, Offset: ^uint64(0), TotalSize: 3, Data: []byte{1, 2, 3, 4}, Last: true}),
		"wrong last flag":   reply(&pb.SnapshotChunkResponse{Anchor: anchor, TotalSize: 2, Data: []byte{1}, Last: true}),
		"missing last flag": reply(&pb.SnapshotChunkResponse{Anchor: anchor, TotalSize: 1, Data: []byte{1}}),
		"chunk over cap": reply(&pb.SnapshotChunkResponse{Anchor: anchor, TotalSize: snapshotMaxChunk + 1,
			Data: make([]byte, snapshotMaxChunk+1), Last: true}),
		"refusal code 0":   marshal(&pb.SnapshotChunkReply{Body: &pb.SnapshotChunkReply_Refusal{Refusal: &pb.SnapshotRefusal{}}}),
		"refusal too long": marshal(&pb.SnapshotChunkReply{Body: &pb.SnapshotChunkReply_Refusal{Refusal: &pb.SnapshotRefusal{Code: 1, Reason: strings.Repeat("x", snapshotMaxReason+1)}}}),
	} {
		if _, err := decodeSnapshotChunkReply(b); !errors.Is(err, errSnapshotWire) {
			t.Errorf("reply %s: %v, want errSnapshotWire", name, err)
		}
	}
	hash := make([]byte, 32)
	// Field 5 (machine) as one byte that is not UTF-8.
	invalidTag := append(marshal(&pb.SnapshotDescriptor{Version: 1, Anchor: anchor, Hash: hash}), 0x2a, 0x01, 0xff)
	for name, b := range map[string][]byte{
		"garbage":     {0x12, 0x7f},
		"oversize":    make([]byte, snapshotDescriptorCap+1),
		"no version":  marshal(&pb.SnapshotDescriptor{Anchor: anchor, Hash: hash}),
		"version 2":   marshal(&pb.SnapshotDescriptor{Version: 2, Anchor: anchor, Hash: hash}),
		"no anchor":   marshal(&pb.SnapshotDescriptor{Version: 1, Hash: hash}),
		"index 0":     marshal(&pb.SnapshotDescriptor{Version: 1, Anchor: &pb.SnapshotAnchor{Term: 1}, Hash: hash}),
		"short hash":  marshal(&pb.SnapshotDescriptor{Version: 1, Anchor: anchor, Hash: hash[:31]}),
		"long tag":    marshal(&pb.SnapshotDescriptor{Version: 1, Anchor: anchor, Hash: hash, Machine: strings.Repeat("m", snapshotMaxMachineTag+1)}),
		"invalid tag": invalidTag,
	} {
		if _, err := decodeSnapshotDescriptor(b); !errors.Is(err, errSnapshotDescriptor) {
			t.Errorf("descriptor %s: %v, want errSnapshotDescriptor", name, err)
		}
	}
}

func TestSnapshotCache_Serve(t *testing.T) {
	t0 := time.UnixMilli(1_750_000_000_000)
	c := newSnapshotCache(2, 10*time.Second)
	a := snapshotAnchor{10, 2}
	data := []byte("0123456789")
	h := blake3.Sum256(data)
	c.put(a, data, t0)

	got, err := c.serve(snapshotChunkRequest{Hash: h, Anchor: a, Offset: 4, MaxBytes: 4}, t0)
	if err != nil || string(got.Data) != "4567" || got.TotalSize != 10 || got.Last || got.Offset != 4 || got.Anchor != a {
		t.Fatalf("middle chunk: %+v, %v", got, err)
	}
	got, err = c.serve(snapshotChunkRequest{Hash: h, Anchor: a, Offset: 8, MaxBytes: 4}, t0)
	if err != nil || string(got.Data) != "89" || !got.Last {
		t.Fatalf("last chunk: %+v, %v", got, err)
	}
	got, err = c.serve(snapshotChunkRequest{Hash: h, Anchor: a, Offset: 10, MaxBytes: 4}, t0)
	if err != nil || len(got.Data) != 0 || !got.Last {
		t.Fatalf("chunk at the end: %+v, %v", got, err)
	}
	wantCode := func(what string, err error, code snapshotCode) {
		t.Helper()
		var ref *snapshotRefusedError
		if !errors.As(err, &ref) || ref.Code != code {
			t.Fatalf("%s: %v, want code %v", what, err, code)
		}
	}
	_, err = c.serve(snapshotChunkRequest{Hash: h, Anchor: a, Offset: 11, MaxBytes: 4}, t0)
	wantCode("offset past the end", err, snapshotBadRequest)
	_, err = c.serve(snapshotChunkRequest{Hash: h, Anchor: a, MaxBytes: 0}, t0)
	wantCode("max bytes 0", err, snapshotBadRequest)
	_, err = c.serve(snapshotChunkRequest{Hash: h, Anchor: snapshotAnchor{10, 3}, MaxBytes: 4}, t0)
	wantCode("other term", err, snapshotUnknownAnchor)
	_, err = c.serve(snapshotChunkRequest{Hash: blake3.Sum256([]byte("other")), Anchor: a, MaxBytes: 4}, t0)
	wantCode("other bytes", err, snapshotUnknownAnchor)

	// Each fetch renews the TTL: serving every 9 s keeps the snapshot for
	// well past 10 s; 10 s without a fetch expires it.
	at := t0
	for range 5 {
		at = at.Add(9 * time.Second)
		if _, err := c.serve(snapshotChunkRequest{Hash: h, Anchor: a, MaxBytes: 1}, at); err != nil {
			t.Fatalf("serve at +%v: %v", at.Sub(t0), err)
		}
	}
	if !c.holds(a, at.Add(10*time.Second-1)) || c.holds(a, at.Add(10*time.Second)) {
		t.Fatal("TTL not measured from the last fetch")
	}
	_, err = c.serve(snapshotChunkRequest{Hash: h, Anchor: a, MaxBytes: 1}, at.Add(10*time.Second))
	wantCode("expired", err, snapshotUnknownAnchor)
}

func TestSnapshotCache_Bounded(t *testing.T) {
	t0 := time.UnixMilli(1_750_000_000_000)
	c := newSnapshotCache(2, 10*time.Second)
	c.put(snapshotAnchor{1, 1}, []byte("a"), t0)
	c.put(snapshotAnchor{2, 1}, []byte("b"), t0.Add(time.Second))
	// Serving 1 makes 2 the one closest to expiry.
	if _, err := c.serve(snapshotChunkRequest{Hash: blake3.Sum256([]byte("a")), Anchor: snapshotAnchor{1, 1}, MaxBytes: 1}, t0.Add(2*time.Second)); err != nil {
		t.Fatal(err)
	}
	c.put(snapshotAnchor{3, 1}, []byte("c"), t0.Add(3*time.Second))
	now := t0.Add(3 * time.Second)
	if got := c.anchors(now); len(got) != 2 || !c.holds(snapshotAnchor{1, 1}, now) || !c.holds(snapshotAnchor{3, 1}, now) {
		t.Fatalf("held after a third put: %v, want 1/1 and 3/1", got)
	}
	// A put of the same bytes renews them; other bytes at a held anchor
	// (a cluster that restarted its log reuses anchors) replace them.
	c.put(snapshotAnchor{3, 1}, []byte("c"), now)
	got, err := c.serve(snapshotChunkRequest{Hash: blake3.Sum256([]byte("c")), Anchor: snapshotAnchor{3, 1}, MaxBytes: 10}, now)
	if err != nil || string(got.Data) != "c" {
		t.Fatalf("after a second put: %q, %v", got.Data, err)
	}
	c.put(snapshotAnchor{3, 1}, []byte("other"), now)
	if _, err := c.serve(snapshotChunkRequest{Hash: blake3.Sum256([]byte("c")), Anchor: snapshotAnchor{3, 1}, MaxBytes: 10}, now); err == nil {
		t.Fatal("replaced bytes still served")
	}
	got, err = c.serve(snapshotChunkRequest{Hash: blake3.Sum256([]byte("other")), Anchor: snapshotAnchor{3, 1}, MaxBytes: 10}, now)
	if err != nil || string(got.Data) != "other" || len(c.anchors(now)) != 2 {
		t.Fatalf("after a put of other bytes: %q, %v, %v", got.Data, err, c.anchors(now))
	}
}

func TestSnapshotCache_ServeEncoded(t *testing.T) {
	t0 := time.UnixMilli(1_750_000_000_000)
	c := newSnapshotCache(0, 0)
	a := snapshotAnchor{5, 1}
	c.put(a, []byte("hello"), t0)
	got, err := decodeSnapshotChunkReply(c.serveEncoded(encodeSnapshotChunkRequest(snapshotChunkRequest{Hash: blake3.Sum256([]byte("hello")), Anchor: a, Offset: 1, MaxBytes: 3}), t0))
	if err != nil || string(got.Data) != "ell" {
		t.Fatalf("chunk: %+v, %v", got, err)
	}
	var ref *snapshotRefusedError
	if _, err := decodeSnapshotChunkReply(c.serveEncoded([]byte{0xff}, t0)); !errors.As(err, &ref) || ref.Code != snapshotBadRequest {
		t.Fatalf("garbage request: %v, want a bad-request refusal", err)
	}
	if _, err := decodeSnapshotChunkReply(c.serveEncoded(encodeSnapshotChunkRequest(snapshotChunkRequest{Anchor: snapshotAnchor{6, 1}, MaxBytes: 3}), t0)); !errors.As(err, &ref) || ref.Code != snapshotUnknownAnchor {
		t.Fatalf("unknown anchor: %v, want an unknown-anchor refusal", err)
	}
}

func TestSnapshotCache_HeldHash(t *testing.T) {
	now := time.UnixMilli(1_750_000_000_000)
	c := newSnapshotCache(0, 0)
	data := []byte("held bytes")
	a := snapshotAnchor{4, 1}
	c.put(a, data, now)
	if h, ok := c.heldHash(a, data); !ok || h != blake3.Sum256(data) {
		t.Fatalf("same slice: %x, %v", h, ok)
	}
	if _, ok := c.heldHash(a, append([]byte(nil), data...)); ok {
		t.Fatal("a copy must be hashed again")
	}
	if _, ok := c.heldHash(snapshotAnchor{5, 1}, data); ok {
		t.Fatal("another anchor")
	}
}
