package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/streams"
)

// positionFileVersion is the "version" of the position files this build
// writes and reads.
const positionFileVersion = 1

// maxPositionFile caps a position file; larger files are refused unread.
const maxPositionFile = 1 << 20

// maxPositions bounds the producers a position file remembers. A producer
// without --key has a new identity each run, so the file would otherwise
// grow by one entry per producer run forever; past the bound the entries
// least recently advanced go first.
const maxPositions = 1000

// positionSaveEvery is the least time between two saves of the position
// file: a consumer that prints thousands of datums a second writes the
// file ten times a second, not once per datum.
const positionSaveEvery = 100 * time.Millisecond

// positionFile is the on-disk form of consume --position-file: JSON,
//
//	{"version": 1, "network": "demo", "stream": "ticks",
//	 "positions": [{"producer": "12D3KooW...", "epoch": 8312..., "seq": 1042}]}
//
// where each position is the last datum of that producer (its run, the
// epoch, and its sequence number in the run) printed on stdout.
type positionFile struct {
	Version   int             `json:"version"`
	Network   string          `json:"network"`
	Stream    string          `json:"stream"`
	Positions []positionEntry `json:"positions"`
}

type positionEntry struct {
	Producer string `json:"producer"`
	Epoch    uint64 `json:"epoch"`
	Seq      uint64 `json:"seq"`
}

// errPositionFile marks a position file that cannot be used: the command
// exits 1 with the file's name rather than start over silently.
var errPositionFile = errors.New("position file")

// readPositions reads a position file for the stream of network. A
// missing file is a first start: no positions, no error.
func readPositions(path, network, stream string) ([]streams.Position, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w %s: %v", errPositionFile, path, err)
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > maxPositionFile {
		return nil, fmt.Errorf("%w %s: larger than %d bytes", errPositionFile, path, maxPositionFile)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxPositionFile+1))
	if err != nil {
		return nil, fmt.Errorf("%w %s: %v", errPositionFile, path, err)
	}
	if len(data) > maxPositionFile { // it grew after the Stat
		return nil, fmt.Errorf("%w %s: larger than %d bytes", errPositionFile, path, maxPositionFile)
	}
	ps, err := parsePositions(data, network, stream)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %v (delete it to start from the live stream)", errPositionFile, path, err)
	}
	return ps, nil
}

// parsePositions decodes a position file and checks that it belongs to the
// stream of network.
func parsePositions(data []byte, network, stream string) ([]streams.Position, error) {
	var pf positionFile
	if err := json.Unmarshal(data, &pf); err != nil {
		return nil, fmt.Errorf("not a position file: %v", err)
	}
	if pf.Version != positionFileVersion {
		return nil, fmt.Errorf("version %d, want %d", pf.Version, positionFileVersion)
	}
	if pf.Network != network || pf.Stream != stream {
		return nil, fmt.Errorf("holds the positions of stream %q of network %q, not of %q of %q", pf.Stream, pf.Network, stream, network)
	}
	if len(pf.Positions) > maxPositions {
		return nil, fmt.Errorf("%d positions, at most %d", len(pf.Positions), maxPositions)
	}
	out := make([]streams.Position, 0, len(pf.Positions))
	seen := map[peer.ID]bool{}
	for i, e := range pf.Positions {
		id, err := peer.Decode(e.Producer)
		if err != nil {
			return nil, fmt.Errorf("position %d: producer %q: %v", i, e.Producer, err)
		}
		if e.Epoch == 0 {
			return nil, fmt.Errorf("position %d: epoch 0 (producers' epochs are never 0)", i)
		}
		if seen[id] {
			return nil, fmt.Errorf("position %d: producer %s listed twice", i, e.Producer)
		}
		seen[id] = true
		out = append(out, streams.Position{Producer: id, Epoch: e.Epoch, Seq: e.Seq})
	}
	return out, nil
}

