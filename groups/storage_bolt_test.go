package groups

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/mosaik-go/mosaik/catalog"
)

// storeKinds builds each logStore under test: the reference, bolt and the
// WAL.
var storeKinds = []struct {
	name string
	open func(t *testing.T) logStore
}{
	{"memory", func(*testing.T) logStore { return refMemStore{raft.NewMemoryStorage()} }},
	{"bolt", func(t *testing.T) logStore {
		s, err := openBoltStore(filepath.Join(t.TempDir(), "g.db"), boltOptions{NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}},
	{"wal", func(t *testing.T) logStore {
		s, err := openWALStore(filepath.Join(t.TempDir(), "g"), walOptions{NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}},
}

func mustSave(t *testing.T, s logStore, hs *raftpb.HardState, snap *raftpb.Snapshot, ents ...*raftpb.Entry) {
	t.Helper()
	if err := s.Save(hs, snap, ents); err != nil {
		t.Fatal(err)
	}
}

func mustFirstLast(t *testing.T, s logStore) (uint64, uint64) {
	t.Helper()
	first, err := s.FirstIndex()
	if err != nil {
		t.Fatal(err)
	}
	last, err := s.LastIndex()
	if err != nil {
		t.Fatal(err)
	}
	return first, last
}

func wantRange(t *testing.T, s logStore, first, last uint64) {
	t.Helper()
	gf, gl := mustFirstLast(t, s)
	if gf != first || gl != last {
		t.Fatalf("log holds %d..%d, want %d..%d", gf, gl, first, last)
	}
}

func wantTerms(t *testing.T, s logStore, from uint64, terms ...uint64) {
	t.Helper()
	for k, want := range terms {
		i := from + uint64(k)
		got, err := s.Term(i)
		if err != nil || got != want {
			t.Fatalf("Term(%d) = %d, %v; want %d", i, got, err, want)
		}
		if i == 0 {
			continue
		}
		if f, _ := s.FirstIndex(); i < f {
			continue // the compaction point keeps its term only
		}
		es, err := s.Entries(i, i+1, math.MaxUint64)
		if err != nil || len(es) != 1 || es[0].GetIndex() != i || es[0].GetTerm() != want {
			t.Fatalf("Entries(%d) = %v, %v; want index %d term %d", i, es, err, i, want)
		}
	}
}

// The unit tests of mosaik's InMemoryLogStore (src/groups/storage.rs),
// mapped onto raft.Storage: prune_prefix(i) is Compact(i), truncate(from)
// is a Save whose entries conflict from that index, and a range over the
// pruned prefix is raft.ErrCompacted (mosaik skips the missing part; raft
// asks again from a snapshot). Each runs on MemoryStorage and bolt.
func TestLogStore_MosaikUnits(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, s logStore)
	}{
		{"prune_prefix_basic", func(t *testing.T, s logStore) {
			mustSave(t, s, nil, nil, run(1, 5, 1)...)
			if err := s.Compact(2); err != nil {
				t.Fatal(err)
			}
			wantRange(t, s, 3, 5)
			if _, err := s.Entries(2, 4, math.MaxUint64); !errors.Is(err, raft.ErrCompacted) {
				t.Fatalf("Entries over the pruned prefix: %v, want ErrCompacted", err)
			}
			wantTerms(t, s, 2, 1, 1, 1, 1)
			es, err := s.Entries(3, 6, math.MaxUint64)
			if err != nil || len(es) != 3 || es[0].GetIndex() != 3 || string(es[2].GetData()) != "cmd-5-1" {
				t.Fatalf("Entries(3, 6) = %v, %v", es, err)
			}
		}},
		{"prune_prefix_last_unchanged", func(t *testing.T, s logStore) {
			mustSave(t, s, nil, nil, ent(1, 1, "a"), ent(2, 2, "b"), ent(3, 3, "c"))
			if err := s.Compact(2); err != nil {
				t.Fatal(err)
			}
			wantRange(t, s, 3, 3)
			wantTerms(t, s, 2, 2, 3)
		}},
		{"prune_prefix_then_append", func(t *testing.T, s logStore) {
			mustSave(t, s, nil, nil, run(1, 3, 1)...)
			if err := s.Compact(2); err != nil {
				t.Fatal(err)
			}
			mustSave(t, s, nil, nil, ent(4, 1, "d"))
			wantRange(t, s, 3, 4)
			wantTerms(t, s, 3, 1, 1)
		}},
		{"prune_prefix_get_range", func(t *testing.T, s logStore) {
			mustSave(t, s, nil, nil, run(1, 5, 1)...)
			if err := s.Compact(3); err != nil {
				t.Fatal(err)
			}
			for lo := uint64(1); lo <= 3; lo++ {
				if _, err := s.Entries(lo, 6, math.MaxUint64); !errors.Is(err, raft.ErrCompacted) {
					t.Fatalf("Entries(%d, 6): %v, want ErrCompacted", lo, err)
				}
			}
			es, err := s.Entries(4, 6, math.MaxUint64)
			if err != nil || len(es) != 2 || es[0].GetIndex() != 4 || es[1].GetIndex() != 5 {
				t.Fatalf("Entries(4, 6) = %v, %v", es, err)
			}
		}},
		{"prune_prefix_then_truncate", func(t *testing.T, s logStore) {
			mustSave(t, s, nil, nil, run(1, 5, 1)...)
			if err := s.Compact(2); err != nil {
				t.Fatal(err)
			}
			mustSave(t, s, nil, nil, ent(4, 2, "new"))
			wantRange(t, s, 3, 4)
			wantTerms(t, s, 2, 1, 1, 2)
		}},
		{"prune_prefix_idempotent", func(t *testing.T, s logStore) {
			mustSave(t, s, nil, nil, run(1, 5, 1)...)
			if err := s.Compact(2); err != nil {
				t.Fatal(err)
			}
			if err := s.Compact(2); !errors.Is(err, raft.ErrCompacted) {
				t.Fatalf("second Compact(2): %v, want ErrCompacted", err)
			}
			wantRange(t, s, 3, 5)
		}},
		{"prune_prefix_all_entries", func(t *testing.T, s logStore) {
			mustSave(t, s, nil, nil, ent(1, 1, "a"), ent(2, 1, "b"), ent(3, 2, "c"))
			if err := s.Compact(3); err != nil {
				t.Fatal(err)
			}
			wantRange(t, s, 4, 3)
			wantTerms(t, s, 3, 2)
			if _, err := s.Entries(4, 4, math.MaxUint64); !errors.Is(err, raft.ErrUnavailable) {
				t.Fatalf("Entries on an empty log: %v, want ErrUnavailable", err)
			}
			mustSave(t, s, nil, nil, ent(4, 2, "d"))
			wantRange(t, s, 4, 4)
		}},
		{"prune_prefix_zero_is_noop", func(t *testing.T, s logStore) {
			mustSave(t, s, nil, nil, run(1, 3, 1)...)
			if err := s.Compact(0); !errors.Is(err, raft.ErrCompacted) {
				t.Fatalf("Compact(0): %v, want ErrCompacted", err)
			}
			wantRange(t, s, 1, 3)
		}},
		{"truncate_at_pruned_boundary_clears_remaining", func(t *testing.T, s logStore) {
			mustSave(t, s, nil, nil, run(1, 5, 1)...)
			if err := s.Compact(2); err != nil {
				t.Fatal(err)
			}
			// A conflicting run from the first stored index (and one that
			// starts inside the pruned prefix) replaces everything stored.
			mustSave(t, s, nil, nil, ent(2, 1, "x"), ent(3, 2, "y"))
			wantRange(t, s, 3, 3)
			wantTerms(t, s, 2, 1, 2)
		}},
	}
	for _, kind := range storeKinds {
		for _, tt := range tests {
			t.Run(kind.name+"/"+tt.name, func(t *testing.T) { tt.run(t, kind.open(t)) })
		}
	}
}

// TestBoltStore_Reopen checks that everything survives Close and open.
func TestBoltStore_Reopen(t *testing.T) {
	dir := t.TempDir()
	id := catalog.IDFromString("groups/reopen")
	s, err := openGroupStore(dir, id, boltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mustSave(t, s, hardState(3, 7, 9), nil, run(1, 12, 3)...)
	if _, err := s.CreateSnapshot(8, confState(7, 8, 9), []byte("state at 8")); err != nil {
		t.Fatal(err)
	}
	if err := s.Compact(6); err != nil {
		t.Fatal(err)
	}
	want := snapshotOf(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := s.LastIndex(); !errors.Is(err, errStoreClosed) {
		t.Fatalf("LastIndex after Close: %v, want errStoreClosed", err)
	}

	path := boltStorePath(dir, id)
	if want := filepath.Join(dir, "groups", id.String()+".db"); path != want {
		t.Fatalf("store path %s, want %s", path, want)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("store file %s: %v, %v; want mode 0600", path, fi, err)
	}
	if fi, err := os.Stat(filepath.Dir(path)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("store dir: %v, %v; want mode 0700", fi, err)
	}
	s, err = openGroupStore(dir, id, boltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := openGroupStore(dir, id, boltOptions{lockTimeout: 50 * time.Millisecond}); !errors.Is(err, errStoreInUse) {
		t.Fatalf("second open of an open store: %v, want errStoreInUse", err)
	}
	hs, cs, err := s.InitialState()
	if err != nil || !proto.Equal(hs, hardState(3, 7, 9)) || !proto.Equal(cs, raftpb.EnsureConfState(confState(7, 8, 9))) {
		t.Fatalf("InitialState after reopen: %v, %v, %v", hs, cs, err)
	}
	wantRange(t, s, 7, 12)
	wantTerms(t, s, 6, 3, 3, 3, 3, 3, 3, 3)
	if got := snapshotOf(t, s); !proto.Equal(got, want) {
		t.Fatalf("snapshot after reopen: %v, want %v", got, want)
	}
}

func snapshotOf(t *testing.T, s logStore) *raftpb.Snapshot {
	t.Helper()
	snap, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

// TestBoltStore_Bounds checks the calls where MemoryStorage panics: the
// bolt store returns errStoreBounds and changes nothing.
func TestBoltStore_Bounds(t *testing.T) {
	for _, kind := range storeKinds[1:] {
		t.Run(kind.name, func(t *testing.T) { testBounds(t, kind.open(t)) })
	}
}

func testBounds(t *testing.T, s logStore) {
	mustSave(t, s, nil, nil, run(1, 5, 1)...)
	for name, call := range map[string]func() error{
		"entries past last":     func() error { _, err := s.Entries(2, 7, math.MaxUint64); return err },
		"entries lo after hi":   func() error { _, err := s.Entries(4, 3, math.MaxUint64); return err },
		"compact past last":     func() error { return s.Compact(6) },
		"snapshot past last":    func() error { _, err := s.CreateSnapshot(6, nil, nil); return err },
		"append with a gap":     func() error { return s.Save(hardState(9, 9, 9), nil, run(7, 8, 1)) },
		"append not contiguous": func() error { return s.Save(nil, nil, []*raftpb.Entry{ent(6, 1, ""), ent(8, 1, "")}) },
	} {
		if err := call(); !errors.Is(err, errStoreBounds) {
			t.Errorf("%s: %v, want errStoreBounds", name, err)
		}
	}
	wantRange(t, s, 1, 5)
	if hs, _, _ := s.InitialState(); hs != nil {
		t.Fatalf("a refused Save stored its hard state: %v", hs)
	}
}

// TestBoltStore_NewerVersion checks that a file written by a newer build is
// refused with a clear error, and left as it was.
func TestBoltStore_NewerVersion(t *testing.T) {
	path := filepath.Join(t.TempDir(), "g.db")
	s, err := openBoltStore(path, boltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mustSave(t, s, nil, nil, run(1, 2, 1)...)
	_ = s.Close()
	rawUpdate(t, path, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keyVersion, u64Key(boltFormatVersion+1))
	})
	if _, err := openBoltStore(path, boltOptions{}); !errors.Is(err, errStoreVersion) {
		t.Fatalf("open of a newer file: %v, want errStoreVersion", err)
	}
}

// TestBoltStore_Corrupt damages records behind the store's back: open or
// the read that meets them fails with errStoreCorrupt, never a panic.
func TestBoltStore_Corrupt(t *testing.T) {
	tests := []struct {
		name   string
		damage func(tx *bolt.Tx) error
		read   func(s *boltStore) error // nil: open itself must fail
	}{
		{"no version", func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Delete(keyVersion) }, nil},
		{"short log start", func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(keyLogStart, []byte{1}) }, nil},
		{"hard state garbage", func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(keyHardState, []byte{0xff, 0xff}) }, nil},
		{"snapshot meta garbage", func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(keySnapMeta, []byte{0x0a, 0x05}) }, nil},
		{"gap in entries", func(tx *bolt.Tx) error { return tx.Bucket(bucketEntries).Delete(u64Key(3)) }, nil},
		{"entry before log start", func(tx *bolt.Tx) error {
			return tx.Bucket(bucketMeta).Put(keyLogStart, logStart{index: 2, term: 1}.encode())
		}, nil},
		{"entry garbage", func(tx *bolt.Tx) error {
			return tx.Bucket(bucketEntries).Put(u64Key(3), []byte{0, 0, 0, 0, 0, 0, 0, 1, 0xff})
		},
			func(s *boltStore) error { _, err := s.Entries(1, 5, math.MaxUint64); return err }},
		{"entry under the wrong key", func(tx *bolt.Tx) error {
			rec, _ := encodeEntryRecord(ent(4, 1, "moved"))
			return tx.Bucket(bucketEntries).Put(u64Key(3), rec)
		}, func(s *boltStore) error { _, err := s.Entries(3, 4, math.MaxUint64); return err }},
		{"short entry", func(tx *bolt.Tx) error { return tx.Bucket(bucketEntries).Put(u64Key(2), []byte{1}) },
			func(s *boltStore) error { _, err := s.Term(2); return err }},
		{"snapshot chunk out of order", func(tx *bolt.Tx) error { return tx.Bucket(bucketSnapData).Put(u64Key(5), []byte("x")) },
			func(s *boltStore) error { _, err := s.Snapshot(); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "g.db")
			s, err := openBoltStore(path, boltOptions{NoSync: true})
			if err != nil {
				t.Fatal(err)
			}
			mustSave(t, s, hardState(1, 1, 1), nil, run(1, 4, 1)...)
			if _, err := s.CreateSnapshot(1, confState(1), []byte("s")); err != nil {
				t.Fatal(err)
			}
			_ = s.Close()
			rawUpdate(t, path, tt.damage)
			s, err = openBoltStore(path, boltOptions{NoSync: true})
			if tt.read == nil {
				if !errors.Is(err, errStoreCorrupt) {
					t.Fatalf("open: %v, want errStoreCorrupt", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if err := tt.read(s); !errors.Is(err, errStoreCorrupt) {
				t.Fatalf("read: %v, want errStoreCorrupt", err)
			}
		})
	}
}

func rawUpdate(t *testing.T, path string, f func(*bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(f); err != nil {
		t.Fatal(err)
	}
}
