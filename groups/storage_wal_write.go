package groups

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// The writes of the WAL store: each call is one record (or one rewrite),
// and the state in memory changes only once the record is on disk.

// Save persists one Ready's hard state, snapshot and entries as one
// record: on error nothing of it is stored. A snapshot older than the
// stored one fails with raft.ErrSnapOutOfDate (as MemoryStorage's
// ApplySnapshot); entries that start past LastIndex()+1 fail with
// errStoreBounds; entries already compacted are skipped.
func (s *walStore) Save(hs *raftpb.HardState, snap *raftpb.Snapshot, ents []*raftpb.Entry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errStoreClosed
	}
	saveHS := !raft.IsEmptyHardState(hs)
	var meta *raftpb.SnapshotMetadata
	var data []byte
	if !raft.IsEmptySnap(snap) {
		// The metadata is copied; the data is kept as given (raft does not
		// change it, and MemoryStorage keeps it too).
		meta = raftpb.EnsureSnapshotMetadata(proto.CloneOf(snap.GetMetadata()))
		data = snap.GetData()
	}
	ents, err := s.planSave(meta, ents)
	if err != nil {
		return err
	}
	if !saveHS && meta == nil && len(ents) == 0 {
		return nil
	}
	var hsNext *raftpb.HardState
	if saveHS {
		hsNext = proto.CloneOf(hs)
	}
	if saveHS && meta == nil && len(ents) == 0 && s.hs != nil &&
		hsNext.GetTerm() == s.hs.GetTerm() && hsNext.GetVote() == s.hs.GetVote() {
		s.hs, s.hsDirty = hsNext, true // only the commit index moved
		return nil
	}
	b := walBatch{hs: hsNext, snapMeta: meta, snapData: data, ents: ents}
	if !saveHS && s.hsDirty {
		b.hs = s.hs
	}
	prev := s.walState
	apply := func() {
		if b.hs != nil {
			s.hs = b.hs
		}
		s.applySave(meta, data, ents)
	}
	if err := s.write(recSave, b, len(data), apply); err != nil {
		s.walState = prev
		return fmt.Errorf("groups: log store save: %w", err)
	}
	s.hsDirty = false
	return nil
}

// CreateSnapshot records a snapshot at index i (which must be after the
// latest snapshot and at most LastIndex) with the given ConfState (nil
// keeps the previous one) and data. The log is not compacted.
func (s *walStore) CreateSnapshot(i uint64, cs *raftpb.ConfState, data []byte) (*raftpb.Snapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errStoreClosed
	}
	if i <= s.snapMeta.GetIndex() {
		return nil, raft.ErrSnapOutOfDate
	}
	if i > s.last() {
		return nil, fmt.Errorf("%w: snapshot at %d after last index %d", errStoreBounds, i, s.last())
	}
	term, err := s.term(i)
	if err != nil {
		return nil, err
	}
	meta := raftpb.EnsureSnapshotMetadata(nil)
	if s.snapMeta != nil {
		meta = raftpb.EnsureSnapshotMetadata(proto.CloneOf(s.snapMeta))
	}
	meta.Index, meta.Term = new(i), new(term)
	if cs != nil {
		meta.ConfState = proto.CloneOf(cs)
	}
	// A hard state whose write was put off goes with the snapshot, so the
	// snapshot never reaches the disk ahead of the commit index covering it.
	b := walBatch{snapMeta: meta, snapData: data}
	if s.hsDirty {
		b.hs = s.hs
	}
	prev := s.walState
	err = s.write(recSnap, b, len(data), func() { s.snapMeta, s.snapData = meta, data })
	if err != nil {
		s.walState = prev
		return nil, fmt.Errorf("groups: log store snapshot: %w", err)
	}
	s.hsDirty = false
	return &raftpb.Snapshot{Metadata: proto.CloneOf(meta), Data: data}, nil
}

// Replace replaces everything the store holds with hard state hs and
// snapshot snap, with no entries after it: the new state is written to
// wal.tmp and renamed over the wal (rewrite), so a crash leaves either the
// old contents whole or the new ones, never an empty store. A forced epoch
// restarts its log this way (core_force.go).
func (s *walStore) Replace(hs *raftpb.HardState, snap *raftpb.Snapshot) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errStoreClosed
	}
	if s.failed != nil {
		return fmt.Errorf("groups: log store replace: an earlier write failed: %w", s.failed)
	}
	meta := raftpb.EnsureSnapshotMetadata(proto.CloneOf(snap.GetMetadata()))
	prev := s.walState
	s.walState = walState{
		hs: proto.CloneOf(hs), snapMeta: meta, snapData: snap.GetData(),
		start: logStart{index: meta.GetIndex(), term: meta.GetTerm()},
	}
	if err := s.rewrite(); err != nil {
		s.walState = prev
		return fmt.Errorf("groups: log store replace: %w", err)
	}
	s.hsDirty = false
	return nil
}

