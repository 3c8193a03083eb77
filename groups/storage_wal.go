package groups

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/internal/flock"
)

// The durable log store of a data dir: an append-only write-ahead log, so
// that a Save costs one write and one fdatasync (a bbolt transaction costs
// two: data pages, then the meta page). Layout (WithDataDir(dir)):
//
//	<dir>/groups/                       created 0700
//	<dir>/groups/<group id hex>/        one directory per group, 0700
//	  lock                              flock held while a store is open
//	  wal                               the log, 0600
//	  wal.tmp                           a rewrite in progress (removed at open)
//
// The wal file is a 16-byte header (magic "MOSAIKWL" ‖ format version,
// uint64 BE) and then records, each
//
//	len u32 BE ‖ crc32c(type ‖ payload) u32 BE ‖ type u8 ‖ payload
//
// where len counts the payload (at most walMaxRecord) and the payload
// is a walBatch (storage_wal_records.go). The file grows in zero-filled
// steps of walPrealloc, written and synced before use, so that a Save
// overwrites allocated blocks and its fdatasync need not commit a change of
// the file's size or extents (on ext4 that journal commit is most of an
// append's cost). The log ends at the first header of zeroes, short record
// or bad checksum: a torn write of a Save that was never acknowledged. Open
// zeroes whatever follows that end before the store writes again, so bytes
// of a torn record can never be read as a record later. Writes are one at
// a time, each synced before the next begins, so no acknowledged record
// can follow a torn one. Open judges what follows the end (walTail): a
// whole record (its checksum good) right after the broken record's
// extent, or one that runs up to the last non-zero byte of the file (the
// last record written, when records follow a break), is damage inside the
// log, as are non-zero bytes past a broken record whose length is
// readable; open then fails with errStoreCorrupt rather than drop Saves
// that were acknowledged. Anything else is the torn write's bytes, also
// when the page of a large record's header was lost and later pages
// landed (a machine crash), unless the search for such a last record
// outgrows its budget and the bytes reach past walTornMax: that is
// refused, as damage would be.
//
// Open replays the records in order into memory (the store keeps the log
// between its compaction point and its last entry, and the latest
// snapshot, as MemoryStorage does); reads never touch the file. Every
// Save, CreateSnapshot and Compact is one record written with one
// fdatasync, so a crash leaves the store as it was before or after the
// call. When the file has grown past twice its live size (and
// walRewriteMin), the call that grew it rewrites it instead: the whole
// state as one recBase record in wal.tmp, fsync, rename over wal, fsync of
// the directory. A crash before the rename leaves the old file, after it
// the new one; both hold the same state.
//
// Everything is in one file, so there is no ordering between stores to
// argue: a snapshot and the log after it are never out of step.
//
// The previous format (version 1, a bbolt file <group id hex>.db) is
// refused with errStoreVersion naming the file: there were no released
// users of it.

const (
	walDirName  = "wal"
	walTmpName  = "wal.tmp"
	walLockName = "lock"
	// walPrealloc is the step by which the file grows.
	walPrealloc = 4 << 20
	// walRewriteMin is the size under which the file is never rewritten.
	walRewriteMin = 8 << 20
	// walSearchBudget bounds the checksummed bytes of open's search for a
	// last whole record past the end of the log (walTail): a large torn
	// record of random bytes holds plausible headers by chance, and a
	// crafted one at every byte.
	walSearchBudget = 1 << 30
	// walTornMax is how far past the end of the log the bytes of a torn
	// record whose header is unreadable are taken as torn when the search
	// ran out of budget.
	walTornMax = 1 << 20
)

// walOptions tune a WAL store.
type walOptions struct {
	// NoSync skips the fdatasync of each write. A crash of the process
	// loses nothing, but a crash of the machine may lose the last writes,
	// and raft then forgets votes and entries it acknowledged. Tests and
	// benchmarks only.
	NoSync bool
	// lockTimeout bounds the wait for another holder of the lock
	// (storeLockTimeout when zero).
	lockTimeout time.Duration
	// rewriteMin replaces walRewriteMin when not zero (tests use 1 to
	// rewrite on every snapshot and compaction).
	rewriteMin int64
	// prealloc replaces walPrealloc when not zero.
	prealloc int64
}

