package groups

import (
	"bytes"
	"fmt"

	bolt "go.etcd.io/bbolt"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// The writes of the bolt store: each call is one bbolt transaction, and the
// cached fields change only once it has committed.

// Save persists one Ready's hard state, snapshot and entries in one
// transaction: on error nothing of it is stored. A snapshot older than the
// stored one fails with raft.ErrSnapOutOfDate (as MemoryStorage's
// ApplySnapshot); entries that start past LastIndex()+1 fail with
// errStoreBounds; entries already compacted are skipped.
func (s *boltStore) Save(hs *raftpb.HardState, snap *raftpb.Snapshot, ents []*raftpb.Entry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errStoreClosed
	}
	hsNext, metaNext, start, last := s.hs, s.snapMeta, s.start, s.last
	saveHS := !raft.IsEmptyHardState(hs)
	if saveHS {
		hsNext = proto.Clone(hs).(*raftpb.HardState)
	}
	applySnap := !raft.IsEmptySnap(snap)
	if applySnap {
		if idx := s.snapMeta.GetIndex(); idx != 0 && idx >= snap.GetMetadata().GetIndex() {
			return raft.ErrSnapOutOfDate
		}
		// The metadata is copied, the data (possibly large) only written.
		metaNext = raftpb.EnsureSnapshotMetadata(proto.Clone(snap.GetMetadata()).(*raftpb.SnapshotMetadata))
		start = logStart{index: metaNext.GetIndex(), term: metaNext.GetTerm()}
		last = start.index
	}
	// Which entries to write, following MemoryStorage.Append.
	if len(ents) > 0 {
		first := start.index + 1
		if ents[0].GetIndex()+uint64(len(ents))-1 < first {
			ents = nil
		} else if first > ents[0].GetIndex() {
			ents = ents[first-ents[0].GetIndex():]
		}
	}
	if len(ents) > 0 && ents[0].GetIndex() > last+1 {
		return fmt.Errorf("%w: appending at %d after last index %d", errStoreBounds, ents[0].GetIndex(), last)
	}
	for i, e := range ents {
		if e.GetIndex() != ents[0].GetIndex()+uint64(i) {
			return fmt.Errorf("%w: entries not contiguous at %d", errStoreBounds, e.GetIndex())
		}
	}
	truncateOld := false
	if len(ents) > 0 {
		// A conflicting run shorter than the old suffix leaves old entries
		// past its end: they go too (a fresh snapshot left none).
		truncateOld = !applySnap && last > ents[len(ents)-1].GetIndex()
		last = ents[len(ents)-1].GetIndex()
	}
	if !saveHS && !applySnap && len(ents) == 0 {
		return nil
	}
	if saveHS && !applySnap && len(ents) == 0 && s.hs != nil &&
		hsNext.GetTerm() == s.hs.GetTerm() && hsNext.GetVote() == s.hs.GetVote() {
		s.hs, s.hsDirty = hsNext, true // only the commit index moved
		return nil
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		meta, entries := tx.Bucket(bucketMeta), tx.Bucket(bucketEntries)
		if saveHS || s.hsDirty {
			if err := s.writeHardState(tx, hsNext); err != nil {
				return err
			}
		}
		if applySnap {
			if err := writeSnapshot(tx, metaNext, snap.GetData()); err != nil {
				return err
			}
			// The snapshot replaces the whole log.
			if err := tx.DeleteBucket(bucketEntries); err != nil {
				return err
			}
			var err error
			if entries, err = tx.CreateBucket(bucketEntries); err != nil {
				return err
			}
			if err := meta.Put(keyLogStart, start.encode()); err != nil {
				return err
			}
		}
		for _, e := range ents {
			rec, err := encodeEntryRecord(e)
			if err != nil {
				return err
			}
			if err := entries.Put(u64Key(e.GetIndex()), rec); err != nil {
				return err
			}
		}
		if truncateOld {
			return deleteFrom(entries, last+1)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("groups: log store save: %w", err)
	}
	s.hs, s.snapMeta, s.start, s.last = hsNext, metaNext, start, last
	s.hsDirty = false
	return nil
}

// writeHardState writes hs in tx.
func (s *boltStore) writeHardState(tx *bolt.Tx, hs *raftpb.HardState) error {
	b, err := proto.Marshal(hs)
	if err != nil {
		return err
	}
	return tx.Bucket(bucketMeta).Put(keyHardState, b)
}

// flushHardState writes a hard state whose write was put off (hsDirty) in
// tx, so a snapshot or compaction never reaches the disk ahead of the
// commit index that covers it.
func (s *boltStore) flushHardState(tx *bolt.Tx) error {
	if !s.hsDirty {
		return nil
	}
	return s.writeHardState(tx, s.hs)
}

// writeSnapshot stores a snapshot's metadata and data.
func writeSnapshot(tx *bolt.Tx, meta *raftpb.SnapshotMetadata, data []byte) error {
	b, err := proto.Marshal(meta)
	if err != nil {
		return err
	}
	if err := tx.Bucket(bucketMeta).Put(keySnapMeta, b); err != nil {
		return err
	}
	if err := tx.DeleteBucket(bucketSnapData); err != nil {
		return err
	}
	bucket, err := tx.CreateBucket(bucketSnapData)
	if err != nil {
		return err
	}
	for n, off := uint64(0), 0; off < len(data); n++ {
		end := min(off+snapDataChunk, len(data))
		if err := bucket.Put(u64Key(n), data[off:end]); err != nil {
			return err
		}
		off = end
	}
	return nil
}

// readSnapData concatenates the snapshot data chunks (nil when empty).
func readSnapData(b *bolt.Bucket) ([]byte, error) {
	var out []byte
	c := b.Cursor()
	n := uint64(0)
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if !bytes.Equal(k, u64Key(n)) {
			return nil, fmt.Errorf("%w: snapshot data chunk %x out of order", errStoreCorrupt, k)
		}
		out = append(out, v...)
		n++
	}
	return out, nil
}

