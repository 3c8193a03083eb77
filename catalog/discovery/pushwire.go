package discovery

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/catalog"
)

// Bump push 1.0.0 (PROTOCOL.md section 10.9). A heartbeat changes only an
// entry's version and signature, yet on gossip it costs a message in and
// one out per mesh peer at every node, whatever it holds; most of a
// heartbeat's CPU went to those messages (BENCHMARKS.md, session 12). A
// node instead batches the heartbeats it accepted into one frame per push
// peer every Params.BumpInterval: a frame is a sequence of fixed-layout
// records, each naming the peer, the content hash of the entry it bumps
// (so that a receiver holding other content pulls the entry instead of
// failing its signature), the new version and the signature.

// MaxBumpFrame caps a bump frame's bytes (the rest waits for the next
// frame). At about 130 bytes a record it holds about 500 bumps.
const MaxBumpFrame = 64 << 10

// maxBumpPeerID caps the peer ID of a record: an ed25519 peer ID (an
// identity multihash of the protobuf key) has 38 bytes.
const maxBumpPeerID = 64

// bumpRecordFixed is a record's size beyond its peer ID: the ID's length
// (1), the content hash (8), start_ms and update_ms (8 each) and the
// signature.
const bumpRecordFixed = 1 + 8 + 8 + 8 + catalog.BumpSignatureLen

// errBadFrame marks a bump frame that does not decode.
var errBadFrame = errors.New("discovery: malformed bump frame")

// pushedBump is one record of a bump frame: peer id signed version v of
// the content whose hash is hash, with signature sig (aliasing the frame).
type pushedBump struct {
	id   peer.ID
	hash uint64
	v    catalog.Version
	sig  []byte
}

// AppendBumpRecord appends the bump record of se (its peer, content hash,
// version and signature) to dst. It reports false, appending nothing,
// when se is not in canonical form (no bump applies to it: it travels
// whole on gossip).
func AppendBumpRecord(dst []byte, se *catalog.SignedEntry) ([]byte, bool) {
	hash, ok := se.ContentHash()
	if !ok {
		return dst, false
	}
	sig, ok := se.Signature()
	id := []byte(se.Entry.PeerID)
	if !ok || len(id) == 0 || len(id) > maxBumpPeerID {
		return dst, false
	}
	dst = append(dst, byte(len(id)))
	dst = append(dst, id...)
	dst = binary.BigEndian.AppendUint64(dst, hash)
	dst = binary.BigEndian.AppendUint64(dst, uint64(se.Entry.Version.StartMS))
	dst = binary.BigEndian.AppendUint64(dst, uint64(se.Entry.Version.UpdateMS))
	return append(dst, sig...), true
}

// decodeBumpFrame splits a frame of at most MaxBumpFrame bytes into its
// records. Every record must be whole, name a valid peer ID of at most
// maxBumpPeerID bytes and a valid version (start_ms > 0, update_ms ≥
// start_ms). The signatures alias frame. It never panics on hostile
// input.
func decodeBumpFrame(frame []byte) ([]pushedBump, error) {
	if len(frame) > MaxBumpFrame {
		return nil, fmt.Errorf("%w: %d bytes > %d", errBadFrame, len(frame), MaxBumpFrame)
	}
	out := make([]pushedBump, 0, len(frame)/(bumpRecordFixed+38))
	for b := frame; len(b) > 0; {
		n := int(b[0])
		if n == 0 || n > maxBumpPeerID || len(b) < bumpRecordFixed+n {
			return nil, fmt.Errorf("%w: record %d: truncated or bad ID length %d", errBadFrame, len(out), n)
		}
		id, err := peer.IDFromBytes(b[1 : 1+n])
		if err != nil {
			return nil, fmt.Errorf("%w: record %d: %v", errBadFrame, len(out), err)
		}
		r := b[1+n:]
		pb := pushedBump{id: id, hash: binary.BigEndian.Uint64(r), v: catalog.Version{
			StartMS: int64(binary.BigEndian.Uint64(r[8:])), UpdateMS: int64(binary.BigEndian.Uint64(r[16:]))},
			sig: r[24 : 24+catalog.BumpSignatureLen : 24+catalog.BumpSignatureLen]}
		if pb.v.StartMS <= 0 || pb.v.UpdateMS < pb.v.StartMS {
			return nil, fmt.Errorf("%w: record %d: version %v", errBadFrame, len(out), pb.v)
		}
		out = append(out, pb)
		b = b[bumpRecordFixed+n:]
	}
	return out, nil
}
