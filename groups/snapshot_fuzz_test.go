package groups

import (
	"bytes"
	"errors"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/mosaik-go/mosaik/groups/pb"
)

// FuzzSnapshotChunkRequest: a request decodes within its ranges, and
// re-encodes to one that decodes the same; anything else is errSnapshotWire.
func FuzzSnapshotChunkRequest(f *testing.F) {
	f.Add(encodeSnapshotChunkRequest(snapshotChunkRequest{Anchor: snapshotAnchor{9, 2}, Offset: 4096, MaxBytes: 4096, Hash: [32]byte{1, 2, 3}}))
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0x00, 0x18, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeSnapshotChunkRequest(b)
		if err != nil {
			if !errors.Is(err, errSnapshotWire) {
				t.Fatalf("error %v is not errSnapshotWire", err)
			}
			return
		}
		if r.MaxBytes == 0 || r.MaxBytes > snapshotMaxChunk {
			t.Fatalf("accepted max_bytes %d", r.MaxBytes)
		}
		if r2, err := decodeSnapshotChunkRequest(encodeSnapshotChunkRequest(r)); err != nil || r2 != r {
			t.Fatalf("round trip: %+v, %v", r2, err)
		}
	})
}

// FuzzSnapshotChunkReply: a reply decodes to a self-consistent chunk or a
// refusal within its caps; anything else is errSnapshotWire.
func FuzzSnapshotChunkReply(f *testing.F) {
	f.Add(encodeSnapshotChunk(snapshotChunk{Anchor: snapshotAnchor{9, 2}, Offset: 2, Data: []byte("abc"), TotalSize: 5, Last: true}))
	f.Add(encodeSnapshotRefusal(snapshotUnknownAnchor, "gone"))
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0x02, 0x0a, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := decodeSnapshotChunkReply(b)
		var ref *snapshotRefusedError
		switch {
		case errors.As(err, &ref):
			if ref.Code == 0 || len(ref.Reason) > snapshotMaxReason {
				t.Fatalf("accepted refusal %+v", ref)
			}
			return
		case err != nil:
			if !errors.Is(err, errSnapshotWire) {
				t.Fatalf("error %v is not errSnapshotWire", err)
			}
			return
		}
		n := uint64(len(c.Data))
		if n > snapshotMaxChunk || c.Offset > c.TotalSize || n > c.TotalSize-c.Offset || c.Last != (c.Offset+n == c.TotalSize) {
			t.Fatalf("accepted inconsistent chunk: %d bytes at %d of %d, last %v", n, c.Offset, c.TotalSize, c.Last)
		}
		c2, err := decodeSnapshotChunkReply(encodeSnapshotChunk(c))
		if err != nil || c2.Anchor != c.Anchor || c2.Offset != c.Offset || !bytes.Equal(c2.Data, c.Data) || c2.TotalSize != c.TotalSize {
			t.Fatalf("round trip: %+v, %v", c2, err)
		}
	})
}

// FuzzSnapshotDescriptor: a descriptor decodes within its caps and
// re-encodes to the same descriptor; anything else is errSnapshotDescriptor.
func FuzzSnapshotDescriptor(f *testing.F) {
	seed, _ := encodeSnapshotDescriptor(describeSnapshot(snapshotAnchor{12, 3}, "kv/v1", []byte("state")))
	f.Add(seed)
	f.Add([]byte{})
	f.Add([]byte{0x08, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := decodeSnapshotDescriptor(b)
		if err != nil {
			if !errors.Is(err, errSnapshotDescriptor) {
				t.Fatalf("error %v is not errSnapshotDescriptor", err)
			}
			return
		}
		if d.Anchor.Index == 0 || len(d.Machine) > snapshotMaxMachineTag {
			t.Fatalf("accepted %+v", d)
		}
		enc, err := encodeSnapshotDescriptor(d)
		if err != nil {
			t.Fatal(err)
		}
		if d2, err := decodeSnapshotDescriptor(enc); err != nil || d2 != d {
			t.Fatalf("round trip: %+v, %v", d2, err)
		}
	})
}

// FuzzSnapshotData: the hand-written CoreSnapshot decoder (which aliases
// the state) accepts what proto.Unmarshal accepts and decodes it alike.
func FuzzSnapshotData(f *testing.F) {
	f.Add(frameSnapshotData(7, append(make([]byte, snapshotHeadRoom), "state"...), snapshotHeadRoom))
	f.Add([]byte{})
	f.Add([]byte{0x08, 0x01, 0x12, 0x01, 'x', 0x10, 0x05, 0x12, 0x00})
	f.Add([]byte{0x0a, 0x01, 'x', 0x13, 0x14})
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := decodeSnapshotData(b)
		var want pb.CoreSnapshot
		werr := proto.Unmarshal(b, &want)
		if (err == nil) != (werr == nil) {
			t.Fatalf("error %v, proto.Unmarshal's %v", err, werr)
		}
		if err == nil && (got.GetEpoch() != want.GetEpoch() || !bytes.Equal(got.GetState(), want.GetState())) {
			t.Fatalf("decoded %d/%x, proto.Unmarshal %d/%x", got.GetEpoch(), got.GetState(), want.GetEpoch(), want.GetState())
		}
	})
}

// FuzzSnapshotChunkReplySimple: what the fast path of the reply decoder
// takes, proto.Unmarshal decodes to the same chunk.
func FuzzSnapshotChunkReplySimple(f *testing.F) {
	f.Add(encodeSnapshotChunk(snapshotChunk{Anchor: snapshotAnchor{9, 2}, Offset: 2, Data: []byte("abc"), TotalSize: 5, Last: true}))
	f.Add(encodeSnapshotChunk(snapshotChunk{Anchor: snapshotAnchor{0, 0}, Offset: 0, TotalSize: 0, Last: true}))
	f.Add(encodeSnapshotRefusal(snapshotUnknownAnchor, "no"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, ok := parseSimpleChunkReply(b)
		if !ok {
			return
		}
		var m pb.SnapshotChunkReply
		if err := proto.Unmarshal(b, &m); err != nil {
			t.Fatalf("fast path took what proto.Unmarshal refuses: %v", err)
		}
		pc := m.GetChunk()
		if pc == nil || pc.GetAnchor() == nil {
			t.Fatalf("fast path took a reply without a chunk or an anchor: %v", &m)
		}
		want := snapshotChunk{Anchor: anchorFromPB(pc.GetAnchor()), Offset: pc.GetOffset(), Data: pc.GetData(), TotalSize: pc.GetTotalSize(), Last: pc.GetLast()}
		if c.Anchor != want.Anchor || c.Offset != want.Offset || !bytes.Equal(c.Data, want.Data) || c.TotalSize != want.TotalSize || c.Last != want.Last {
			t.Fatalf("fast path %+v, proto.Unmarshal %+v", c, want)
		}
	})
}
