package groups

import (
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/mosaik-go/mosaik/catalog"
)

// TestWALStore_Reopen checks the data-dir layout, modes and lock, and that
// everything survives Close and open, with and without rewrites.
func TestWALStore_Reopen(t *testing.T) {
	for _, rewriteMin := range []int64{0, 1} {
		dir := t.TempDir()
		id := catalog.IDFromString("groups/reopen")
		opts := walOptions{rewriteMin: rewriteMin}
		s, err := openGroupWAL(dir, id, opts)
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
		path := walFilePath(dir, id)
		if want := filepath.Join(dir, "groups", id.String(), "wal"); path != want {
			t.Fatalf("store path %s, want %s", path, want)
		}
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("store file %s: %v, %v; want mode 0600", path, fi, err)
		}
		for _, d := range []string{filepath.Dir(path), filepath.Dir(filepath.Dir(path))} {
			if fi, err := os.Stat(d); err != nil || fi.Mode().Perm() != 0o700 {
				t.Fatalf("store dir %s: %v, %v; want mode 0700", d, fi, err)
			}
		}
		s, err = openGroupWAL(dir, id, opts)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := openGroupWAL(dir, id, walOptions{lockTimeout: 50 * time.Millisecond}); !errors.Is(err, errStoreInUse) {
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
		_ = s.Close()
	}
}

// A data dir of the previous format (a bbolt file) is refused with a clear
// error naming the file, and left as it was.
func TestWALStore_OldFormatRefused(t *testing.T) {
	dir := t.TempDir()
	id := catalog.IDFromString("groups/old")
	b, err := openGroupStore(dir, id, boltOptions{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	mustSave(t, b, nil, nil, run(1, 2, 1)...)
	_ = b.Close()
	_, err = openGroupWAL(dir, id, walOptions{})
	if !errors.Is(err, errStoreVersion) || !strings.Contains(err.Error(), boltStorePath(dir, id)) {
		t.Fatalf("open over a bbolt store: %v, want errStoreVersion naming the file", err)
	}
	if _, err := os.Stat(boltStorePath(dir, id)); err != nil {
		t.Fatalf("the old file is gone: %v", err)
	}
	// Discarding the state (a lost merge) removes it.
	st, err := dataDirOpener(dir)(id, true)
	if err != nil {
		t.Fatal(err)
	}
	_ = st.Close()
}

// walFixture writes three Saves and closes the store; it returns the wal
// file's path and the offsets where each record starts and the log ends.
func walFixture(t *testing.T) (dir string, offs []int64) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "g")
	s, err := openWALStore(dir, walOptions{NoSync: true, prealloc: 4096})
	if err != nil {
		t.Fatal(err)
	}
	for i := uint64(1); i <= 3; i++ {
		offs = append(offs, s.off)
		mustSave(t, s, hardState(1, 1, i), nil, ent(i, 1, "payload"))
	}
	offs = append(offs, s.off)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, offs
}

// A torn last record (short, bad checksum, or garbage after the log) ends
// the log there: the last Save is lost whole, the rest kept, and the torn
// bytes are zeroed so a later, shorter record cannot be followed by them.
func TestWALStore_TornTail(t *testing.T) {
	tests := []struct {
		name   string
		damage func(b []byte, offs []int64) []byte
		last   uint64
	}{
		{"cut mid-record", func(b []byte, offs []int64) []byte { return b[:offs[2]+12] }, 2},
		{"cut mid-header", func(b []byte, offs []int64) []byte { return b[:offs[2]+3] }, 2},
		{"bad checksum", func(b []byte, offs []int64) []byte { b[offs[3]-1] ^= 0xff; return b }, 2},
		{"zeroed record", func(b []byte, offs []int64) []byte {
			clear(b[offs[2]+4 : offs[3]])
			return b
		}, 2},
		{"huge length", func(b []byte, offs []int64) []byte {
			binary.BigEndian.PutUint32(b[offs[2]:], math.MaxUint32)
			return b
		}, 2},
		{"garbage after the log", func(b []byte, offs []int64) []byte {
			copy(b[offs[3]+100:], "garbage")
			return b
		}, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, offs := walFixture(t)
			path := filepath.Join(dir, walDirName)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, tt.damage(b, offs), 0o600); err != nil {
				t.Fatal(err)
			}
			s, err := openWALStore(dir, walOptions{NoSync: true})
			if err != nil {
				t.Fatal(err)
			}
			wantRange(t, s, 1, tt.last)
			if hs, _, _ := s.InitialState(); hs.GetCommit() != tt.last {
				t.Fatalf("hard state %v after a torn tail, want commit %d", hs, tt.last)
			}
			if s.off != offs[tt.last] {
				t.Fatalf("log ends at %d, want %d", s.off, offs[tt.last])
			}
			after, _ := os.ReadFile(path)
			for k, c := range after[s.off:] {
				if c != 0 {
					t.Fatalf("byte %d after the log is %#x, not zeroed", s.off+int64(k), c)
				}
			}
			mustSave(t, s, nil, nil, ent(tt.last+1, 2, "x"))
			_ = s.Close()
			s, err = openWALStore(dir, walOptions{NoSync: true})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			wantRange(t, s, 1, tt.last+1)
		})
	}
}

