package groups

import (
	"fmt"
	"time"
)

// SnapshotParams tune snapshot transfer on this node (PROTOCOL.md §20): how
// it fetches a snapshot it needs (a late joiner, or a member that lags
// behind the leader's compacted log) and how long it keeps one it can
// serve. They are per node and not part of the group id: chunk requests
// name their size, and any holder serves any size up to 1 MiB, so members
// may differ.
//
// Unlike mosaik, whose chunks are a number of items (2000), a chunk here is
// a byte range of the state machine's snapshot: groups does not know what
// an item is. A collections.SyncConfig maps onto these.
type SnapshotParams struct {
	// ChunkBytes is the size of each chunk request, 1 B to 1 MiB.
	// Default 256 KiB.
	ChunkBytes uint32
	// ChunkTimeout bounds each chunk request (mosaik's fetch_timeout): a
	// holder that does not answer in time is dropped for the rest of the
	// transfer and its chunks go to the next holder. Default 5 s.
	ChunkTimeout time.Duration
	// TTL is how long a held snapshot lives after it was taken, installed
	// or last served (mosaik's snapshot_ttl): every chunk served renews
	// it, so a transfer in progress keeps it and an abandoned one frees
	// it. Default 10 s.
	TTL time.Duration
	// Window is how many chunks may be in flight at once. A chunk that
	// arrives before its turn waits for it: in its place in the snapshot's
	// memory, where requests may run up to 4 Windows ahead of the next
	// chunk to write, or, when it could not be read in place, in memory
	// of its own, where they stay within one Window. Default 8.
	Window int
	// PerHolder is how many of those one holder serves at once. Default 4.
	PerHolder int
	// MaxTotal refuses a snapshot announced larger than this many bytes.
	// Default 1 GiB.
	MaxTotal uint64
	// MaxHeld is how many snapshots (anchors) this node holds at once for
	// others; holding one more evicts the one closest to expiry. Default 4.
	MaxHeld int
}

// DefaultSnapshotParams are the defaults documented on each field.
func DefaultSnapshotParams() SnapshotParams {
	f := defaultSnapshotFetchParams()
	return SnapshotParams{
		ChunkBytes:   f.ChunkBytes,
		ChunkTimeout: f.ChunkTimeout,
		TTL:          defaultSnapshotTTL,
		Window:       f.Window,
		PerHolder:    f.PerHolder,
		MaxTotal:     f.MaxTotal,
		MaxHeld:      defaultSnapshotAnchors,
	}
}

// Validate reports the first unusable field (wrapping ErrInvalidParams);
// it does not change p.
func (p SnapshotParams) Validate() error {
	switch {
	case p.ChunkBytes == 0 || p.ChunkBytes > snapshotMaxChunk:
		return fmt.Errorf("%w: snapshot ChunkBytes must be in [1, %d]", ErrInvalidParams, snapshotMaxChunk)
	case p.ChunkTimeout <= 0:
		return fmt.Errorf("%w: snapshot ChunkTimeout must be positive", ErrInvalidParams)
	case p.TTL <= 0:
		return fmt.Errorf("%w: snapshot TTL must be positive", ErrInvalidParams)
	case p.Window < 1 || p.PerHolder < 1:
		return fmt.Errorf("%w: snapshot Window and PerHolder must be at least 1", ErrInvalidParams)
	case p.MaxTotal == 0:
		return fmt.Errorf("%w: snapshot MaxTotal must be positive", ErrInvalidParams)
	case p.MaxHeld < 1:
		return fmt.Errorf("%w: snapshot MaxHeld must be at least 1", ErrInvalidParams)
	}
	return nil
}

func (p SnapshotParams) fetch() snapshotFetchParams {
	return snapshotFetchParams{
		ChunkTimeout: p.ChunkTimeout,
		ChunkBytes:   p.ChunkBytes,
		Window:       p.Window,
		PerHolder:    p.PerHolder,
		MaxTotal:     p.MaxTotal,
	}
}

// WithSnapshotParams sets this node's snapshot transfer parameters for the
// group (default DefaultSnapshotParams()); Join fails when p is invalid.
// Not part of the group id.
func WithSnapshotParams(p SnapshotParams) Option { return func(c *config) { c.snapshot = p } }
