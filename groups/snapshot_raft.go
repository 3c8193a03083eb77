package groups

import (
	"context"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// The glue between raft's MsgSnap and chunked transfer. The log store
// keeps the state machine's real bytes in Snapshot.Data (so a restart
// restores them); only the copy in a MsgSnap on the wire carries a
// descriptor. The sender calls snapshotToWire on the MsgSnap's snapshot
// before sending; the receiver calls snapshotFromWire before stepping it,
// then steps it with the real bytes (and, on failure, drops it: raft's
// leader learns through ReportSnapshot and sends a fresh one).

// snapshotPrealloc bounds what snapshotFromWire allocates before any byte
// has arrived.
const snapshotPrealloc = 64 << 20

// snapshotToWire returns a copy of snap whose Data is the descriptor of
// snap's bytes, and holds those bytes in c at snap's anchor so that the
// receiver (and any other member) can fetch them. snap is not modified.
func snapshotToWire(snap *raftpb.Snapshot, machine string, c *snapshotCache, now time.Time) (*raftpb.Snapshot, snapshotDescriptor, error) {
	meta := snap.GetMetadata()
	a := snapshotAnchor{Index: meta.GetIndex(), Term: meta.GetTerm()}
	if a.Index == 0 {
		return nil, snapshotDescriptor{}, fmt.Errorf("%w: empty snapshot", errSnapshotParams)
	}
	var d snapshotDescriptor
	if h, ok := c.heldHash(a, snap.GetData()); ok {
		d = snapshotDescriptor{Anchor: a, TotalSize: uint64(len(snap.GetData())), Hash: h, Machine: machine}
	} else {
		d = describeSnapshot(a, machine, snap.GetData())
	}
	enc, err := encodeSnapshotDescriptor(d)
	if err != nil {
		return nil, snapshotDescriptor{}, err
	}
	c.putHashed(a, snap.GetData(), d.Hash, now)
	out := &raftpb.Snapshot{Metadata: proto.Clone(meta).(*raftpb.SnapshotMetadata), Data: enc}
	return out, d, nil
}

// snapshotFromWire reads the descriptor in a received MsgSnap's snapshot,
// checks it against the snapshot's metadata and this node's state machine
// tag, fetches the bytes from holders, feeding stage (nil: none) as they
// arrive, and returns a copy of snap with them in Data.
func snapshotFromWire(ctx context.Context, snap *raftpb.Snapshot, machine string, holders []peer.ID,
	fetch snapshotFetchFunc, p snapshotFetchParams, stage RestoreStage,
) (*fetchedSnapshot, error) {
	d, err := decodeSnapshotDescriptor(snap.GetData())
	if err != nil {
		return nil, err
	}
	meta := snap.GetMetadata()
	if d.Anchor != (snapshotAnchor{Index: meta.GetIndex(), Term: meta.GetTerm()}) {
		return nil, fmt.Errorf("%w: anchor %v in a snapshot at %d/%d", errSnapshotDescriptor, d.Anchor, meta.GetIndex(), meta.GetTerm())
	}
	if d.Machine != machine {
		return nil, fmt.Errorf("%w: state machine %q, this group runs %q", errSnapshotDescriptor, d.Machine, machine)
	}
	// Up to a bound the buffer is allocated once; past it, it grows as
	// bytes arrive (fetchSnapshot checks the size against MaxTotal).
	w := newStagedWriter(d.TotalSize, stage)
	defer w.finish(true) // a failed fetch: stop feeding the stage
	if err := fetchSnapshot(ctx, d, holders, fetch, w, p); err != nil {
		return nil, err
	}
	data, staged := w.result()
	return &fetchedSnapshot{
		snap:   &raftpb.Snapshot{Metadata: proto.Clone(meta).(*raftpb.SnapshotMetadata), Data: data},
		hash:   d.Hash,
		staged: staged,
	}, nil
}

// fetchedSnapshot is a snapshot fetched whole, its hash checked.
type fetchedSnapshot struct {
	snap   *raftpb.Snapshot
	hash   [32]byte
	staged *stagedRestore // nil: not staged
	served *servedChunks  // chunks per holder (nil: not counted)
}