// Damage that a torn write cannot explain (a whole record that does not
// decode or does not fit the log, a bad header) fails open with
// errStoreCorrupt, or errStoreVersion for a newer file.
func TestWALStore_Corrupt(t *testing.T) {
	record := func(typ byte, b walBatch) []byte {
		rec, err := appendWalRecord(nil, typ, b)
		if err != nil {
			t.Fatal(err)
		}
		return rec
	}
	tests := []struct {
		name   string
		damage func(b []byte, offs []int64) []byte
		want   error
	}{
		{"bad magic", func(b []byte, _ []int64) []byte { b[0] = 'X'; return b }, errStoreCorrupt},
		{"newer version", func(b []byte, _ []int64) []byte { b[15]++; return b }, errStoreVersion},
		{"version 1", func(b []byte, _ []int64) []byte { b[15] = 1; return b }, errStoreCorrupt},
		{"no header", func(b []byte, _ []int64) []byte { return b[:5] }, errStoreCorrupt},
		{"undecodable payload", func(b []byte, offs []int64) []byte {
			rec := record(recSave, walBatch{})
			rec = append(rec[:walRecHeader], 0xff) // flags no batch has
			binary.BigEndian.PutUint32(rec, 1)
			binary.BigEndian.PutUint32(rec[4:], crc32c(rec[8:]))
			return append(b[:offs[3]], rec...)
		}, errStoreCorrupt},
		{"gap in the log", func(b []byte, offs []int64) []byte {
			return append(b[:offs[3]], record(recSave, walBatch{ents: []*raftpb.Entry{ent(9, 1, "")}})...)
		}, errStoreCorrupt},
		{"second base", func(b []byte, offs []int64) []byte {
			return append(b[:offs[3]], record(recBase, walBatch{start: &logStart{}})...)
		}, errStoreCorrupt},
		{"compaction past the log", func(b []byte, offs []int64) []byte {
			return append(b[:offs[3]], record(recCompact, walBatch{start: &logStart{index: 7, term: 1}})...)
		}, errStoreCorrupt},
		{"compaction with the wrong term", func(b []byte, offs []int64) []byte {
			return append(b[:offs[3]], record(recCompact, walBatch{start: &logStart{index: 2, term: 5}})...)
		}, errStoreCorrupt},
		{"snapshot past the log", func(b []byte, offs []int64) []byte {
			m := &raftpb.SnapshotMetadata{Index: new(uint64(9)), Term: new(uint64(1))}
			return append(b[:offs[3]], record(recSnap, walBatch{snapMeta: m})...)
		}, errStoreCorrupt},
		{"unknown type", func(b []byte, offs []int64) []byte {
			return append(b[:offs[3]], record(9, walBatch{})...)
		}, errStoreCorrupt},
		{"bad checksum with whole records after it", func(b []byte, offs []int64) []byte {
			b[offs[1]+walRecHeader+2] ^= 0xff
			return b
		}, errStoreCorrupt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, offs := walFixture(t)
			path := filepath.Join(dir, walDirName)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, tt.damage(b, offs), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := openWALStore(dir, walOptions{NoSync: true}); !errors.Is(err, tt.want) {
				t.Fatalf("open: %v, want %v", err, tt.want)
			}
		})
	}
}

