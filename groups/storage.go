package groups

import (
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/mosaik-go/mosaik"
	"github.com/mosaik-go/mosaik/catalog"
)

// What the log stores on disk share. The data dir's store is the WAL
// (storage_wal.go); the bbolt store of earlier builds lives on in the
// tests (storage_bolt_ref_test.go) as the reference the WAL is checked and
// measured against.

const (
	// storeDirName is the data dir's subdirectory of group stores.
	storeDirName = "groups"
	// storeLockTimeout bounds the wait for another holder of a store.
	storeLockTimeout = 2 * time.Second
	// boltFileSuffix names the bbolt file of format version 1.
	boltFileSuffix = ".db"
)

var (
	// errStoreCorrupt is wrapped by every error about a record that does not
	// decode or does not fit the log.
	errStoreCorrupt = errors.New("groups: log store corrupt")
	// errStoreVersion reports a store of a format this build does not read:
	// written by a newer build, or the bbolt format of older ones.
	errStoreVersion = errors.New("groups: log store format not supported by this build")
	// errStoreBounds reports a call outside the stored log, where etcd's
	// MemoryStorage panics (a caller bug, not a state of the log).
	errStoreBounds = errors.New("groups: log store index out of bounds")
	// errStoreInUse reports a store another process (or another store in
	// this one) has open.
	errStoreInUse = errors.New("groups: log store in use")
	// errStoreClosed is returned by every call after Close.
	errStoreClosed = fmt.Errorf("groups: log store %w", mosaik.ErrClosed)
)

// maxStoredMetaSize caps the hard state and snapshot metadata records: a
// ConfState lists at most a few voters and learners, so anything this big
// is damage, not data.
const maxStoredMetaSize = 1 << 20

// boltStorePath is where format version 1 (bbolt) kept group id under a
// data dir; the WAL store refuses a data dir that still holds it.
func boltStorePath(dir string, id catalog.ID) string {
	return filepath.Join(dir, storeDirName, id.String()+boltFileSuffix)
}

// logStart is the compaction point: the entry before the first stored one,
// whose term raft still asks for (MemoryStorage's dummy entry).
type logStart struct{ index, term uint64 }

func (s logStart) encode() []byte {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], s.index)
	binary.BigEndian.PutUint64(b[8:], s.term)
	return b[:]
}
