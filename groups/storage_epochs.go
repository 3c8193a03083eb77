package groups

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"google.golang.org/protobuf/proto"

	"github.com/mosaik-go/mosaik/groups/pb"
)

// The epochs a node left (lost, lostEpoch and lostTerm, parent) are its
// own bookkeeping, not raft state: a node restarted over its data dir
// without them no longer announced the epoch it forced from, so an old
// voter of that epoch that came back later never learned to rejoin, and
// the forced epoch no longer yielded to its parent come back alive. A
// data dir keeps them in a small file beside the WAL, replaced whole
// (written to a temporary file, synced, renamed) after every force and
// wipe.

const (
	epochsFileName = "epochs"
	epochsTmpName  = "epochs.tmp"
	// maxEpochsFile caps what decodeEpochs reads: maxLostKept epochs and
	// three more fields fit in well under it.
	maxEpochsFile = 16 << 10
	// maxLostKept is how many abandoned epochs are kept on disk.
	maxLostKept = 1024
)

// epochKeeper is a log store that also keeps a node's epochs record (the
// data dir's WAL store).
type epochKeeper interface {
	SaveEpochs(b []byte) error
	// Epochs returns the record saved last, or nil if none.
	Epochs() ([]byte, error)
}

// SaveEpochs replaces the store's epochs record with b.
func (s *walStore) SaveEpochs(b []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errStoreClosed
	}
	tmp := filepath.Join(s.dir, epochsTmpName)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("groups: epochs record: %w", err)
	}
	_, err = f.Write(b)
	if err == nil && !s.opts.NoSync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(s.dir, epochsFileName))
	}
	if err == nil && !s.opts.NoSync {
		err = syncDir(s.dir)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("groups: epochs record: %w", err)
	}
	return nil
}

// Epochs implements epochKeeper.
func (s *walStore) Epochs() ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errStoreClosed
	}
	f, err := os.Open(filepath.Join(s.dir, epochsFileName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("groups: epochs record: %w", err)
	}
	defer f.Close()
	b := make([]byte, maxEpochsFile+1)
	n, err := readFull(f, b)
	if err != nil {
		return nil, fmt.Errorf("groups: epochs record: %w", err)
	}
	if n > maxEpochsFile {
		return nil, fmt.Errorf("groups: epochs record over %d bytes", maxEpochsFile)
	}
	return b[:n], nil
}

// readFull reads f into b until b is full or f ends.
func readFull(f *os.File, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := f.Read(b[n:])
		n += m
		if err != nil {
			if errors.Is(err, io.EOF) {
				return n, nil
			}
			return n, err
		}
	}
	return n, nil
}

// encodeEpochs encodes the core's epochs record.
func (c *groupCore) encodeEpochs() ([]byte, error) {
	lost := make([]uint64, 0, len(c.lost))
	for e := range c.lost {
		if e != c.lostEpoch && e != c.parent {
			lost = append(lost, e)
		}
	}
	slices.Sort(lost)
	lost = lost[:min(len(lost), maxLostKept-2)]
	for _, e := range []uint64{c.lostEpoch, c.parent} {
		if e != 0 && c.lost[e] && !slices.Contains(lost, e) {
			lost = append(lost, e)
		}
	}
	return proto.MarshalOptions{Deterministic: true}.Marshal(&pb.CoreEpochs{
		ParentEpoch: c.parent, LostEpoch: c.lostEpoch, LostTerm: c.lostTerm, Lost: lost,
	})
}

// decodeEpochs decodes an epochs record of at most maxEpochsFile bytes.
func decodeEpochs(b []byte) (*pb.CoreEpochs, error) {
	if len(b) > maxEpochsFile {
		return nil, fmt.Errorf("groups: epochs record of %d bytes, over %d", len(b), maxEpochsFile)
	}
	var r pb.CoreEpochs
	if err := proto.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("groups: epochs record: %w", err)
	}
	if len(r.GetLost()) > maxLostKept {
		return nil, fmt.Errorf("groups: epochs record holds %d lost epochs, over %d", len(r.GetLost()), maxLostKept)
	}
	return &r, nil
}

// saveEpochs writes the epochs record where the store keeps one. A failed
// write is logged: the node goes on, and would restart without the record.
func (c *groupCore) saveEpochs() {
	k, ok := c.store.(epochKeeper)
	if !ok {
		return
	}
	b, err := c.encodeEpochs()
	if err == nil {
		err = k.SaveEpochs(b)
	}
	if err != nil {
		c.log.Warn("could not keep the epochs this node left in its data dir", "err", err)
	}
}

// loadEpochs reads the epochs record back at a restart, once c.epoch is
// known. The epoch the node is in is never taken as lost (a crash between
// a force's new log and its record), and a parent counts only for it.
func (c *groupCore) loadEpochs() error {
	k, ok := c.store.(epochKeeper)
	if !ok {
		return nil
	}
	b, err := k.Epochs()
	if err != nil || b == nil {
		return err
	}
	r, err := decodeEpochs(b)
	if err != nil {
		return err
	}
	for _, e := range r.GetLost() {
		if e != 0 && e != c.epoch {
			c.lost[e] = true
		}
	}
	if e := r.GetLostEpoch(); e != 0 && e != c.epoch {
		c.lost[e] = true
		c.lostEpoch, c.lostTerm = e, r.GetLostTerm()
	}
	if p := r.GetParentEpoch(); p != 0 && c.epoch != 0 && c.lost[p] {
		c.parent = p
	}
	return nil
}
