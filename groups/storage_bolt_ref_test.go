package groups

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/mosaik-go/mosaik/catalog"
)

// The bbolt log store: the data-dir format up to version 1, kept in the
// tests as the reference the WAL store (storage_wal.go) is checked and
// measured against. Its layout (under WithDataDir(dir) then):
//
//	<dir>/groups/                    created 0700
//	<dir>/groups/<group id hex>.db   one bbolt file per group, created 0600
//
// A group's file is locked (flock) while a node has it open; a second
// node on the same directory fails to open it after storeLockTimeout. Inside
// each file:
//
//	bucket "meta"
//	  "version"   uint64 BE: the format version (boltFormatVersion); a file
//	              of a newer version is refused with errStoreVersion
//	  "logstart"  index ‖ term (uint64 BE each) of the entry just before the
//	              first stored one: the compaction point (0 ‖ 0 when empty),
//	              whose term raft still asks for after compaction
//	  "hardstate" raftpb.HardState (protobuf); absent until the first save
//	  "snapmeta"  raftpb.SnapshotMetadata (protobuf) of the latest snapshot;
//	              absent until the first one
//	bucket "entries"
//	  index (uint64 BE) → term (uint64 BE) ‖ raftpb.Entry (protobuf); the
//	  keys are exactly logstart.index+1 … last, with no gap
//	bucket "snapdata"
//	  chunk number (uint64 BE) → up to snapDataChunk bytes of the latest
//	  snapshot's Data, in order; empty when Data is empty
//
// Every Save, CreateSnapshot and Compact is one bbolt transaction, so a
// crash leaves the file as it was before or after the call, never between.
// Keys sort as big-endian numbers, so the log's order is the bucket's.

const (
	// snapDataChunk splits snapshot data across values so that no single
	// bbolt value (and its overflow pages) grows with the state machine.
	snapDataChunk = 1 << 20
)

var (
	bucketMeta     = []byte("meta")
	bucketEntries  = []byte("entries")
	bucketSnapData = []byte("snapdata")
	keyVersion     = []byte("version")
	keyLogStart    = []byte("logstart")
	keyHardState   = []byte("hardstate")
	keySnapMeta    = []byte("snapmeta")
)

// boltOptions tune a bolt store.
type boltOptions struct {
	// NoSync skips the fsync at the end of each transaction. A crash of the
	// process loses nothing, but a crash of the machine (power, kernel) may
	// lose the last writes, and raft then forgets votes and entries it
	// acknowledged: members may elect two leaders in one term or lose
	// committed entries. Off by default; turn it on only for tests and
	// benchmarks, or when every member's loss is tolerable.
	NoSync bool

	// lockTimeout bounds the wait for another holder of the file's lock
	// (storeLockTimeout when zero); tests shorten it.
	lockTimeout time.Duration
}

// openGroupStore opens (or creates) the store of group id under dir.
func openGroupStore(dir string, id catalog.ID, opts boltOptions) (*boltStore, error) {
	if err := os.MkdirAll(filepath.Join(dir, storeDirName), 0o700); err != nil {
		return nil, fmt.Errorf("groups: data dir: %w", err)
	}
	return openBoltStore(boltStorePath(dir, id), opts)
}

// boltStore is a logStore in one bbolt file. It follows etcd's
// MemoryStorage call for call, including its error values; where
// MemoryStorage panics on a caller's bug (an index past the last entry, a
// gap in appended entries) it returns errStoreBounds instead. Entries reads
// only the range asked for; Snapshot reads the snapshot's data.
//
// Safe for concurrent use, though only the group goroutine is meant to call
// it.
type boltStore struct {
	mu     sync.Mutex
	db     *bolt.DB
	closed bool

	// Cached from the file, updated after each committed write.
	start    logStart
	last     uint64
	snapMeta *raftpb.SnapshotMetadata // nil until the first snapshot
	hs       *raftpb.HardState        // nil until the first hard state
	// hsDirty: hs holds a commit index not yet written. A hard state
	// that moves only the commit index is not worth an fsync of its own
	// (etcd's raft.MustSync): raft learns the commit index again from the
	// leader, so a crash that loses it loses nothing. The next write
	// (entries, snapshot, compaction, Close) carries it.
	hsDirty bool
}

