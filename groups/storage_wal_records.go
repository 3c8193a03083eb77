package groups

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// The records of a WAL store (the layout is in storage_wal.go). Every
// decoder here reads bytes a crash, a bug or an editor may have mangled:
// it returns errStoreCorrupt (or, for the scanner, stops at a torn tail),
// never panics, and allocates no more than the bytes it was given.

// walFormatVersion is the WAL format version this build writes and reads.
// Version 1 was the bbolt file (<id>.db), which this build refuses.
const walFormatVersion uint64 = 2

const (
	walMagic      = "MOSAIKWL"
	walHeaderSize = 16 // magic ‖ version (uint64 BE)
	walRecHeader  = 9  // len (uint32 BE) ‖ crc32c (uint32 BE) ‖ type
	// walMaxRecord caps one record's payload: a snapshot's data travels in
	// one record, so the cap is that of a snapshot, not of an entry.
	walMaxRecord = math.MaxInt32
)

// Record types. A record's payload is a walBatch; the type says how it
// applies to the log.
const (
	// recSave is one Save: hard state, snapshot (which replaces the log)
	// and entries (which overwrite any conflicting suffix).
	recSave byte = 1
	// recSnap is CreateSnapshot: a snapshot that leaves the log as it is
	// (and a hard state whose write was put off).
	recSnap byte = 2
	// recCompact is Compact: the new log start (and a hard state).
	recCompact byte = 3
	// recBase opens a rewritten file: the whole state of the store.
	recBase byte = 4
)

// Flags of a walBatch, in the payload's first byte.
const (
	batchHS    = 1 << 0
	batchSnap  = 1 << 1
	batchStart = 1 << 2
	batchAll   = batchHS | batchSnap | batchStart
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// walBatch is the payload of every record:
//
//	flags u8
//	[hard state: len u32 ‖ raftpb.HardState]              if flags&1
//	[snapshot: len u32 ‖ raftpb.SnapshotMetadata ‖
//	           len u64 ‖ data]                            if flags&2
//	[log start: index u64 ‖ term u64]                     if flags&4
//	count u32, then count × (len u32 ‖ raftpb.Entry)
type walBatch struct {
	hs       *raftpb.HardState
	snapMeta *raftpb.SnapshotMetadata
	snapData []byte
	start    *logStart
	ents     []*raftpb.Entry
}

// appendWalRecord appends one record of type typ holding b to buf.
func appendWalRecord(buf []byte, typ byte, b walBatch) ([]byte, error) {
	at := len(buf)
	buf = append(buf, make([]byte, walRecHeader)...)
	buf[at+8] = typ
	var flags byte
	if b.hs != nil {
		flags |= batchHS
	}
	if b.snapMeta != nil {
		flags |= batchSnap
	}
	if b.start != nil {
		flags |= batchStart
	}
	buf = append(buf, flags)
	var err error
	if b.hs != nil {
		if buf, err = appendProto(buf, b.hs); err != nil {
			return nil, err
		}
	}
	if b.snapMeta != nil {
		if buf, err = appendProto(buf, b.snapMeta); err != nil {
			return nil, err
		}
		buf = binary.BigEndian.AppendUint64(buf, uint64(len(b.snapData)))
		buf = append(buf, b.snapData...)
	}
	if b.start != nil {
		buf = append(buf, b.start.encode()...)
	}
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(b.ents)))
	for _, e := range b.ents {
		if buf, err = appendProto(buf, e); err != nil {
			return nil, err
		}
	}
	n := len(buf) - at - walRecHeader
	if n > walMaxRecord {
		return nil, fmt.Errorf("groups: log store record of %d bytes over the cap of %d", n, walMaxRecord)
	}
	binary.BigEndian.PutUint32(buf[at:], uint32(n))
	binary.BigEndian.PutUint32(buf[at+4:], crc32.Checksum(buf[at+8:], castagnoli))
	return buf, nil
}

func appendProto(buf []byte, m proto.Message) ([]byte, error) {
	at := len(buf)
	buf = append(buf, 0, 0, 0, 0)
	buf, err := proto.MarshalOptions{}.MarshalAppend(buf, m)
	if err != nil {
		return nil, err
	}
	binary.BigEndian.PutUint32(buf[at:], uint32(len(buf)-at-4))
	return buf, nil
}

// walRecord is one record found by scanWalRecords.
type walRecord struct {
	typ     byte
	payload []byte
}

// scanWalRecords reads the records of buf (the file after its header) up
// to the end of the log: zeroes (the preallocated space), or a record that
// is short or fails its checksum (a torn write: the process or machine
// died mid-write, and that Save was never acknowledged). It returns the
// records and the offset just past the last whole one. Payloads alias buf.
func scanWalRecords(buf []byte) ([]walRecord, int) {
	var out []walRecord
	off := 0
	for len(buf)-off >= walRecHeader {
		h := buf[off : off+walRecHeader]
		n := int64(binary.BigEndian.Uint32(h))
		if h[8] == 0 || n > walMaxRecord || n > int64(len(buf)-off-walRecHeader) {
			break
		}
		body := buf[off+8 : off+walRecHeader+int(n)]
		if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(h[4:]) {
			break
		}
		out = append(out, walRecord{typ: h[8], payload: body[1:]})
		off += walRecHeader + int(n)
	}
	return out, off
}

