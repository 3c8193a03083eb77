package groups

import (
	"errors"
	"strings"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

func walSeedBatches() []walBatch {
	meta := &raftpb.SnapshotMetadata{Index: new(uint64(9)), Term: new(uint64(2)), ConfState: confState(1, 2)}
	return []walBatch{
		{},
		{hs: hardState(3, 2, 1)},
		{hs: hardState(3, 2, 1), ents: run(1, 3, 3)},
		{snapMeta: meta, snapData: []byte("state"), ents: run(10, 11, 2)},
		{start: &logStart{index: 4, term: 1}},
		{hs: hardState(1, 1, 1), snapMeta: meta, start: &logStart{index: 9, term: 2}, ents: run(10, 10, 2)},
	}
}

// FuzzWALBatch feeds arbitrary bytes to the record payload decoder: it
// returns a batch or errStoreCorrupt, never panics, and what decodes
// encodes to a payload that decodes the same.
func FuzzWALBatch(f *testing.F) {
	for _, b := range walSeedBatches() {
		rec, err := appendWalRecord(nil, recSave, b)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(rec[walRecHeader:])
	}
	f.Add([]byte{0xff})
	f.Add([]byte{0, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, p []byte) {
		b, err := decodeWalBatch(p)
		if err != nil {
			if !errors.Is(err, errStoreCorrupt) {
				t.Fatalf("error %v is not errStoreCorrupt", err)
			}
			return
		}
		rec, err := appendWalRecord(nil, recSave, b)
		if err != nil {
			t.Fatal(err)
		}
		b2, err := decodeWalBatch(rec[walRecHeader:])
		if err != nil || !sameBatch(b, b2) {
			t.Fatalf("round trip: %+v, %v", b2, err)
		}
	})
}

func sameBatch(a, b walBatch) bool {
	return proto.Equal(a.hs, b.hs) && proto.Equal(a.snapMeta, b.snapMeta) &&
		string(a.snapData) == string(b.snapData) &&
		(a.start == nil) == (b.start == nil) && (a.start == nil || *a.start == *b.start) &&
		sameEntries(a.ents, b.ents)
}

// FuzzWALFile feeds arbitrary bytes to the file decoders: the header check
// and the record scanner, whose records each decode or fail with
// errStoreCorrupt. The scanner never reads past its input and its end is
// on a record boundary.
func FuzzWALFile(f *testing.F) {
	var file []byte
	for k, b := range walSeedBatches() {
		var err error
		if file, err = appendWalRecord(file, byte(k%4+1), b); err != nil {
			f.Fatal(err)
		}
	}
	f.Add(append(encodeWalHeader(), file...))
	f.Add(append(encodeWalHeader(), file[:len(file)-3]...))
	f.Add(append(encodeWalHeader(), make([]byte, 20)...))
	f.Add([]byte("MOSAIKWL"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if err := decodeWalHeader(b); err != nil {
			if !errors.Is(err, errStoreCorrupt) && !errors.Is(err, errStoreVersion) {
				t.Fatalf("header: unexpected error %v", err)
			}
		}
		if len(b) < walHeaderSize {
			return
		}
		recs, end := scanWalRecords(b[walHeaderSize:])
		if end < 0 || end > len(b)-walHeaderSize {
			t.Fatalf("end %d outside %d bytes", end, len(b)-walHeaderSize)
		}
		tail := b[walHeaderSize+end:]
		if at, why := walTail(tail, 1<<20); at >= 0 && strings.HasPrefix(why, "a whole record") {
			if rs, _ := scanWalRecords(tail[at:]); len(rs) == 0 {
				t.Fatalf("record found past the end at %d does not scan", at)
			}
		} else if at >= len(tail) {
			t.Fatalf("damage at %d past a tail of %d bytes", at, len(tail))
		}
		again, end2 := scanWalRecords(b[walHeaderSize : walHeaderSize+end])
		if len(again) != len(recs) || end2 != end {
			t.Fatalf("rescan up to the end: %d records to %d, first scan %d to %d", len(again), end2, len(recs), end)
		}
		for _, r := range recs {
			if _, err := decodeWalBatch(r.payload); err != nil && !errors.Is(err, errStoreCorrupt) {
				t.Fatalf("record: unexpected error %v", err)
			}
		}
	})
}