// Damage inside the log, with whole records after it, is refused instead
// of cut: cutting would drop acknowledged Saves.
func TestWALStore_DamageInsideTheLog(t *testing.T) {
	for _, at := range []string{"payload", "length"} {
		t.Run(at, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "g")
			s, err := openWALStore(dir, walOptions{NoSync: true})
			if err != nil {
				t.Fatal(err)
			}
			var offs []int64
			big := strings.Repeat("x", 512<<10)
			for i := uint64(1); i <= 4; i++ {
				offs = append(offs, s.off)
				mustSave(t, s, hardState(1, 1, i), nil, ent(i, 1, big))
			}
			_ = s.Close()
			path := filepath.Join(dir, walDirName)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			switch at {
			case "payload":
				b[offs[1]+100] ^= 0xff
			case "length":
				binary.BigEndian.PutUint32(b[offs[1]:], math.MaxUint32)
			}
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := openWALStore(dir, walOptions{NoSync: true}); !errors.Is(err, errStoreCorrupt) {
				t.Fatalf("open: %v, want errStoreCorrupt", err)
			}
		})
	}
}

// walTail finds the last whole record of the data past a break whose
// record's length is unreadable; out of search budget, it judges by reach.
func TestWALTail(t *testing.T) {
	rec, err := appendWalRecord(nil, recSave, walBatch{ents: []*raftpb.Entry{ent(1, 1, strings.Repeat("y", 1000))}})
	if err != nil {
		t.Fatal(err)
	}
	tail := append(append(make([]byte, 5), rec...), make([]byte, 100)...)
	if at, _ := walTail(tail, 1<<20); at != 5 {
		t.Fatalf("walTail = %d; want 5", at)
	}
	if at, _ := walTail(tail, 100); at != -1 {
		t.Fatalf("walTail over budget within walTornMax = %d; want -1 (torn)", at)
	}
	far := append(make([]byte, walTornMax), tail...)
	if at, _ := walTail(far, 100); at < 0 {
		t.Fatal("walTail over budget past walTornMax: torn; want damage")
	}
	tail[5+len(rec)-1] ^= 1
	if at, _ := walTail(tail, 1<<20); at != -1 {
		t.Fatalf("walTail of a broken record = %d; want -1", at)
	}
}

// Torn last writes of large records whose last page did not reach the
// disk, or whose first (with the header) did not: cut at open, whatever
// the payload holds, random bytes or (an entry's data, chosen by its
// proposer) a whole record that does not end where the landed bytes end.
func TestWALStore_TornLargeRecords(t *testing.T) {
	random := make([]byte, 24<<20)
	_, _ = crand.Read(random)
	inner, err := appendWalRecord(nil, recSave, walBatch{ents: []*raftpb.Entry{ent(9, 9, "inner")}})
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{
		"repeated":        []byte(strings.Repeat("x", 3<<20)),
		"random":          random,
		"embedded record": append(append([]byte{}, inner...), strings.Repeat("x", 64<<10)...),
	} {
		for _, lost := range []string{"last page", "header page"} {
			t.Run(name+", "+lost, func(t *testing.T) {
				dir := filepath.Join(t.TempDir(), "g")
				s, err := openWALStore(dir, walOptions{NoSync: true})
				if err != nil {
					t.Fatal(err)
				}
				mustSave(t, s, hardState(1, 1, 1), nil, ent(1, 1, "small"))
				at := s.off
				mustSave(t, s, hardState(1, 1, 2), nil, ent(2, 1, string(data)))
				end := s.off
				_ = s.Close()
				path := filepath.Join(dir, walDirName)
				b, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				if lost == "last page" {
					clear(b[end-4096 : end])
				} else {
					clear(b[at : at+4096])
				}
				if err := os.WriteFile(path, b, 0o600); err != nil {
					t.Fatal(err)
				}
				s, err = openWALStore(dir, walOptions{NoSync: true})
				if err != nil {
					t.Fatalf("open after a torn large record: %v", err)
				}
				wantRange(t, s, 1, 1)
				if s.off != at {
					t.Fatalf("log ends at %d, want %d", s.off, at)
				}
				// The torn bytes were zeroed: a shorter record after the
				// end reads back alone.
				mustSave(t, s, hardState(1, 1, 2), nil, ent(2, 1, "again"))
				_ = s.Close()
				if s, err = openWALStore(dir, walOptions{NoSync: true}); err != nil {
					t.Fatal(err)
				}
				defer s.Close()
				wantRange(t, s, 1, 2)
			})
		}
	}
}

