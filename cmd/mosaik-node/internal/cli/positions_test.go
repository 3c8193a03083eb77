package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	flag "github.com/spf13/pflag"

	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/streams"
)

func newPeerID(t *testing.T) peer.ID {
	t.Helper()
	_, pub, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestPositions_SaveAndResume saves positions through the saver and reads
// them back: the file holds the last datum of each producer, with epoch
// and sequence number, and nothing else.
func TestPositions_SaveAndResume(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ticks.pos")
	a, b := newPeerID(t), newPeerID(t)
	if ps, err := readPositions(path, "net", "ticks"); err != nil || ps != nil {
		t.Fatalf("missing file: %v, %v; want a first start", ps, err)
	}
	s := newPositionSaver(path, "net", "ticks", []streams.Position{{Producer: b, Epoch: 9, Seq: 40}}, testutil.Logger())
	for seq := uint64(1); seq <= 500; seq++ {
		if err := s.printed(a, 7, seq); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.printed(newPeerID(t), 0, 3); err != nil { // a producer without epoch: nothing to resume, not saved
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil { // idempotent
		t.Fatal(err)
	}
	got, err := readPositions(path, "net", "ticks")
	if err != nil {
		t.Fatal(err)
	}
	want := map[peer.ID]streams.Position{a: {Producer: a, Epoch: 7, Seq: 500}, b: {Producer: b, Epoch: 9, Seq: 40}}
	if len(got) != 2 || got[0] != want[got[0].Producer] || got[1] != want[got[1].Producer] || got[0].Producer != a {
		t.Fatalf("read back %+v, want %+v (the most recently advanced first)", got, want)
	}
	left, _ := filepath.Glob(path + ".tmp*")
	if len(left) != 0 {
		t.Fatalf("temp files left behind: %v", left)
	}
}

// TestPositions_SavesWhileRunning checks that a position reaches the file
// within the save interval while the consumer keeps running, not only at
// exit: that bounds what a SIGKILL repeats.
func TestPositions_SavesWhileRunning(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.pos")
	a := newPeerID(t)
	s := newPositionSaver(path, "n", "s", nil, testutil.Logger())
	defer s.Close()
	saves := 0
	var last uint64
	deadline := time.Now().Add(testutil.Scale(2 * time.Second))
	for seq := uint64(1); time.Now().Before(deadline); seq++ {
		if err := s.printed(a, 1, seq); err != nil {
			t.Fatal(err)
		}
		if ps, err := readPositions(path, "n", "s"); err == nil && len(ps) == 1 && ps[0].Seq != last {
			saves++
			last = ps[0].Seq
			if last > seq {
				t.Fatalf("file names seq %d before it was printed (at %d)", last, seq)
			}
		}
		time.Sleep(time.Millisecond) // a datum a millisecond: the pace is the scenario
	}
	// Two seconds at most one save per 100 ms: about 20, at least a few
	// on a loaded machine, and never one per datum (about 2000).
	if saves < 3 || saves > 25 {
		t.Fatalf("%d saves in 2 s, want between 3 and 25 (one per %v)", saves, positionSaveEvery)
	}
}

// TestPositions_BadFiles checks that every unusable position file is an
// error naming the file, never a panic and never a silent start over.
func TestPositions_BadFiles(t *testing.T) {
	dir := t.TempDir()
	id := newPeerID(t).String()
	doc := func(v any) string { b, _ := json.Marshal(v); return string(b) }
	for name, content := range map[string]string{
		"garbage":      "not json",
		"truncated":    `{"version":1,"network":"n","stream":"s","positions":[{"producer":"` + id,
		"version":      doc(positionFile{Version: 2, Network: "n", Stream: "s"}),
		"other-stream": doc(positionFile{Version: 1, Network: "n", Stream: "other"}),
		"other-net":    doc(positionFile{Version: 1, Network: "m", Stream: "s"}),
		"bad-peer":     doc(positionFile{Version: 1, Network: "n", Stream: "s", Positions: []positionEntry{{Producer: "nope", Epoch: 1}}}),
		"epoch-zero":   doc(positionFile{Version: 1, Network: "n", Stream: "s", Positions: []positionEntry{{Producer: id, Epoch: 0}}}),
		"twice":        doc(positionFile{Version: 1, Network: "n", Stream: "s", Positions: []positionEntry{{Producer: id, Epoch: 1}, {Producer: id, Epoch: 2}}}),
		"huge":         strings.Repeat(" ", maxPositionFile+1),
	} {
		path := filepath.Join(dir, name+".pos")
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if ps, err := readPositions(path, "n", "s"); err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: got %v, %v; want an error naming %s", name, ps, err, path)
		}
	}
	if _, err := readPositions(dir, "n", "s"); err == nil || !strings.Contains(err.Error(), dir) {
		t.Errorf("a directory: got %v, want an error naming it", err)
	}
}

// TestMain_CorruptPositionFileExitsTwo runs consume with a corrupt
// position file: exit 2 and one line naming the file, before the node
// starts.
func TestMain_CorruptPositionFileExitsTwo(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.pos")
	if err := os.WriteFile(path, []byte("{\"version\":1,"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := mainOut(t, nil, "consume", "s", "--network", "x", "--listen", "/ip4/127.0.0.1/tcp/0", "--position-file", path)
	if code != 2 || !strings.Contains(errOut, "position file "+path) || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
		t.Fatalf("exit %d, stderr %q; want 2 and one line naming %s", code, errOut, path)
	}
}

// TestReplayFlags checks produce's window flags: off by default, bounds
// that need --replay, sizes with binary suffixes.
func TestReplayFlags(t *testing.T) {
	parse := func(args ...string) (*replayFlags, *flag.FlagSet) {
		t.Helper()
		fs := flag.NewFlagSet("produce", flag.ContinueOnError)
		r := &replayFlags{}
		r.register(fs)
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		return r, fs
	}
	if r, fs := parse(); r.datums != 0 || int64(r.bytes) != 64<<20 || r.age != time.Minute {
		t.Fatalf("defaults %+v", r)
	} else if o, err := r.options(fs); o != nil || err != nil {
		t.Fatalf("no --replay: %v, %v; want no window", o, err)
	}
	for _, args := range [][]string{{"--replay", "100000", "--replay-bytes", "256MiB", "--replay-age", "30s"}, {"--replay", "10", "--replay-bytes", "0", "--replay-age", "0s"}} {
		r, fs := parse(args...)
		if o, err := r.options(fs); o == nil || err != nil {
			t.Fatalf("%q: %v, %v", args, o, err)
		}
	}
	for _, args := range [][]string{{"--replay-bytes", "1MiB"}, {"--replay-age", "5s"}, {"--replay", "-1"}, {"--replay", "5", "--replay-age", "-1s"}} {
		r, fs := parse(args...)
		if _, err := r.options(fs); err == nil {
			t.Errorf("%q: accepted", args)
		}
	}
	var s sizeFlag
	for in, want := range map[string]int64{"1048576": 1 << 20, "512KiB": 512 << 10, "64MiB": 64 << 20, "1GiB": 1 << 30, "100B": 100} {
		if err := s.Set(in); err != nil || int64(s) != want {
			t.Errorf("Set(%q) = %d, %v; want %d", in, s, err, want)
		}
	}
	for _, bad := range []string{"", "MiB", "-1", "1TB", "1.5MiB", "99999999999GiB"} {
		if err := s.Set(bad); err == nil {
			t.Errorf("Set(%q) accepted", bad)
		}
	}
	if s = sizeFlag(3 << 20); s.String() != "3MiB" {
		t.Errorf("3 MiB prints as %q", s.String())
	}
}

// FuzzParsePositions feeds arbitrary documents to the position file
// parser: it must never panic, and what it accepts has valid producers.
func FuzzParsePositions(f *testing.F) {
	f.Add([]byte(`{"version":1,"network":"n","stream":"s","positions":[{"producer":"12D3KooWGzh8cJ5cN5YdNnWMvbVQ4eJrPTHuwLu2gb6ecTqGRXuW","epoch":1,"seq":2}]}`))
	f.Add([]byte(`{"version":1,"network":"n","stream":"s","positions":null}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ps, err := parsePositions(data, "n", "s")
		if err != nil {
			return
		}
		for _, p := range ps {
			if p.Producer.Validate() != nil || p.Epoch == 0 {
				t.Fatalf("accepted %+v", p)
			}
		}
	})
}
