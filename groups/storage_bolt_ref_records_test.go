package groups

import (
	"encoding/binary"
	"fmt"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// The records of the bolt store (the layout is in storage_bolt_ref_test.go). Every
// decoder here reads bytes from disk that a crash, a bug or an editor may
// have mangled: it returns errStoreCorrupt, never panics, and checks what
// the record claims against where it was found.

// boltFormatVersion is the format version this build writes and reads.
const boltFormatVersion uint64 = 1

func u64Key(i uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], i)
	return b[:]
}

func decodeU64Key(k []byte) (uint64, error) {
	if len(k) != 8 {
		return 0, fmt.Errorf("%w: key of %d bytes", errStoreCorrupt, len(k))
	}
	return binary.BigEndian.Uint64(k), nil
}

// encodeEntryRecord stores an entry as its term (8 bytes, so Term reads no
// protobuf) followed by the entry's protobuf encoding.
func encodeEntryRecord(e *raftpb.Entry) ([]byte, error) {
	body, err := proto.Marshal(e)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 8, 8+len(body))
	binary.BigEndian.PutUint64(out, e.GetTerm())
	return append(out, body...), nil
}

// entryRecordTerm reads the term of an entry record without decoding it.
func entryRecordTerm(v []byte) (uint64, error) {
	if len(v) < 8 {
		return 0, fmt.Errorf("%w: entry record of %d bytes", errStoreCorrupt, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

// entryRecordSize is the protobuf size of the entry in a record, the size
// raft's maxSize counts.
func entryRecordSize(v []byte) uint64 { return uint64(len(v) - 8) }

// decodeEntryRecord decodes the record stored under index and checks that
// it holds the entry of that index, with the term of its prefix.
func decodeEntryRecord(index uint64, v []byte) (*raftpb.Entry, error) {
	term, err := entryRecordTerm(v)
	if err != nil {
		return nil, err
	}
	e := new(raftpb.Entry)
	if err := proto.Unmarshal(v[8:], e); err != nil {
		return nil, fmt.Errorf("%w: entry %d: %v", errStoreCorrupt, index, err)
	}
	if e.GetIndex() != index || e.GetTerm() != term {
		return nil, fmt.Errorf("%w: entry under %d claims index %d term %d (prefix %d)",
			errStoreCorrupt, index, e.GetIndex(), e.GetTerm(), term)
	}
	return e, nil
}

func decodeLogStart(v []byte) (logStart, error) {
	if len(v) != 16 {
		return logStart{}, fmt.Errorf("%w: log start of %d bytes", errStoreCorrupt, len(v))
	}
	return logStart{index: binary.BigEndian.Uint64(v[:8]), term: binary.BigEndian.Uint64(v[8:])}, nil
}

func decodeFormatVersion(v []byte) (uint64, error) {
	if len(v) != 8 {
		return 0, fmt.Errorf("%w: version of %d bytes", errStoreCorrupt, len(v))
	}
	ver := binary.BigEndian.Uint64(v)
	if ver == 0 {
		return 0, fmt.Errorf("%w: version 0", errStoreCorrupt)
	}
	if ver > boltFormatVersion {
		return ver, fmt.Errorf("%w: file has version %d, this build reads up to %d", errStoreVersion, ver, boltFormatVersion)
	}
	return ver, nil
}

func decodeHardState(v []byte) (*raftpb.HardState, error) {
	if len(v) > maxStoredMetaSize {
		return nil, fmt.Errorf("%w: hard state of %d bytes", errStoreCorrupt, len(v))
	}
	hs := new(raftpb.HardState)
	if err := proto.Unmarshal(v, hs); err != nil {
		return nil, fmt.Errorf("%w: hard state: %v", errStoreCorrupt, err)
	}
	return hs, nil
}

func decodeSnapshotMeta(v []byte) (*raftpb.SnapshotMetadata, error) {
	if len(v) > maxStoredMetaSize {
		return nil, fmt.Errorf("%w: snapshot metadata of %d bytes", errStoreCorrupt, len(v))
	}
	m := new(raftpb.SnapshotMetadata)
	if err := proto.Unmarshal(v, m); err != nil {
		return nil, fmt.Errorf("%w: snapshot metadata: %v", errStoreCorrupt, err)
	}
	return m, nil
}
