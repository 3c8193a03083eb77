package groups

import (
	"fmt"
	"time"
)

// Params are a group's consensus timings. Heartbeat, HeartbeatJitter and
// MissedHeartbeats are part of the group id (all members must agree); the
// rest are per node, so members may differ (for example to bias
// leadership).
type Params struct {
	// Heartbeat is the bond heartbeat period and the raft leader's
	// heartbeat period (in the group id). mosaik: 500 ms.
	Heartbeat time.Duration
	// HeartbeatJitter is subtracted at random from each bond heartbeat
	// (in the group id). mosaik: 150 ms.
	HeartbeatJitter time.Duration
	// MissedHeartbeats silent heartbeats end a bond (in the group id).
	// mosaik: 10.
	MissedHeartbeats int
	// Tick is the raft tick; every other raft timing is a whole number of
	// ticks. 100 ms.
	Tick time.Duration
	// ElectionTimeout is the raft election timeout; etcd raft randomises
	// it in [ElectionTimeout, 2×ElectionTimeout). mosaik: 2 s.
	ElectionTimeout time.Duration
	// BootstrapDelay is how long a fresh node waits to hear of an existing
	// cluster before it bootstraps a singleton one. mosaik: 3 s.
	BootstrapDelay time.Duration
	// ForwardTimeout bounds a follower's wait for the leader's ack of
	// forwarded commands. mosaik: 2 s.
	ForwardTimeout time.Duration
	// QueryTimeout bounds the wait for a strong query's read index, and,
	// once it has one, the wait to apply up to it while no leader is known
	// (a node cut off after the confirmation).
	// mosaik: 2 s.
	QueryTimeout time.Duration
	// ReluctantFactor multiplies the election timeout and bootstrap delay
	// of a node joined with WithReluctant(). mosaik: 3.
	ReluctantFactor int
	// RemoveAfter is the membership hysteresis: a member whose bond has
	// been down this long is removed from the raft configuration (a
	// learner known to hold no log, after one Heartbeat: it has nothing to
	// resume). It must exceed the bond failure time (Heartbeat ×
	// MissedHeartbeats).
	RemoveAfter time.Duration
	// LeaveTimeout bounds the graceful leave of a member whose group ends
	// on its node (its last handle closed, or its Service closed with the
	// log in memory): a leader hands leadership over, and the member has
	// the leader remove it at once; past the timeout it goes anyway and is removed after
	// RemoveAfter. 0 disables the graceful leave. 2 s.
	LeaveTimeout time.Duration
	// SnapshotEntries applied entries trigger a snapshot of the state
	// machine.
	SnapshotEntries uint64
	// CompactionWindow entries are kept behind a snapshot, so a member
	// that lags by less replays the log instead of taking a snapshot.
	CompactionWindow uint64
	// SnapshotQuiet, when positive, also snapshots the state once no
	// command has been applied for this long after at least a quarter of
	// SnapshotEntries were applied since the last snapshot (the end of a
	// burst of writes). A member that joins later is then sent that
	// snapshot at once, instead of waiting while every member writes a
	// fresh one for it; the quarter bounds the extra snapshots to four
	// times what SnapshotEntries alone takes. 0 disables it. 1 s.
	SnapshotQuiet time.Duration
}

// DefaultParams are mosaik's defaults (§7 of its inventory) plus raft and
// compaction settings.
func DefaultParams() Params {
	return Params{
		Heartbeat:        500 * time.Millisecond,
		HeartbeatJitter:  150 * time.Millisecond,
		MissedHeartbeats: 10,
		Tick:             100 * time.Millisecond,
		ElectionTimeout:  2 * time.Second,
		BootstrapDelay:   3 * time.Second,
		ForwardTimeout:   2 * time.Second,
		QueryTimeout:     2 * time.Second,
		ReluctantFactor:  3,
		RemoveAfter:      15 * time.Second,
		LeaveTimeout:     2 * time.Second,
		SnapshotEntries:  10000,
		CompactionWindow: 5000,
		SnapshotQuiet:    time.Second,
	}
}

// TestParams is a fast profile for tests: elections in a few hundred
// milliseconds, small snapshots.
func TestParams() Params {
	return Params{
		Heartbeat:        60 * time.Millisecond,
		HeartbeatJitter:  15 * time.Millisecond,
		MissedHeartbeats: 10,
		Tick:             20 * time.Millisecond,
		ElectionTimeout:  400 * time.Millisecond,
		BootstrapDelay:   400 * time.Millisecond,
		ForwardTimeout:   time.Second,
		QueryTimeout:     time.Second,
		ReluctantFactor:  3,
		RemoveAfter:      1500 * time.Millisecond,
		LeaveTimeout:     time.Second,
		SnapshotEntries:  200,
		CompactionWindow: 50,
	}
}

// Validate reports the first unusable field; it does not change p.
func (p Params) Validate() error {
	switch {
	case p.Tick <= 0:
		return fmt.Errorf("%w: Tick must be positive", ErrInvalidParams)
	case p.Heartbeat < p.Tick:
		return fmt.Errorf("%w: Heartbeat must be at least one Tick", ErrInvalidParams)
	case p.HeartbeatJitter <= 0 || p.HeartbeatJitter >= p.Heartbeat:
		return fmt.Errorf("%w: HeartbeatJitter must be in (0, Heartbeat)", ErrInvalidParams)
	case p.MissedHeartbeats < 1:
		return fmt.Errorf("%w: MissedHeartbeats must be at least 1", ErrInvalidParams)
	case p.ElectionTimeout <= p.Heartbeat:
		return fmt.Errorf("%w: ElectionTimeout must exceed Heartbeat", ErrInvalidParams)
	case p.BootstrapDelay < 0:
		return fmt.Errorf("%w: BootstrapDelay must not be negative", ErrInvalidParams)
	case p.ForwardTimeout <= 0 || p.QueryTimeout <= 0:
		return fmt.Errorf("%w: ForwardTimeout and QueryTimeout must be positive", ErrInvalidParams)
	case p.ReluctantFactor < 1:
		return fmt.Errorf("%w: ReluctantFactor must be at least 1", ErrInvalidParams)
	case p.RemoveAfter <= p.Heartbeat*time.Duration(p.MissedHeartbeats):
		return fmt.Errorf("%w: RemoveAfter must exceed the bond failure time", ErrInvalidParams)
	case p.LeaveTimeout < 0:
		return fmt.Errorf("%w: LeaveTimeout must not be negative", ErrInvalidParams)
	case p.SnapshotEntries < 1:
		return fmt.Errorf("%w: SnapshotEntries must be at least 1", ErrInvalidParams)
	case p.SnapshotQuiet < 0:
		return fmt.Errorf("%w: SnapshotQuiet must not be negative", ErrInvalidParams)
	}
	return nil
}

func (p Params) ticks(d time.Duration) int {
	n := int(d / p.Tick)
	if n < 1 {
		n = 1
	}
	return n
}
