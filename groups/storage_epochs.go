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
// (written to a temporary file, synced, renamed) before every force and
// wipe touches the log.

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

// epochsRecord is the core's epochs record as it stands.
func (c *groupCore) epochsRecord() *pb.CoreEpochs {
	lost := make([]uint64, 0, len(c.lost))
	for e := range c.lost {
		if e != c.lostEpoch && e != c.parent {
			lost = append(lost, e)
		}
	}
	// Room for the two below and for the epoch a force adds.
	slices.Sort(lost)
	lost = lost[:min(len(lost), maxLostKept-3)]
	for _, e := range []uint64{c.lostEpoch, c.parent} {
		if e != 0 && c.lost[e] && !slices.Contains(lost, e) {
			lost = append(lost, e)
		}
	}
	r := &pb.CoreEpochs{LostEpoch: c.lostEpoch, LostTerm: c.lostTerm, Lost: lost}
	if c.parent != 0 {
		r.ParentEpoch, r.ForcedEpoch = c.parent, c.epoch
	}
	return r
}

// encodeEpochs encodes an epochs record.
func encodeEpochs(r *pb.CoreEpochs) ([]byte, error) {
	return proto.MarshalOptions{Deterministic: true}.Marshal(r)
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

// writeEpochs writes r where the store keeps an epochs record (a data
// dir); with a memory store it does nothing.
func (c *groupCore) writeEpochs(r *pb.CoreEpochs) error {
	k, ok := c.store.(epochKeeper)
	if !ok {
		return nil
	}
	b, err := encodeEpochs(r)
	if err == nil {
		err = k.SaveEpochs(b)
	}
	return err
}

// saveEpochs writes the core's epochs record as it stands.
func (c *groupCore) saveEpochs() error { return c.writeEpochs(c.epochsRecord()) }

// loadEpochs reads the epochs record back at a restart, once c.epoch is
// known. The record is written before the log changes (a force, a wipe),
// so after a crash between the two it may name the epoch the node is still
// in: that epoch is never taken as lost, and the parent is restored only
// for the epoch it belongs to (forced_epoch).
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
	if p := r.GetParentEpoch(); p != 0 && c.epoch != 0 && r.GetForcedEpoch() == c.epoch && c.lost[p] {
		c.parent = p
	}
	return nil
}