// walStorePath is the group directory of group id under a data dir.
func walStorePath(dir string, id catalog.ID) string {
	return filepath.Join(dir, storeDirName, id.String())
}

// walFilePath is the wal file of group id under a data dir.
func walFilePath(dir string, id catalog.ID) string {
	return filepath.Join(walStorePath(dir, id), walDirName)
}

// openGroupWAL opens (or creates) the WAL store of group id under dir. A
// bbolt file of the previous format for the same group is refused.
func openGroupWAL(dir string, id catalog.ID, opts walOptions) (*walStore, error) {
	old := boltStorePath(dir, id)
	if _, err := os.Stat(old); err == nil {
		return nil, fmt.Errorf("%w: %s is a log store of format 1 (bbolt), which this build no longer reads; "+
			"remove it to rejoin the group as a new member", errStoreVersion, old)
	}
	return openWALStore(walStorePath(dir, id), opts)
}

// walStore is a logStore in a write-ahead log (see above). It follows
// etcd's MemoryStorage call for call, including its error values; where
// MemoryStorage panics on a caller's bug (an index past the last entry, a
// gap in appended entries) it returns errStoreBounds instead.
//
// Safe for concurrent use, though only the group goroutine is meant to call
// it.
type walStore struct {
	mu     sync.Mutex
	dir    string
	opts   walOptions
	lock   *os.File
	f      *os.File
	off    int64 // end of the log in f
	size   int64 // bytes of f allocated (zero-filled past off)
	base   int64 // off right after the last rewrite (or open)
	closed bool
	// failed is set by a write or sync that failed: what reached the disk
	// is unknown, so the store refuses every later write.
	failed error

	walState
	// hsDirty: hs holds a commit index not yet written. A hard state that
	// moves only the commit index is not worth an fsync of its own (etcd's
	// raft.MustSync): raft learns the commit index again from the leader,
	// so a crash that loses it loses nothing. The next record (entries,
	// snapshot, compaction, Close) carries it.
	hsDirty bool
}

var _ logStore = (*walStore)(nil)

// openWALStore opens the store in directory dir, creating it if absent.
func openWALStore(dir string, opts walOptions) (*walStore, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("groups: data dir: %w", err)
	}
	lock, err := lockFile(filepath.Join(dir, walLockName), opts.lockTimeout)
	if err != nil {
		return nil, err
	}
	s := &walStore{dir: dir, opts: opts, lock: lock}
	if err := s.load(); err != nil {
		_ = s.closeFiles()
		return nil, fmt.Errorf("groups: open log store %s: %w", dir, err)
	}
	return s, nil
}

// lockFile takes an exclusive flock on path, retrying until timeout.
func lockFile(path string, timeout time.Duration) (*os.File, error) {
	if timeout <= 0 {
		timeout = storeLockTimeout
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("groups: log store lock: %w", err)
	}
	deadline := time.Now().Add(timeout)
	for {
		busy, err := flock.TryLock(f)
		if err == nil && !busy {
			return f, nil
		}
		if err != nil || time.Now().After(deadline) {
			_ = f.Close()
			if err == nil {
				return nil, fmt.Errorf("%w: %s is locked by another process (or store) for over %v", errStoreInUse, path, timeout)
			}
			return nil, fmt.Errorf("groups: log store lock: %w", err)
		}
		// Polling: flock has no timeout, and the holder is usually a
		// process that is exiting.
		time.Sleep(10 * time.Millisecond)
	}
}

