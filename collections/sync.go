package collections

import (
	"time"

	"github.com/mosaik-go/mosaik/groups"
)

// SyncConfig tunes snapshot sync: how a replica that is too far behind the
// log (a late joiner, a lagging or restarted member) fetches the
// collection's state, and how long it keeps a snapshot to serve others.
// Zero fields keep the defaults (DefaultSyncConfig).
//
// How sync works (PROTOCOL.md §20 and §22.1): the leader sends the lagging
// replica a descriptor of its latest snapshot; the replica fetches the
// bytes in chunks from every member holding a snapshot at that log index
// (the leader last), retries a chunk on the next holder when one times out,
// checks the hash, and only then installs it. Reads keep answering from the
// last applied state until the whole snapshot is decoded; mutations
// committed meanwhile stay in the leader's log and are applied after it.
// (A replica whose cluster lost a merge is reset to the empty state first:
// see the package doc.)
//
// Unlike mosaik, a chunk is a byte range of the snapshot, not a number of
// items (mosaik: 2000 items): the snapshot is opaque to the transfer,
// which does not know where one item ends. The default 256 KiB chunk holds
// about 2000 entries of 128 bytes; a Map[uint64, uint64] entry takes about
// 12 bytes, a 64-byte value about 75. Size chunks in bytes from your
// items: ChunkBytes = items per chunk × bytes per encoded item. Also
// unlike mosaik, these settings are per replica and not part of the group
// id, and there is no snapshot request timeout: raft's leader sends a
// fresh snapshot when a transfer fails.
type SyncConfig struct {
	// ChunkBytes is the size of each chunk request, 1 B to 1 MiB.
	// Default 256 KiB.
	ChunkBytes uint32
	// FetchTimeout bounds each chunk request: a holder that does not
	// answer in time is dropped and the chunk goes to another. Default 5 s.
	FetchTimeout time.Duration
	// SnapshotTTL is how long this replica keeps a snapshot for others
	// after taking, installing or last serving it; every chunk served
	// renews it. Default 10 s.
	SnapshotTTL time.Duration
}

// DefaultSyncConfig returns the defaults: 256 KiB chunks, a 5 s fetch
// timeout and a 10 s snapshot TTL (mosaik's timeout and TTL).
func DefaultSyncConfig() SyncConfig {
	p := groups.DefaultSnapshotParams()
	return SyncConfig{ChunkBytes: p.ChunkBytes, FetchTimeout: p.ChunkTimeout, SnapshotTTL: p.TTL}
}

// SnapshotParams returns the groups snapshot parameters s maps onto.
func (s SyncConfig) SnapshotParams() groups.SnapshotParams {
	p := groups.DefaultSnapshotParams()
	if s.ChunkBytes != 0 {
		p.ChunkBytes = s.ChunkBytes
	}
	if s.FetchTimeout != 0 {
		p.ChunkTimeout = s.FetchTimeout
	}
	if s.SnapshotTTL != 0 {
		p.TTL = s.SnapshotTTL
	}
	return p
}

// Validate reports an unusable field (wrapping groups.ErrInvalidParams).
func (s SyncConfig) Validate() error { return s.SnapshotParams().Validate() }

// WithSync sets the collection's snapshot sync settings on this replica
// (default DefaultSyncConfig). It overrides a groups.WithSnapshotParams
// passed with WithGroupOptions; opening fails when s is invalid.
func WithSync(s SyncConfig) Option {
	return func(c *config) { c.sync = &s }
}