// deleteFrom deletes every key ≥ from. It seeks again after each delete
// because a bbolt cursor may skip an item when deleting while iterating.
func deleteFrom(b *bolt.Bucket, from uint64) error {
	c := b.Cursor()
	for k, _ := c.Seek(u64Key(from)); k != nil; k, _ = c.Seek(u64Key(from)) {
		if err := c.Delete(); err != nil {
			return err
		}
	}
	return nil
}

// CreateSnapshot records a snapshot at index i (which must be after the
// latest snapshot and at most LastIndex) with the given ConfState (nil
// keeps the previous one) and data. The log is not compacted.
func (s *boltStore) CreateSnapshot(i uint64, cs *raftpb.ConfState, data []byte) (*raftpb.Snapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errStoreClosed
	}
	if i <= s.snapMeta.GetIndex() {
		return nil, raft.ErrSnapOutOfDate
	}
	if i > s.last {
		return nil, fmt.Errorf("%w: snapshot at %d after last index %d", errStoreBounds, i, s.last)
	}
	term, err := s.term(i)
	if err != nil {
		return nil, err
	}
	meta := raftpb.EnsureSnapshotMetadata(nil)
	if s.snapMeta != nil {
		meta = raftpb.EnsureSnapshotMetadata(proto.Clone(s.snapMeta).(*raftpb.SnapshotMetadata))
	}
	meta.Index, meta.Term = new(i), new(term)
	if cs != nil {
		meta.ConfState = proto.Clone(cs).(*raftpb.ConfState)
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		if err := s.flushHardState(tx); err != nil {
			return err
		}
		return writeSnapshot(tx, meta, data)
	})
	if err != nil {
		return nil, fmt.Errorf("groups: log store snapshot: %w", err)
	}
	s.snapMeta, s.hsDirty = meta, false
	return &raftpb.Snapshot{Metadata: proto.Clone(meta).(*raftpb.SnapshotMetadata), Data: data}, nil
}

// Compact drops the entries up to and including compactTo, keeping its
// term as the compaction point. compactTo must be after the current
// compaction point (else raft.ErrCompacted) and at most LastIndex.
func (s *boltStore) Compact(compactTo uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errStoreClosed
	}
	if compactTo <= s.start.index {
		return raft.ErrCompacted
	}
	if compactTo > s.last {
		return fmt.Errorf("%w: compact to %d after last index %d", errStoreBounds, compactTo, s.last)
	}
	term, err := s.term(compactTo)
	if err != nil {
		return err
	}
	start := logStart{index: compactTo, term: term}
	err = s.db.Update(func(tx *bolt.Tx) error {
		if err := s.flushHardState(tx); err != nil {
			return err
		}
		c := tx.Bucket(bucketEntries).Cursor()
		limit := u64Key(compactTo)
		for k, _ := c.First(); k != nil && bytes.Compare(k, limit) <= 0; k, _ = c.First() {
			if err := c.Delete(); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Put(keyLogStart, start.encode())
	})
	if err != nil {
		return fmt.Errorf("groups: log store compact: %w", err)
	}
	s.start, s.hsDirty = start, false
	return nil
}
