package groups

import (
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

// memStore is the default logStore: etcd raft's MemoryStorage. Nothing
// survives the process (mosaik's behaviour); a data dir store replaces it.
type memStore struct {
	*raft.MemoryStorage
}

func newMemStore() *memStore { return &memStore{raft.NewMemoryStorage()} }

func (m *memStore) Save(hs *raftpb.HardState, snap *raftpb.Snapshot, ents []*raftpb.Entry) error {
	if !raft.IsEmptyHardState(hs) {
		if err := m.SetHardState(hs); err != nil {
			return err
		}
	}
	if snap != nil && !raft.IsEmptySnap(snap) {
		if err := m.ApplySnapshot(snap); err != nil {
			return err
		}
	}
	if len(ents) > 0 {
		return m.Append(ents)
	}
	return nil
}

func (m *memStore) Close() error { return nil }

var _ logStore = (*memStore)(nil)
