package groups

import (
	"errors"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// FuzzBoltEntryRecord feeds arbitrary bytes to the entry record decoder:
// it returns an entry that matches its key, or errStoreCorrupt.
func FuzzBoltEntryRecord(f *testing.F) {
	rec, _ := encodeEntryRecord(ent(7, 3, "payload"))
	f.Add(uint64(7), rec)
	f.Add(uint64(8), rec)
	f.Add(uint64(0), []byte{})
	f.Add(uint64(1), []byte{0, 0, 0, 0, 0, 0, 0, 1, 0x18, 0x01})
	f.Fuzz(func(t *testing.T, index uint64, v []byte) {
		e, err := decodeEntryRecord(index, v)
		if err != nil {
			if !errors.Is(err, errStoreCorrupt) {
				t.Fatalf("error %v is not errStoreCorrupt", err)
			}
			return
		}
		if e.GetIndex() != index {
			t.Fatalf("decoded index %d under key %d", e.GetIndex(), index)
		}
		if term, _ := entryRecordTerm(v); term != e.GetTerm() {
			t.Fatalf("prefix term %d, entry term %d", term, e.GetTerm())
		}
		// What decodes re-encodes to a record that decodes the same.
		again, err := encodeEntryRecord(e)
		if err != nil {
			t.Fatal(err)
		}
		e2, err := decodeEntryRecord(index, again)
		if err != nil || !proto.Equal(e, e2) {
			t.Fatalf("round trip: %v, %v", e2, err)
		}
	})
}

// FuzzBoltMetaRecords feeds arbitrary bytes to every decoder of the meta
// bucket's records: each returns a value or errStoreCorrupt (or, for the
// version, errStoreVersion), never panics.
func FuzzBoltMetaRecords(f *testing.F) {
	hs, _ := proto.Marshal(hardState(3, 2, 1))
	sm, _ := proto.Marshal(&raftpb.SnapshotMetadata{Index: new(uint64(9)), Term: new(uint64(2)), ConfState: confState(1, 2)})
	for _, seed := range [][]byte{hs, sm, logStart{9, 2}.encode(), u64Key(1), u64Key(2), {}, {0xff}} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, v []byte) {
		check := func(what string, err error, also ...error) {
			if err == nil || errors.Is(err, errStoreCorrupt) {
				return
			}
			for _, e := range also {
				if errors.Is(err, e) {
					return
				}
			}
			t.Fatalf("%s: unexpected error %v", what, err)
		}
		_, err := decodeHardState(v)
		check("hard state", err)
		_, err = decodeSnapshotMeta(v)
		check("snapshot meta", err)
		s, err := decodeLogStart(v)
		check("log start", err)
		if err == nil && string(s.encode()) != string(v) {
			t.Fatalf("log start round trip: %x → %x", v, s.encode())
		}
		ver, err := decodeFormatVersion(v)
		check("version", err, errStoreVersion)
		if err == nil && (ver == 0 || ver > boltFormatVersion) {
			t.Fatalf("version %d accepted", ver)
		}
		_, err = decodeU64Key(v)
		check("key", err)
	})
}
