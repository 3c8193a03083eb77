package groups

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"
	"lukechampine.com/blake3"

	"github.com/mosaik-go/mosaik/groups/pb"
)

// A snapshot descriptor is what raft's Snapshot.Data holds on the wire in
// place of the state machine's bytes, which can be far larger than a raft
// message should be. The follower that receives a MsgSnap with a
// descriptor fetches the bytes in chunks from the holders of that anchor,
// checks them against the hash, and only then steps the MsgSnap (with the
// real bytes) into raft.

const (
	snapshotDescriptorVersion = 1
	// snapshotDescriptorCap caps an encoded descriptor: an anchor, a size,
	// a 32-byte hash and a tag of at most snapshotMaxMachineTag bytes.
	snapshotDescriptorCap = 512
	// snapshotMaxMachineTag caps the state machine's type tag.
	snapshotMaxMachineTag = 256
)

// errSnapshotDescriptor is wrapped by every descriptor decoding error.
var errSnapshotDescriptor = errors.New("groups: malformed snapshot descriptor")

// snapshotDescriptor names a snapshot and what its bytes must be.
type snapshotDescriptor struct {
	Anchor    snapshotAnchor
	TotalSize uint64
	// Hash is blake3-256 of the whole snapshot.
	Hash [32]byte
	// Machine is the state machine's type tag; a follower refuses a
	// snapshot of another machine.
	Machine string
}

// describeSnapshot hashes data into a descriptor at anchor a.
func describeSnapshot(a snapshotAnchor, machine string, data []byte) snapshotDescriptor {
	return snapshotDescriptor{Anchor: a, TotalSize: uint64(len(data)), Hash: blake3.Sum256(data), Machine: machine}
}

func encodeSnapshotDescriptor(d snapshotDescriptor) ([]byte, error) {
	if len(d.Machine) > snapshotMaxMachineTag {
		return nil, fmt.Errorf("%w: machine tag of %d bytes (cap %d)", errSnapshotDescriptor, len(d.Machine), snapshotMaxMachineTag)
	}
	return proto.Marshal(&pb.SnapshotDescriptor{
		Version:   snapshotDescriptorVersion,
		Anchor:    d.Anchor.toPB(),
		TotalSize: d.TotalSize,
		Hash:      d.Hash[:],
		Machine:   d.Machine,
	})
}

func decodeSnapshotDescriptor(b []byte) (snapshotDescriptor, error) {
	if len(b) > snapshotDescriptorCap {
		return snapshotDescriptor{}, fmt.Errorf("%w: %d bytes (cap %d)", errSnapshotDescriptor, len(b), snapshotDescriptorCap)
	}
	var m pb.SnapshotDescriptor
	if err := proto.Unmarshal(b, &m); err != nil {
		return snapshotDescriptor{}, fmt.Errorf("%w: %v", errSnapshotDescriptor, err)
	}
	switch {
	case m.Version != snapshotDescriptorVersion:
		return snapshotDescriptor{}, fmt.Errorf("%w: version %d", errSnapshotDescriptor, m.Version)
	case m.Anchor == nil || m.Anchor.Index == 0:
		return snapshotDescriptor{}, fmt.Errorf("%w: no anchor", errSnapshotDescriptor)
	case len(m.Hash) != 32:
		return snapshotDescriptor{}, fmt.Errorf("%w: hash of %d bytes", errSnapshotDescriptor, len(m.Hash))
	case len(m.Machine) > snapshotMaxMachineTag:
		return snapshotDescriptor{}, fmt.Errorf("%w: machine tag of %d bytes", errSnapshotDescriptor, len(m.Machine))
	}
	d := snapshotDescriptor{Anchor: anchorFromPB(m.Anchor), TotalSize: m.TotalSize, Machine: m.Machine}
	copy(d.Hash[:], m.Hash)
	return d, nil
}