// load reads the wal file (creating an empty one if absent), replays it
// and zeroes anything after the end of the log.
func (s *walStore) load() error {
	if err := os.Remove(filepath.Join(s.dir, walTmpName)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	path := filepath.Join(s.dir, walDirName)
	buf, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return s.rewrite()
	}
	if err != nil {
		return err
	}
	if err := decodeWalHeader(buf); err != nil {
		return err
	}
	recs, end := scanWalRecords(buf[walHeaderSize:])
	tail := buf[walHeaderSize+end:]
	if at, why := walTail(tail, walSearchBudget); at >= 0 {
		// Cutting there would drop Saves that were acknowledged.
		return fmt.Errorf("%w: the log breaks off at byte %d, and %s at byte %d",
			errStoreCorrupt, walHeaderSize+end, why, walHeaderSize+end+at)
	}
	for k, r := range recs {
		if err := s.replay(k, r); err != nil {
			return err
		}
	}
	s.off, s.size = int64(walHeaderSize+end), int64(len(buf))
	s.base = s.off
	if s.f, err = os.OpenFile(path, os.O_RDWR, 0); err != nil {
		return err
	}
	// A torn record's bytes are zeroed and synced before the first write,
	// so no later, shorter record can leave a fragment of it to be read.
	if slices.ContainsFunc(tail, func(c byte) bool { return c != 0 }) {
		if _, err := s.f.WriteAt(make([]byte, len(tail)), s.off); err != nil {
			return err
		}
		return s.f.Sync()
	}
	return nil
}

// walTail judges tail, the file after the end of the log. It returns -1
// when tail is a torn last write (or zeroes), else the offset in tail of
// the damage's evidence and what it is:
//
//   - a whole record (type, length and checksum good) right after the
//     extent of the broken record at the break, when that record's length
//     is readable: acknowledged records follow the damage;
//   - non-zero bytes past that extent that are no record: damage too (a
//     torn write reaches no farther than its own record);
//   - a whole record that runs up to the last non-zero byte of tail: the
//     last record written, when records follow a break whose record's
//     length is not readable (or the length read is wrong). The search
//     checksums at most budget bytes; past it the bytes are judged by
//     their reach, as damage when non-zero bytes lie walTornMax or more
//     past the break and the broken record's length is not readable.
//
// A torn record's own payload (an entry's data) could hold a whole record
// that ends where the landed bytes end; such a store is refused, which
// fails safe.
func walTail(tail []byte, budget int) (at int, why string) {
	last := len(tail) - 1
	for last >= 0 && tail[last] == 0 {
		last--
	}
	if last < 0 {
		return -1, ""
	}
	extent := 0 // of the broken record, when its header is readable
	if n := walRecLen(tail, 0); n > 0 {
		extent = walRecHeader + n
		if walWholeRecord(tail, extent) {
			return extent, "a whole record follows it"
		}
		if last >= extent {
			return extent, "data that is no record follows the broken record"
		}
	}
	// The last whole record, if records follow the break, ends at or after
	// the last non-zero byte (its own last bytes may be zeroes), and within
	// tail.
	for o := 1; o <= last; o++ {
		n := walRecLen(tail, o)
		if n == 0 || o+walRecHeader+n-1 < last || tail[o+walRecHeader]&^batchAll != 0 {
			continue
		}
		if budget -= n + 1; budget < 0 {
			if extent == 0 && last >= walTornMax {
				return last, "data too large to search for records reaches"
			}
			return -1, ""
		}
		if walWholeRecord(tail, o) {
			return o, "a whole record that ends with the data starts"
		}
	}
	return -1, ""
}

// walRecLen is the payload length of a record whose header is at b[o:]
// when that header could be a record's (a known type, at least one byte
// of payload, within b), else 0.
func walRecLen(b []byte, o int) int {
	if len(b)-o < walRecHeader {
		return 0
	}
	h := b[o : o+walRecHeader]
	if h[8] < recSave || h[8] > recBase {
		return 0
	}
	n := int64(binary.BigEndian.Uint32(h))
	if n < 1 || n > int64(len(b)-o-walRecHeader) {
		return 0
	}
	return int(n)
}

// walWholeRecord reports whether a whole record (header and checksum
// good) starts at b[o:].
func walWholeRecord(b []byte, o int) bool {
	n := walRecLen(b, o)
	return n > 0 && crc32.Checksum(b[o+8:o+walRecHeader+n], castagnoli) == binary.BigEndian.Uint32(b[o+4:])
}

