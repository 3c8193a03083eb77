package groups

import (
	"encoding/binary"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.opentelemetry.io/otel/metric"
	"lukechampine.com/blake3"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/policy"
)

// This file is the seam between the three layers of the package:
//
//   - the consensus core (group.go and friends): one goroutine per group
//     owning an etcd raft RawNode, its log store and the state machine;
//   - the bond layer (bond*.go, service.go): authenticated libp2p streams to
//     the other members, heartbeats, tickets, the catalog entry's group list;
//   - the log store (storage*.go): memory, or a write-ahead log under a
//     data dir (storage_wal*.go).
//
// The core sees the bond layer only through transport, and the bond layer
// sees the core only through inbox. Tests of the core run on an in-memory
// network that implements the same two interfaces.

// Role is what a member does in its group.
type Role uint8

const (
	// RoleWriter members may become voters and propose commands.
	RoleWriter Role = 1
	// RoleReader members are raft learners: they replicate and apply, never
	// vote or campaign, and forward commands like any follower.
	RoleReader Role = 2
)

func (r Role) String() string {
	switch r {
	case RoleWriter:
		return "writer"
	case RoleReader:
		return "reader"
	default:
		return "unknown"
	}
}

// Code is a bond refusal or close code (the numbers follow mosaik, see
// PROTOCOL.md).
type Code uint32

// Frame kinds on a bond. The bond layer owns 0x01–0x1f (handshake, ping,
// departure, entry updates); the core owns 0x20–0x3f and the bond layer
// carries those opaquely.
const (
	firstCoreFrame byte = 0x20
	lastCoreFrame  byte = 0x3f
)

// spec is what a joined group tells the bond layer.
type spec struct {
	// ID is the group id (see DeriveID).
	ID catalog.ID
	// Key is blake3 of the group's secret; bond proofs derive from it and
	// the secret itself never leaves the node.
	Key [32]byte
	// Role is this node's role in the group.
	Role Role
	// Tickets are checked against every bonded peer's catalog entry (all
	// must pass), at handshake, on entry updates and at ticket expiry.
	Tickets []policy.TicketValidator
	// Heartbeat, HeartbeatJitter and MissedHeartbeats time the bond's
	// liveness check; all three are part of the group id.
	Heartbeat        time.Duration
	HeartbeatJitter  time.Duration
	MissedHeartbeats int
}

// transport is the bond layer as the core sees it, for one group.
type transport interface {
	// Send queues one core frame (kind in [0x20, 0x3f]) for a bonded peer
	// and never blocks. It returns false when there is no bond to the peer
	// or its queue is full: the frame was dropped (and counted), and for
	// raft messages the core reports the peer unreachable.
	Send(to peer.ID, kind byte, body []byte) bool
	// SendPriority is Send for a small frame whose order with respect to
	// the frames sent before it does not matter: it is written before
	// them, and between the pieces of a large frame being written, so
	// that raft's heartbeats and votes do not wait behind a large append.
	// Frames sent with SendPriority keep their order among themselves.
	SendPriority(to peer.ID, kind byte, body []byte) bool
	// Close withdraws this node from the group: departures are sent, bonds
	// closed and the group removed from the local catalog entry. The inbox
	// gets no calls after Close returns.
	Close() error
}

// inbox is the core as the bond layer sees it. Every method must return
// promptly and never block on the group goroutine: a full inbox drops the
// frame and counts it (raft retransmits).
type inbox interface {
	// Deliver hands over a core frame from a bonded peer.
	Deliver(from peer.ID, kind byte, body []byte)
	// BondUp and BondDown report bond changes, in order for each peer.
	BondUp(p peer.ID, role Role)
	BondDown(p peer.ID, code Code)
}

// attacher is the bond layer of a Service: it bonds one group's members
// once attached, and stops at close.
type attacher interface {
	attach(s spec, in inbox) (transport, error)
	close() error
	// frameLimit is the largest frame a bond reads (BondParams.
	// MaxFrameSize): what a batch of commands must fit in (batchLimit).
	frameLimit() int
}

// logStore is a group's raft log, hard state and snapshots: a raft.Storage
// that the core's goroutine also writes, following etcd raft's Ready order.
// Only the group goroutine calls it.
type logStore interface {
	raft.Storage
	// Save persists one Ready's hard state (if not empty), snapshot (if
	// not empty) and entries, in that order, before any message of that
	// Ready is sent. Entries overwrite any conflicting suffix. The types
	// are those of raft.Ready (raftpb v3.7 messages are pointers: a nil or
	// empty hard state or snapshot is skipped).
	Save(hs *raftpb.HardState, snap *raftpb.Snapshot, ents []*raftpb.Entry) error
	// CreateSnapshot records a snapshot at applied index i with the state
	// machine's data; Compact then drops entries up to compactTo.
	CreateSnapshot(i uint64, cs *raftpb.ConfState, data []byte) (*raftpb.Snapshot, error)
	Compact(compactTo uint64) error
	// Close releases the store (a no-op for memory).
	Close() error
}

// replacer is a log store that replaces its whole contents in one step
// (both of ours): a crash leaves the old contents or the new ones.
type replacer interface {
	// Replace leaves the store holding hard state hs and snapshot snap,
	// and no entries.
	Replace(hs *raftpb.HardState, snap *raftpb.Snapshot) error
}

// errNoNode is returned for a raft node id of zero or a collision.
var errNoNode = errors.New("groups: peer has no usable raft node id")

// raftID maps a peer to its raft node id: the first 8 bytes (big endian)
// of blake3("mosaik-raft-node" ‖ peer id bytes); zero is never used.
func raftID(p peer.ID) uint64 {
	h := blake3.New(32, nil)
	_, _ = h.Write([]byte("mosaik-raft-node"))
	_, _ = h.Write([]byte(p))
	var sum [32]byte
	h.Sum(sum[:0])
	id := binary.BigEndian.Uint64(sum[:8])
	if id == 0 {
		id = 1
	}
	return id
}

// Service runs the groups of one node on one network. The bond layer's
// NewService builds it over a libp2p host; the core's tests build it over
// an in-memory network. Each layer keeps its state in its own field and
// touches the other's only through the interfaces above.
//
// Safe for concurrent use.
type Service struct {
	network catalog.ID
	self    peer.ID
	log     *slog.Logger
	meter   metric.MeterProvider

	net  attacher  // the bond layer
	core coreState // joined groups (the core)
	// joinDefaults are applied by every Join before its own options
	// (WithJoinDefaults).
	joinDefaults []Option

	closeOnce sync.Once
	closeErr  error
}

// Leave gracefully leaves every joined group whose log is in memory, in
// parallel, each within its Params.LeaveTimeout, as closing its last
// handle would; the groups keep running until closed. Close does it too;
// a node calls Leave before it departs from the catalog, since the
// departure ends the bonds a leave needs.
func (s *Service) Leave() { s.core.leaveAll() }

// Close closes every group still open (as if each handle were closed,
// except that a group with a data dir keeps its membership instead of
// leaving gracefully; the leaves run in parallel), then the bond layer.
// Idempotent and safe to call concurrently; it returns once every
// goroutine of the service has ended: the leaves run in parallel, so it
// waits at most one Params.LeaveTimeout for them, plus the time each
// group's goroutine needs to stop.
func (s *Service) Close() error {
	s.closeOnce.Do(func() {
		s.closeErr = errors.Join(s.core.closeAll(), s.net.close())
	})
	return s.closeErr
}
