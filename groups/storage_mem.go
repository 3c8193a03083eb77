package groups

import (
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

// memStore is the default logStore: etcd raft's MemoryStorage. Nothing
// survives the process (mosaik's behaviour); a data dir store replaces it.
//
// The snapshot's data is kept beside the MemoryStorage, which holds the
// snapshot's metadata only: MemoryStorage copies the whole snapshot on
// CreateSnapshot, ApplySnapshot and every Snapshot call, megabytes each
// time for a large state (the walStore shares the bytes the same way).
// Snapshot data is never modified once made, so one slice is shared by
// the store, the snapshot cache and every snapshot returned.
type memStore struct {
	*raft.MemoryStorage
	data []byte // the latest snapshot's data
}

func newMemStore() *memStore { return &memStore{MemoryStorage: raft.NewMemoryStorage()} }

func (m *memStore) Save(hs *raftpb.HardState, snap *raftpb.Snapshot, ents []*raftpb.Entry) error {
	if !raft.IsEmptyHardState(hs) {
		if err := m.SetHardState(hs); err != nil {
			return err
		}
	}
	if snap != nil && !raft.IsEmptySnap(snap) {
		if err := m.ApplySnapshot(&raftpb.Snapshot{Metadata: snap.GetMetadata()}); err != nil {
			return err
		}
		m.data = snap.GetData()
	}
	if len(ents) > 0 {
		return m.Append(ents)
	}
	return nil
}

// CreateSnapshot implements logStore, keeping data beside the
// MemoryStorage.
func (m *memStore) CreateSnapshot(i uint64, cs *raftpb.ConfState, data []byte) (*raftpb.Snapshot, error) {
	snap, err := m.MemoryStorage.CreateSnapshot(i, cs, nil)
	if err != nil {
		return nil, err
	}
	m.data = data
	snap.Data = data
	return snap, nil
}

// Snapshot implements raft.Storage: MemoryStorage's snapshot with the
// data kept beside it.
func (m *memStore) Snapshot() (*raftpb.Snapshot, error) {
	snap, err := m.MemoryStorage.Snapshot()
	if err != nil {
		return nil, err
	}
	if !raft.IsEmptySnap(snap) {
		snap.Data = m.data
	}
	return snap, nil
}

// Replace implements replacer: a new MemoryStorage holding only hs and
// snap.
func (m *memStore) Replace(hs *raftpb.HardState, snap *raftpb.Snapshot) error {
	m.MemoryStorage, m.data = raft.NewMemoryStorage(), nil
	return m.Save(hs, snap, nil)
}

func (m *memStore) Close() error { return nil }

var _ logStore = (*memStore)(nil)