// positionSaver keeps consume's position file: the consume loop calls
// printed after each datum it wrote and flushed to stdout, and a goroutine
// of its own writes the file (temp file, fsync, rename), at most once per
// positionSaveEvery, so a slow disk never holds up the stream. The file
// therefore names only datums already on stdout: a crash repeats at most
// the datums printed after the last save, and loses none.
type positionSaver struct {
	path, network, stream string
	log                   *slog.Logger

	mu    sync.Mutex
	pos   map[peer.ID]savedPosition
	tick  uint64 // orders the entries by their last advance, for the bound
	dirty bool
	err   error // the first failed save; the consume loop returns it

	kick chan struct{} // capacity 1: a save is due
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

type savedPosition struct {
	streams.Position
	touched uint64
}

func newPositionSaver(path, network, stream string, start []streams.Position, log *slog.Logger) *positionSaver {
	s := &positionSaver{path: path, network: network, stream: stream, log: log,
		pos: map[peer.ID]savedPosition{}, kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	for _, p := range start {
		s.pos[p.Producer] = savedPosition{Position: p}
	}
	go s.run()
	return s
}

// printed records that a datum is on stdout and schedules a save. It
// returns the error of a failed save, if any.
func (s *positionSaver) printed(producer peer.ID, epoch, seq uint64) error {
	if epoch == 0 {
		// A producer without replay support names no run: there is
		// nothing to resume from, so nothing to save.
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.err
	}
	s.mu.Lock()
	s.tick++
	s.pos[producer] = savedPosition{Position: streams.Position{Producer: producer, Epoch: epoch, Seq: seq}, touched: s.tick}
	s.dirty = true
	err := s.err
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default: // a save is already due; it will take this position too
	}
	return err
}

func (s *positionSaver) run() {
	defer close(s.done)
	for {
		select {
		case <-s.kick:
		case <-s.stop:
			return
		}
		s.save()
		t := time.NewTimer(positionSaveEvery)
		select {
		case <-t.C:
		case <-s.stop:
			t.Stop()
			return
		}
	}
}

// Close stops the saver and saves what is not saved yet. It returns the
// first save error. Idempotent.
func (s *positionSaver) Close() error {
	s.once.Do(func() {
		close(s.stop)
		<-s.done
		s.save()
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// save writes the file if a position advanced since the last save.
func (s *positionSaver) save() {
	s.mu.Lock()
	if !s.dirty {
		s.mu.Unlock()
		return
	}
	s.dirty = false
	entries := make([]savedPosition, 0, len(s.pos))
	for _, p := range s.pos {
		entries = append(entries, p)
	}
	s.mu.Unlock()
	// Most recently advanced first, so the bound drops the stalest.
	sort.Slice(entries, func(i, j int) bool {
		if entries[i].touched != entries[j].touched {
			return entries[i].touched > entries[j].touched
		}
		return entries[i].Producer < entries[j].Producer
	})
	if len(entries) > maxPositions {
		entries = entries[:maxPositions]
	}
	pf := positionFile{Version: positionFileVersion, Network: s.network, Stream: s.stream, Positions: make([]positionEntry, 0, len(entries))}
	for _, e := range entries {
		pf.Positions = append(pf.Positions, positionEntry{Producer: e.Producer.String(), Epoch: e.Epoch, Seq: e.Seq})
	}
	err := writePositionFile(s.path, pf)
	if err != nil {
		s.mu.Lock()
		if s.err == nil {
			s.err = err
		}
		s.mu.Unlock()
		s.log.Error("saving the position file failed", "file", s.path, "err", err)
	}
}

// writePositionFile replaces path atomically: a reader, or the next run
// after a crash at any point, finds either the old file or the new one.
// The fsync before the rename makes the new content durable before it is
// visible, so a power loss too leaves one whole file.
func writePositionFile(path string, pf positionFile) error {
	b, err := json.MarshalIndent(pf, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("%w %s: %v", errPositionFile, path, err)
	}
	_, err = tmp.Write(b)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("%w %s: %v", errPositionFile, path, err)
	}
	return nil
}

// formatPositions is the log form of positions: producer:epoch:seq, comma
// separated.
func formatPositions(ps []streams.Position) string {
	var b []byte
	for i, p := range ps {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, p.Producer.ShortString()...)
		b = append(b, ':')
		b = strconv.AppendUint(b, p.Epoch, 10)
		b = append(b, ':')
		b = strconv.AppendUint(b, p.Seq, 10)
	}
	return string(b)
}