// replay applies the k-th record of the file to the state.
func (s *walStore) replay(k int, r walRecord) error {
	b, err := decodeWalBatch(r.payload)
	if err != nil {
		return fmt.Errorf("record %d: %w", k, err)
	}
	if (r.typ == recBase) != (k == 0) {
		return fmt.Errorf("%w: record %d has type %d", errStoreCorrupt, k, r.typ)
	}
	if b.hs != nil {
		s.hs = b.hs
	}
	switch r.typ {
	case recBase:
		if b.start == nil {
			return fmt.Errorf("%w: base record without a log start", errStoreCorrupt)
		}
		s.snapMeta, s.snapData, s.start, s.ents = b.snapMeta, b.snapData, *b.start, nil
		if len(b.ents) > 0 && b.ents[0].GetIndex() != s.start.index+1 {
			return fmt.Errorf("%w: base log starts at %d after %d", errStoreCorrupt, b.ents[0].GetIndex(), s.start.index)
		}
		s.ents = b.ents
	case recSave:
		ents, err := s.planSave(b.snapMeta, b.ents)
		if err != nil {
			return fmt.Errorf("%w: record %d: %v", errStoreCorrupt, k, err)
		}
		s.applySave(b.snapMeta, b.snapData, ents)
	case recSnap:
		if b.snapMeta == nil || b.snapMeta.GetIndex() <= s.snapMeta.GetIndex() || b.snapMeta.GetIndex() > s.last() {
			return fmt.Errorf("%w: record %d: snapshot out of place", errStoreCorrupt, k)
		}
		s.snapMeta, s.snapData = b.snapMeta, b.snapData
	case recCompact:
		if b.start == nil || b.start.index <= s.start.index || b.start.index > s.last() {
			return fmt.Errorf("%w: record %d: compaction out of place", errStoreCorrupt, k)
		}
		if t, _ := s.term(b.start.index); t != b.start.term {
			return fmt.Errorf("%w: record %d: compaction point term %d, entry term %d", errStoreCorrupt, k, b.start.term, t)
		}
		s.compactTo(b.start.index)
	default:
		return fmt.Errorf("%w: record %d has unknown type %d", errStoreCorrupt, k, r.typ)
	}
	return nil
}

// Close writes a hard state whose write was put off and closes the file.
// Idempotent; every other call after it returns errStoreClosed.
func (s *walStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	var err error
	if s.hsDirty && s.failed == nil {
		if err = s.append(recSave, walBatch{hs: s.hs}); err != nil {
			err = fmt.Errorf("groups: log store: writing the hard state at close: %w", err)
		}
	}
	return errors.Join(err, s.closeFiles())
}

func (s *walStore) closeFiles() error {
	var errs []error
	if s.f != nil {
		errs = append(errs, s.f.Close())
	}
	if s.lock != nil {
		errs = append(errs, s.lock.Close()) // releases the flock
	}
	return errors.Join(errs...)
}

// InitialState returns the saved hard state (nil if none) and the
// ConfState of the latest snapshot.
func (s *walStore) InitialState() (*raftpb.HardState, *raftpb.ConfState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, nil, errStoreClosed
	}
	var hs *raftpb.HardState
	if s.hs != nil {
		hs = proto.CloneOf(s.hs)
	}
	var cs *raftpb.ConfState
	if s.snapMeta != nil && s.snapMeta.ConfState != nil {
		cs = proto.CloneOf(s.snapMeta.ConfState)
	}
	return hs, raftpb.EnsureConfState(cs), nil
}

// Entries returns the entries [lo, hi), cut after the first entry whose
// running protobuf size exceeds maxSize (at least one entry is returned).
func (s *walStore) Entries(lo, hi, maxSize uint64) ([]*raftpb.Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errStoreClosed
	}
	last := s.last()
	if lo <= s.start.index {
		return nil, raft.ErrCompacted
	}
	if hi > last+1 || lo > hi {
		return nil, fmt.Errorf("%w: entries [%d, %d) with last index %d", errStoreBounds, lo, hi, last)
	}
	if last == s.start.index {
		return nil, raft.ErrUnavailable
	}
	ents := s.ents[lo-s.start.index-1 : hi-s.start.index-1]
	var size uint64
	n := 0
	for n < len(ents) {
		size += uint64(proto.Size(ents[n]))
		if n > 0 && size > maxSize {
			break
		}
		n++
	}
	// A copy: the caller may append to it, and the store's slice changes.
	return append([]*raftpb.Entry(nil), ents[:n]...), nil
}