// decodeWalBatch decodes a record's payload. The checksum has passed, so a
// payload that does not decode is damage (or a bug), not a torn write.
func decodeWalBatch(p []byte) (walBatch, error) {
	var b walBatch
	d := walDecoder{p: p}
	flags := d.u8()
	if flags&^batchAll != 0 {
		return b, fmt.Errorf("%w: record flags %#x", errStoreCorrupt, flags)
	}
	if flags&batchHS != 0 {
		b.hs = new(raftpb.HardState)
		d.proto(b.hs, maxStoredMetaSize)
	}
	if flags&batchSnap != 0 {
		b.snapMeta = new(raftpb.SnapshotMetadata)
		d.proto(b.snapMeta, maxStoredMetaSize)
		if n := d.u64(); d.err == nil {
			if n > uint64(len(d.p)) {
				d.fail("snapshot data of %d bytes in %d", n, len(d.p))
			} else if n > 0 {
				b.snapData = append([]byte(nil), d.p[:n]...)
				d.p = d.p[n:]
			}
		}
	}
	if flags&batchStart != 0 {
		b.start = &logStart{index: d.u64(), term: d.u64()}
	}
	count := d.u32()
	if d.err == nil && uint64(count) > uint64(len(d.p))/4 {
		d.fail("%d entries in %d bytes", count, len(d.p))
	}
	if d.err == nil && count > 0 {
		b.ents = make([]*raftpb.Entry, 0, count)
	}
	for k := uint32(0); d.err == nil && k < count; k++ {
		e := new(raftpb.Entry)
		d.proto(e, len(d.p))
		if d.err == nil && k > 0 && e.GetIndex() != b.ents[k-1].GetIndex()+1 {
			d.fail("entry %d after %d", e.GetIndex(), b.ents[k-1].GetIndex())
		}
		b.ents = append(b.ents, e)
	}
	if d.err == nil && len(d.p) != 0 {
		d.fail("%d bytes after the batch", len(d.p))
	}
	if d.err != nil {
		return walBatch{}, d.err
	}
	return b, nil
}

// walDecoder reads big-endian fields, recording the first error.
type walDecoder struct {
	p   []byte
	err error
}

func (d *walDecoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: record: "+format, append([]any{errStoreCorrupt}, args...)...)
	}
}

func (d *walDecoder) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if len(d.p) < n {
		d.fail("%d bytes left, %d wanted", len(d.p), n)
		return nil
	}
	b := d.p[:n]
	d.p = d.p[n:]
	return b
}

func (d *walDecoder) u8() byte {
	if b := d.take(1); b != nil {
		return b[0]
	}
	return 0
}

func (d *walDecoder) u32() uint32 {
	if b := d.take(4); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

func (d *walDecoder) u64() uint64 {
	if b := d.take(8); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

func (d *walDecoder) proto(m proto.Message, limit int) {
	n := d.u32()
	if d.err != nil {
		return
	}
	if uint64(n) > uint64(limit) {
		d.fail("message of %d bytes over %d", n, limit)
		return
	}
	b := d.take(int(n))
	if d.err != nil {
		return
	}
	if err := proto.Unmarshal(b, m); err != nil {
		d.fail("%v", err)
	}
}

// decodeWalHeader checks a file's header: magic and format version.
func decodeWalHeader(b []byte) error {
	if len(b) < walHeaderSize || string(b[:8]) != walMagic {
		return fmt.Errorf("%w: not a WAL file (no header)", errStoreCorrupt)
	}
	ver, err := decodeFormatVersionUpTo(b[8:walHeaderSize], walFormatVersion)
	if err == nil && ver != walFormatVersion {
		// Version 1 was a bbolt file, never a WAL.
		return fmt.Errorf("%w: WAL of version %d", errStoreCorrupt, ver)
	}
	return err
}

func encodeWalHeader() []byte {
	b := make([]byte, walHeaderSize)
	copy(b, walMagic)
	binary.BigEndian.PutUint64(b[8:], walFormatVersion)
	return b
}

// decodeFormatVersionUpTo reads a version number that must be in
// [1, newest].
func decodeFormatVersionUpTo(v []byte, newest uint64) (uint64, error) {
	if len(v) != 8 {
		return 0, fmt.Errorf("%w: version of %d bytes", errStoreCorrupt, len(v))
	}
	ver := binary.BigEndian.Uint64(v)
	if ver == 0 {
		return 0, fmt.Errorf("%w: version 0", errStoreCorrupt)
	}
	if ver > newest {
		return ver, fmt.Errorf("%w: file has version %d, this build reads up to %d", errStoreVersion, ver, newest)
	}
	return ver, nil
}