// Compact drops the entries up to and including compactTo, keeping its
// term as the compaction point. compactTo must be after the current
// compaction point (else raft.ErrCompacted) and at most LastIndex.
func (s *walStore) Compact(compactTo uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errStoreClosed
	}
	if compactTo <= s.start.index {
		return raft.ErrCompacted
	}
	if compactTo > s.last() {
		return fmt.Errorf("%w: compact to %d after last index %d", errStoreBounds, compactTo, s.last())
	}
	term, err := s.term(compactTo)
	if err != nil {
		return err
	}
	b := walBatch{start: &logStart{index: compactTo, term: term}}
	if s.hsDirty {
		b.hs = s.hs
	}
	prev := s.walState
	if err := s.write(recCompact, b, 0, func() { s.compactTo(compactTo) }); err != nil {
		s.walState = prev
		return fmt.Errorf("groups: log store compact: %w", err)
	}
	s.hsDirty = false
	return nil
}

// write makes one call durable: it appends b as a record of type typ,
// then applies the call to the state; or, when the file has grown past
// twice its size after the last rewrite (and the rewrite threshold),
// applies the call first and rewrites the file with the new state. bulk
// is the size of the record's snapshot data, which counts towards growth
// before the record is built. On error the caller restores the state.
func (s *walStore) write(typ byte, b walBatch, bulk int, apply func()) error {
	if s.failed != nil {
		return fmt.Errorf("an earlier write failed: %w", s.failed)
	}
	least := s.opts.rewriteMin
	if least == 0 {
		least = walRewriteMin
	}
	if typ != recSave || b.snapMeta != nil {
		if grown := s.off + int64(bulk); grown > least && grown > 2*s.base {
			// apply may overwrite the entries' array in place; the
			// caller's copy of the state keeps the old one.
			s.ents = slices.Clone(s.ents)
			apply()
			return s.rewrite()
		}
	}
	if err := s.append(typ, b); err != nil {
		return err
	}
	apply()
	return nil
}

// append writes one record at the end of the log and syncs it. The file
// grows first, if needed, by a zero-filled step synced on its own.
func (s *walStore) append(typ byte, b walBatch) error {
	buf, err := appendWalRecord(nil, typ, b)
	if err != nil {
		return err
	}
	if end := s.off + int64(len(buf)); end > s.size {
		grow := max(s.prealloc(), end-s.size)
		if err := s.fail(s.writeZeroes(s.f, s.size, grow)); err != nil {
			return err
		}
		s.size += grow
	}
	if _, err := s.f.WriteAt(buf, s.off); err != nil {
		return s.fail(err)
	}
	if !s.opts.NoSync {
		if err := fdatasync(s.f); err != nil {
			return s.fail(err)
		}
	}
	s.off += int64(len(buf))
	return nil
}

func (s *walStore) prealloc() int64 {
	if s.opts.prealloc > 0 {
		return s.opts.prealloc
	}
	return walPrealloc
}

// fail marks the store failed: after a failed write or sync the file's
// contents past the last good record are unknown (and a failed fsync may
// have dropped dirty pages: retrying it would report success falsely).
func (s *walStore) fail(err error) error {
	if err != nil && s.failed == nil {
		s.failed = err
	}
	return err
}

// writeZeroes fills [at, at+n) of f with zeroes and syncs them, metadata
// included (the size changed).
func (s *walStore) writeZeroes(f *os.File, at, n int64) error {
	zero := make([]byte, min(n, 1<<20))
	for done := int64(0); done < n; {
		k := min(int64(len(zero)), n-done)
		if _, err := f.WriteAt(zero[:k], at+done); err != nil {
			return err
		}
		done += k
	}
	if s.opts.NoSync {
		return nil
	}
	return f.Sync()
}

// rewrite writes the whole state to wal.tmp as one recBase record, syncs
// it, renames it over wal and syncs the directory, then writes from there.
// Until the rename, the old file stays whole; after it, the new one is.
func (s *walStore) rewrite() error {
	tmp := filepath.Join(s.dir, walTmpName)
	buf := encodeWalHeader()
	buf, err := appendWalRecord(buf, recBase, walBatch{
		hs: s.hs, snapMeta: s.snapMeta, snapData: s.snapData, start: &s.start, ents: s.ents,
	})
	if err != nil {
		return err
	}
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	size := int64(len(buf)) + s.prealloc()
	err = s.writeZeroes(f, int64(len(buf)), s.prealloc())
	if err == nil {
		_, err = f.WriteAt(buf, 0)
	}
	if err == nil && !s.opts.NoSync {
		err = f.Sync()
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(s.dir, walDirName))
	}
	if err == nil && !s.opts.NoSync {
		err = syncDir(s.dir)
	}
	if err != nil {
		_ = f.Close()
		_ = os.Remove(tmp)
		// Whether the rename reached the disk is unknown after a failed
		// directory sync: stop writing.
		return s.fail(err)
	}
	if s.f != nil {
		_ = s.f.Close()
	} else if !s.opts.NoSync {
		// A new store: its directory's entry (and that of the directory
		// of group stores, likely new too) must be on disk before
		// anything written in it is acknowledged.
		parent := filepath.Dir(s.dir)
		for _, d := range []string{parent, filepath.Dir(parent)} {
			if err := syncDir(d); err != nil {
				_ = f.Close()
				return s.fail(err)
			}
		}
	}
	s.f, s.off, s.size = f, int64(len(buf)), size
	s.base = s.off
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
