package groups

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/mosaik-go/mosaik/internal/testutil"
)

// The tests of durability run on every store on disk (bolt and the WAL).

// crashChildEnv names the store a re-executed test binary writes to until
// it is killed.
const crashChildEnv = "MOSAIK_GROUPS_CRASH_CHILD"

// TestBoltStore_CrashMidWrite runs a writer in a child process (this test
// binary again), kills it with SIGKILL while it saves, and reopens the
// store: every save the child reported done is there, and the file holds
// a whole number of saves (entries and hard state of one Save together).
func TestBoltStore_CrashMidWrite(t *testing.T) {
	if path := os.Getenv(crashChildEnv); path != "" {
		crashChild(os.Getenv(crashKindEnv), path)
		return
	}
	for _, kind := range syncedKinds {
		t.Run(kind.name, func(t *testing.T) { testCrashMidWrite(t, kind.name, kind.open) })
	}
}

// crashKindEnv names the kind of store (in syncedKinds) of the child.
const crashKindEnv = "MOSAIK_GROUPS_CRASH_KIND"

// syncedKinds open the durable stores with fsync at a path.
var syncedKinds = []struct {
	name string
	open func(path string) (logStore, error)
}{
	{"bolt", func(path string) (logStore, error) {
		s, err := openBoltStore(path+".db", boltOptions{})
		if err != nil {
			return nil, err
		}
		return s, nil
	}},
	{"wal", func(path string) (logStore, error) {
		// Small steps, so the child also dies while the file grows.
		s, err := openWALStore(path, walOptions{prealloc: 8 << 10})
		if err != nil {
			return nil, err
		}
		return s, nil
	}},
}

func testCrashMidWrite(t *testing.T, kind string, open func(string) (logStore, error)) {
	path := filepath.Join(t.TempDir(), "g")
	cmd := exec.Command(os.Args[0], "-test.run=^TestBoltStore_CrashMidWrite$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+path, crashKindEnv+"="+kind)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The child prints the index of each save once Save returned; the pipe
	// is read until enough are done, then the child dies mid-stream.
	acked := uint64(0)
	sc := bufio.NewScanner(out)
	for acked < 40 && sc.Scan() {
		if n, err := strconv.ParseUint(sc.Text(), 10, 64); err == nil {
			acked = n
		}
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if acked < 40 {
		t.Fatalf("child stopped after %d saves: %v", acked, sc.Err())
	}

	s, err := open(path)
	if err != nil {
		t.Fatalf("reopen after SIGKILL: %v", err)
	}
	defer s.Close()
	first, last := mustFirstLast(t, s)
	if first != 1 || last < acked {
		t.Fatalf("log %d..%d after the child acknowledged %d saves", first, last, acked)
	}
	hs, _, err := s.InitialState()
	if err != nil || hs.GetCommit() != last {
		t.Fatalf("hard state %v (%v) does not match last entry %d: a Save was split", hs, err, last)
	}
	es, err := s.Entries(1, last+1, math.MaxUint64)
	if err != nil || uint64(len(es)) != last {
		t.Fatalf("Entries(1, %d): %d entries, %v", last+1, len(es), err)
	}
	for _, e := range es {
		if want := fmt.Sprintf("crash-%d", e.GetIndex()); string(e.GetData()) != want {
			t.Fatalf("entry %d holds %q, want %q", e.GetIndex(), e.GetData(), want)
		}
	}
}

// crashChild saves one entry and the matching hard state per transaction
// (with fsync, the default) and reports each, until it is killed.
func crashChild(kind, path string) {
	var s logStore
	err := fmt.Errorf("unknown kind %q", kind)
	for _, k := range syncedKinds {
		if k.name == kind {
			s, err = k.open(path)
		}
	}
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(2)
	}
	w := bufio.NewWriter(os.Stdout)
	deadline := time.Now().Add(testutil.Scale(time.Minute))
	for i := uint64(1); time.Now().Before(deadline); i++ {
		payload := make([]byte, 0, 4096)
		payload = append(payload, fmt.Sprintf("crash-%d", i)...)
		if err := s.Save(hardState(1, 1, i), nil, []*raftpb.Entry{ent(i, 1, string(payload))}); err != nil {
			fmt.Println("save:", err)
			os.Exit(2)
		}
		fmt.Fprintln(w, i)
		_ = w.Flush()
	}
	// Not killed within a minute: the parent is gone; never Close cleanly.
	os.Exit(3)
}

// A hard state that moves only the commit index is not written on its own
// (no fsync for it, as etcd's raft.MustSync): the next write carries it,
// and so does Close. A term or vote is written at once. crashImage copies
// the file as a crash would leave it: what committed transactions wrote.
func TestBoltStore_CommitOnlyHardStateDeferred(t *testing.T) {
	for _, kind := range durableKinds {
		t.Run(kind.name, func(t *testing.T) { testCommitOnlyDeferred(t, kind.open, kind.file) })
	}
}

func testCommitOnlyDeferred(t *testing.T, open func(string) (logStore, error), file func(string) string) {
	dir := t.TempDir()
	path := filepath.Join(dir, "g")
	crashImage := func(t *testing.T) *raftpb.HardState {
		t.Helper()
		b, err := os.ReadFile(file(path))
		if err != nil {
			t.Fatal(err)
		}
		img := filepath.Join(t.TempDir(), "g")
		if err := os.MkdirAll(filepath.Dir(file(img)), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file(img), b, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := open(img)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		hs, _, err := s.InitialState()
		if err != nil {
			t.Fatal(err)
		}
		return hs
	}
	s, err := open(path)
	if err != nil {
		t.Fatal(err)
	}
	mustSave(t, s, hardState(1, 1, 0), nil, run(1, 4, 1)...)
	mustSave(t, s, hardState(1, 1, 3), nil)
	if hs, _, _ := s.InitialState(); hs.GetCommit() != 3 {
		t.Fatalf("the store reports commit %d, want 3", hs.GetCommit())
	}
	if hs := crashImage(t); hs.GetCommit() != 0 {
		t.Fatalf("a commit-only hard state was written on its own: commit %d on disk", hs.GetCommit())
	}
	// A snapshot never lands ahead of the commit index that covers it.
	if _, err := s.CreateSnapshot(3, confState(1), []byte("s")); err != nil {
		t.Fatal(err)
	}
	if hs := crashImage(t); hs.GetCommit() != 3 {
		t.Fatalf("commit %d on disk after a snapshot at 3", hs.GetCommit())
	}
	mustSave(t, s, hardState(1, 1, 4), nil)
	if err := s.Compact(2); err != nil {
		t.Fatal(err)
	}
	if hs := crashImage(t); hs.GetCommit() != 4 {
		t.Fatalf("commit %d on disk after a compaction, want 4", hs.GetCommit())
	}
	mustSave(t, s, hardState(2, 2, 4), nil) // a new term and vote: at once
	if hs := crashImage(t); hs.GetTerm() != 2 || hs.GetVote() != 2 {
		t.Fatalf("term %d vote %d on disk, want 2 and 2", hs.GetTerm(), hs.GetVote())
	}
	mustSave(t, s, hardState(2, 2, 4), nil, ent(5, 2, "e5"))
	mustSave(t, s, hardState(2, 2, 5), nil)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if hs, _, _ := s.InitialState(); hs.GetCommit() != 5 {
		t.Fatalf("commit %d after Close and reopen, want 5", hs.GetCommit())
	}
}