var _ logStore = (*boltStore)(nil)

// openBoltStore opens the store at path, creating it (0600) if absent, and
// checks its format version and the shape of its log.
func openBoltStore(path string, opts boltOptions) (*boltStore, error) {
	lock := opts.lockTimeout
	if lock <= 0 {
		lock = storeLockTimeout
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout: lock,
		NoSync:  opts.NoSync,
		// The freelist is rebuilt by a scan at open instead of written on
		// every commit (as etcd does): one write less per Save.
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
	})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("%w: %s is locked by another process (or store) for over %v", errStoreInUse, path, lock)
	}
	if err != nil {
		return nil, fmt.Errorf("groups: open log store %s: %w", path, err)
	}
	s := &boltStore{db: db}
	if err := db.Update(s.load); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("groups: open log store %s: %w", path, err)
	}
	return s, nil
}

// load creates the buckets of a new file or reads and checks an existing
// one, filling the cache.
func (s *boltStore) load(tx *bolt.Tx) error {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		if tx.Bucket(bucketEntries) != nil || tx.Bucket(bucketSnapData) != nil {
			return fmt.Errorf("%w: no meta bucket", errStoreCorrupt)
		}
		return s.create(tx)
	}
	v := meta.Get(keyVersion)
	if v == nil {
		return fmt.Errorf("%w: no format version", errStoreCorrupt)
	}
	if _, err := decodeFormatVersion(v); err != nil {
		return err
	}
	ents, data := tx.Bucket(bucketEntries), tx.Bucket(bucketSnapData)
	if ents == nil || data == nil {
		return fmt.Errorf("%w: missing bucket", errStoreCorrupt)
	}
	start, err := decodeLogStart(meta.Get(keyLogStart))
	if err != nil {
		return err
	}
	s.start, s.last = start, start.index
	c := ents.Cursor()
	if k, _ := c.First(); k != nil {
		first, err := decodeU64Key(k)
		if err != nil {
			return err
		}
		lk, _ := c.Last()
		last, err := decodeU64Key(lk)
		if err != nil {
			return err
		}
		// Keys are unique and sorted, so first, last and the count pin down
		// a gapless run.
		if first != start.index+1 || last < first || uint64(ents.Stats().KeyN) != last-first+1 {
			return fmt.Errorf("%w: entries %d..%d (%d keys) after log start %d",
				errStoreCorrupt, first, last, ents.Stats().KeyN, start.index)
		}
		s.last = last
	}
	if v := meta.Get(keyHardState); v != nil {
		if s.hs, err = decodeHardState(v); err != nil {
			return err
		}
	}
	if v := meta.Get(keySnapMeta); v != nil {
		if s.snapMeta, err = decodeSnapshotMeta(v); err != nil {
			return err
		}
	}
	return nil
}

func (s *boltStore) create(tx *bolt.Tx) error {
	meta, err := tx.CreateBucket(bucketMeta)
	if err != nil {
		return err
	}
	if _, err := tx.CreateBucketIfNotExists(bucketEntries); err != nil {
		return err
	}
	if _, err := tx.CreateBucket(bucketSnapData); err != nil {
		return err
	}
	if err := meta.Put(keyVersion, u64Key(boltFormatVersion)); err != nil {
		return err
	}
	return meta.Put(keyLogStart, logStart{}.encode())
}