// A rewrite left half done (wal.tmp present) is discarded at open: the
// rename had not happened, so wal holds the state.
func TestWALStore_LeftoverRewrite(t *testing.T) {
	dir, _ := walFixture(t)
	tmp := filepath.Join(dir, walTmpName)
	if err := os.WriteFile(tmp, []byte("half a rewrite"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := openWALStore(dir, walOptions{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	wantRange(t, s, 1, 3)
	if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("wal.tmp still there: %v", err)
	}
}

// The file is rewritten once it has grown past twice its size after the
// last rewrite, and the rewrite keeps the state.
func TestWALStore_RewriteBoundsTheFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "g")
	s, err := openWALStore(dir, walOptions{NoSync: true, rewriteMin: 4096, prealloc: 4096})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := uint64(1); i <= 2000; i++ {
		mustSave(t, s, hardState(1, 1, i), nil, ent(i, 1, "some command of a few bytes"))
		if i%100 == 0 {
			if _, err := s.CreateSnapshot(i, confState(1), []byte("state")); err != nil {
				t.Fatal(err)
			}
			if err := s.Compact(i - 50); err != nil {
				t.Fatal(err)
			}
		}
	}
	fi, err := os.Stat(filepath.Join(dir, walDirName))
	if err != nil {
		t.Fatal(err)
	}
	// 2000 records of ~60 bytes would be 120 kB; the live state is 50–150
	// entries.
	if fi.Size() > 40<<10 {
		t.Fatalf("wal file of %d bytes after compactions", fi.Size())
	}
	wantRange(t, s, 1951, 2000)
}

func crc32c(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// Replace leaves the store with only the given hard state and snapshot,
// on disk too; a Replace that fails before its rename leaves the old
// contents whole (the file is never empty in between: a forced epoch
// restarts its log this way).
func TestWALStore_Replace(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "g")
	s, err := openWALStore(dir, walOptions{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	mustSave(t, s, hardState(3, 7, 9), nil, run(1, 12, 3)...)

	// A directory where the rewrite's temporary file goes makes it fail
	// before the rename.
	block := filepath.Join(dir, walTmpName)
	if err := os.MkdirAll(filepath.Join(block, "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	snap := &raftpb.Snapshot{Data: []byte("forced state"), Metadata: &raftpb.SnapshotMetadata{
		Index: new(uint64(10)), Term: new(uint64(3)), ConfState: confState(7),
	}}
	if err := s.Replace(hardState(3, 0, 10), snap); err == nil {
		t.Fatal("Replace with its temporary file blocked succeeded")
	}
	wantRange(t, s, 1, 12)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(block); err != nil {
		t.Fatal(err)
	}
	s, err = openWALStore(dir, walOptions{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	wantRange(t, s, 1, 12)
	if hs, _, _ := s.InitialState(); !proto.Equal(hs, hardState(3, 7, 9)) {
		t.Fatalf("hard state after a failed Replace: %v", hs)
	}

	if err := s.Replace(hardState(3, 0, 10), snap); err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		t.Helper()
		wantRange(t, s, 11, 10)
		hs, cs, err := s.InitialState()
		if err != nil || !proto.Equal(hs, hardState(3, 0, 10)) || !proto.Equal(cs, raftpb.EnsureConfState(confState(7))) {
			t.Fatalf("%s: InitialState %v, %v, %v", when, hs, cs, err)
		}
		got := snapshotOf(t, s)
		if string(got.GetData()) != "forced state" || got.GetMetadata().GetIndex() != 10 || got.GetMetadata().GetTerm() != 3 {
			t.Fatalf("%s: snapshot %v", when, got)
		}
		if term, err := s.Term(10); err != nil || term != 3 {
			t.Fatalf("%s: Term(10) = %d, %v", when, term, err)
		}
	}
	check("after Replace")
	mustSave(t, s, hardState(4, 7, 10), nil, run(11, 12, 4)...)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = openWALStore(dir, walOptions{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	wantRange(t, s, 11, 12)
	wantTerms(t, s, 10, 3, 4, 4)
}