// Term returns the term of entry i in [FirstIndex()-1, LastIndex()].
func (s *walStore) Term(i uint64) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, errStoreClosed
	}
	return s.term(i)
}

// LastIndex returns the index of the last entry (the compaction point if
// the log holds none).
func (s *walStore) LastIndex() (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, errStoreClosed
	}
	return s.last(), nil
}

// FirstIndex returns the index of the first entry Entries may return.
func (s *walStore) FirstIndex() (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, errStoreClosed
	}
	return s.start.index + 1, nil
}

// Snapshot returns the latest snapshot with its data (an empty snapshot
// before the first).
func (s *walStore) Snapshot() (*raftpb.Snapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errStoreClosed
	}
	snap := &raftpb.Snapshot{Data: s.snapData}
	if s.snapMeta != nil {
		snap.Metadata = proto.CloneOf(s.snapMeta)
	}
	return raftpb.EnsureSnapshot(snap), nil
}

// walState is the store's state in memory: what replaying the file gives.
type walState struct {
	hs       *raftpb.HardState        // nil until the first hard state
	snapMeta *raftpb.SnapshotMetadata // nil until the first snapshot
	snapData []byte
	start    logStart
	ents     []*raftpb.Entry // start.index+1 … last
}

func (w *walState) last() uint64 { return w.start.index + uint64(len(w.ents)) }

func (w *walState) term(i uint64) (uint64, error) {
	switch {
	case i < w.start.index:
		return 0, raft.ErrCompacted
	case i > w.last():
		return 0, raft.ErrUnavailable
	case i == w.start.index:
		return w.start.term, nil
	}
	return w.ents[i-w.start.index-1].GetTerm(), nil
}

// planSave checks a Save's snapshot (metadata) and entries against the
// state, following MemoryStorage: entries already compacted (or covered by
// the snapshot) are dropped, and the rest must continue the log without a
// gap.
func (w *walState) planSave(meta *raftpb.SnapshotMetadata, ents []*raftpb.Entry) ([]*raftpb.Entry, error) {
	start, last := w.start, w.last()
	if meta != nil {
		if idx := w.snapMeta.GetIndex(); idx != 0 && idx >= meta.GetIndex() {
			return nil, raft.ErrSnapOutOfDate
		}
		start = logStart{index: meta.GetIndex(), term: meta.GetTerm()}
		last = start.index
	}
	if len(ents) > 0 {
		first := start.index + 1
		if ents[0].GetIndex()+uint64(len(ents))-1 < first {
			ents = nil
		} else if first > ents[0].GetIndex() {
			ents = ents[first-ents[0].GetIndex():]
		}
	}
	if len(ents) > 0 && ents[0].GetIndex() > last+1 {
		return nil, fmt.Errorf("%w: appending at %d after last index %d", errStoreBounds, ents[0].GetIndex(), last)
	}
	for i, e := range ents {
		if e.GetIndex() != ents[0].GetIndex()+uint64(i) {
			return nil, fmt.Errorf("%w: entries not contiguous at %d", errStoreBounds, e.GetIndex())
		}
	}
	return ents, nil
}

// applySave applies a planned Save: the snapshot replaces the log, and the
// entries overwrite any conflicting suffix.
func (w *walState) applySave(meta *raftpb.SnapshotMetadata, data []byte, ents []*raftpb.Entry) {
	if meta != nil {
		w.snapMeta, w.snapData = meta, data
		w.start, w.ents = logStart{index: meta.GetIndex(), term: meta.GetTerm()}, nil
	}
	if len(ents) > 0 {
		keep := ents[0].GetIndex() - w.start.index - 1
		w.ents = append(w.ents[:keep], ents...)
	}
}

// compactTo drops the entries up to i, which becomes the log start. The
// rest is copied so the dropped entries are freed.
func (w *walState) compactTo(i uint64) {
	t, _ := w.term(i)
	w.ents = append([]*raftpb.Entry(nil), w.ents[i-w.start.index:]...)
	w.start = logStart{index: i, term: t}
}