// Close closes the file. Idempotent; every other call after it returns
// errStoreClosed.
func (s *boltStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	var err error
	if s.hsDirty {
		err = s.db.Update(func(tx *bolt.Tx) error { return s.writeHardState(tx, s.hs) })
		if err != nil {
			err = fmt.Errorf("groups: log store: writing the hard state at close: %w", err)
		}
	}
	return errors.Join(err, s.db.Close())
}

// InitialState returns the saved hard state (nil if none) and the
// ConfState of the latest snapshot.
func (s *boltStore) InitialState() (*raftpb.HardState, *raftpb.ConfState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, nil, errStoreClosed
	}
	var hs *raftpb.HardState
	if s.hs != nil {
		hs = proto.Clone(s.hs).(*raftpb.HardState)
	}
	var cs *raftpb.ConfState
	if s.snapMeta != nil && s.snapMeta.ConfState != nil {
		cs = proto.Clone(s.snapMeta.ConfState).(*raftpb.ConfState)
	}
	return hs, raftpb.EnsureConfState(cs), nil
}

// Entries returns the entries [lo, hi), cut after the first entry whose
// running protobuf size exceeds maxSize (at least one entry is returned).
func (s *boltStore) Entries(lo, hi, maxSize uint64) ([]*raftpb.Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errStoreClosed
	}
	if lo <= s.start.index {
		return nil, raft.ErrCompacted
	}
	if hi > s.last+1 || lo > hi {
		return nil, fmt.Errorf("%w: entries [%d, %d) with last index %d", errStoreBounds, lo, hi, s.last)
	}
	if s.last == s.start.index {
		return nil, raft.ErrUnavailable
	}
	out := make([]*raftpb.Entry, 0, min(hi-lo, 64))
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketEntries).Cursor()
		var size uint64
		i := lo
		for k, v := c.Seek(u64Key(lo)); i < hi; k, v = c.Next() {
			if k == nil || !bytes.Equal(k, u64Key(i)) {
				return fmt.Errorf("%w: entry %d missing", errStoreCorrupt, i)
			}
			if len(v) < 8 {
				return fmt.Errorf("%w: entry record of %d bytes", errStoreCorrupt, len(v))
			}
			size += entryRecordSize(v)
			if len(out) > 0 && size > maxSize {
				break
			}
			e, err := decodeEntryRecord(i, v)
			if err != nil {
				return err
			}
			out = append(out, e)
			i++
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Term returns the term of entry i in [FirstIndex()-1, LastIndex()].
func (s *boltStore) Term(i uint64) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, errStoreClosed
	}
	return s.term(i)
}

func (s *boltStore) term(i uint64) (uint64, error) {
	switch {
	case i < s.start.index:
		return 0, raft.ErrCompacted
	case i > s.last:
		return 0, raft.ErrUnavailable
	case i == s.start.index:
		return s.start.term, nil
	}
	var term uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketEntries).Get(u64Key(i))
		if v == nil {
			return fmt.Errorf("%w: entry %d missing", errStoreCorrupt, i)
		}
		var err error
		term, err = entryRecordTerm(v)
		return err
	})
	return term, err
}

// LastIndex returns the index of the last entry (the compaction point if
// the log holds none).
func (s *boltStore) LastIndex() (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, errStoreClosed
	}
	return s.last, nil
}

// FirstIndex returns the index of the first entry Entries may return.
func (s *boltStore) FirstIndex() (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, errStoreClosed
	}
	return s.start.index + 1, nil
}

// Snapshot returns the latest snapshot with its data (an empty snapshot
// before the first).
func (s *boltStore) Snapshot() (*raftpb.Snapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errStoreClosed
	}
	snap := &raftpb.Snapshot{}
	if s.snapMeta != nil {
		snap.Metadata = proto.Clone(s.snapMeta).(*raftpb.SnapshotMetadata)
	}
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		snap.Data, err = readSnapData(tx.Bucket(bucketSnapData))
		return err
	})
	if err != nil {
		return nil, err
	}
	return raftpb.EnsureSnapshot(snap), nil
}
