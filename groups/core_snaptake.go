package groups

import (
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.etcd.io/raft/v3/tracker"
	"google.golang.org/protobuf/proto"
	"lukechampine.com/blake3"
)

// Taking snapshots of the state machine, storing them with the log, and
// gating raft's view of them while a configuration change owes one.

func (c *groupCore) maybeSnapshot() {
	if c.applied == c.snapIndex || (c.applied-c.snapIndex < c.p.SnapshotEntries && !c.snapNow) {
		return
	}
	if c.now < c.snapRetryAt {
		return // the last one failed: not again at once
	}
	if c.snapBuilding != 0 {
		return // one at a time; the trigger still holds when it is stored
	}
	c.snapNow = false
	if ls := c.lastSnap; ls != nil && ls.index >= c.smAt && ls.epoch == c.epoch {
		// Nothing but configuration changes since the last snapshot: its
		// bytes are the state at c.applied too.
		c.storeSnapshot(c.applied, c.conf, ls.data, ls.hash, nil)
		return
	}
	if write := c.sm.capture(snapshotHeadRoom); write != nil {
		c.buildSnapshotAsync(write)
		return
	}
	data, err := c.buildSnapshotData()
	c.storeSnapshot(c.applied, c.conf, data, nil, err)
}

// maybeQuietSnapshot runs on ticks: once commands stopped arriving
// (Params.SnapshotQuiet) after a burst that changed the state since the
// last snapshot, it takes one. The snapshot a configuration change owes a
// joining member then reuses those bytes (maybeSnapshot) instead of every
// member writing the whole state at once while the new member waits.
func (c *groupCore) maybeQuietSnapshot() {
	q := c.p.SnapshotQuiet
	if q <= 0 || c.snapBuilding != 0 || c.smAt <= c.snapIndex || c.now-c.smTick < int64(c.p.ticks(q)) {
		return
	}
	if c.applied-c.snapIndex < max(1, c.p.SnapshotEntries/4) {
		return
	}
	c.snapNow = true
	c.maybeSnapshot()
}

// buildSnapshotAsync writes the snapshot of the state captured now on
// another goroutine; the group goes on committing and applying, and
// stores it (storeSnapshot) once written.
func (c *groupCore) buildSnapshotAsync(write func() ([]byte, error)) {
	idx, conf, epoch, gen := c.applied, proto.CloneOf(c.conf), c.epoch, c.raftGen
	c.snapBuilding = idx
	c.snapWG.Add(1)
	go func() {
		defer c.snapWG.Done()
		b, err := write()
		var data []byte
		var hash [32]byte
		if err == nil {
			data = frameSnapshotData(epoch, b, snapshotHeadRoom)
			hash = blake3.Sum256(data) // for the cache, off the group goroutine
		}
		select {
		case c.calls <- func() {
			c.snapBuilding = 0
			// A state discarded, forced or replaced by an installed
			// snapshot while this one was written: it is stale.
			if gen == c.raftGen && idx > c.snapIndex {
				c.storeSnapshot(idx, conf, data, &hash, err)
			}
			c.maybeSnapshot() // one may have become due meanwhile
		}:
		case <-c.quit:
		case <-c.snap.ctx.Done():
			// The group ended on its own (run's exit cancels it before
			// waiting for this goroutine): with calls full, the send above
			// would block that exit for good.
		}
	}()
}

// storeSnapshot stores the snapshot data of the state at index idx with
// configuration conf, holds it for others, and compacts the log.
func (c *groupCore) storeSnapshot(idx uint64, conf *raftpb.ConfState, data []byte, hash *[32]byte, err error) {
	if err != nil {
		c.log.Warn("state machine snapshot failed", "err", err)
		c.snapshotFailed()
		return
	}
	snap, err := c.store.CreateSnapshot(idx, conf, data)
	if err != nil {
		c.log.Warn("creating a snapshot failed", "index", idx, "err", err)
		c.snapshotFailed()
		return
	}
	c.snapRetryAt = 0
	if c.snap.net != nil {
		// Members snapshot at the same indexes after a configuration
		// change (confApplied), so the new member's snapshot has holders
		// other than the leader.
		a := snapshotAnchor{Index: idx, Term: snap.GetMetadata().GetTerm()}
		if hash != nil {
			c.snap.cache.putHashed(a, data, *hash, time.Now())
		} else {
			c.snap.cache.put(a, data, time.Now())
		}
	}
	c.snapIndex = idx
	c.lastSnap = &storedSnap{index: idx, epoch: snapshotDataEpoch(data), data: data, hash: hash}
	if idx > c.p.CompactionWindow {
		to := idx - c.p.CompactionWindow
		if first, _ := c.store.FirstIndex(); to > first {
			if err := c.store.Compact(to); err != nil {
				c.log.Warn("compaction failed", "to", to, "err", err)
			}
		}
	}
	if idx >= c.confSnapAt {
		c.probeForSnapshot()
	}
}

// snapshotFailed schedules another try an election timeout later. The
// snapshot index stays that of the last one stored: moving it (as this
// did) opened the gate after a configuration change, and raft sent the
// new member the old snapshot, which lacks it and which it refuses, until
// SnapshotEntries more entries made another one due. A snapshot owed to a
// configuration change stays owed.
func (c *groupCore) snapshotFailed() {
	c.snapRetryAt = c.now + int64(c.p.ticks(c.p.ElectionTimeout))
	if c.confSnapAt > c.snapIndex {
		c.snapNow = true
	}
}

// probeForSnapshot makes a leader retry, at once, the members that wait
// for a snapshot: while none was available (gatedStorage) raft gave up
// sending them one until their next heartbeat response. A heartbeat
// response, stepped locally for a bonded member behind the log's start,
// is raft's own trigger for that retry; it carries no read-index context,
// so it acknowledges no read.
func (c *groupCore) probeForSnapshot() {
	if c.state != raft.StateLeader {
		return
	}
	first, err := c.store.FirstIndex()
	if err != nil {
		return
	}
	st := c.rn.Status()
	for id, pr := range st.Progress {
		p, ok := c.byRaft[id]
		if id == c.selfID || !ok || !c.peers[p].up || pr.State != tracker.StateProbe || pr.Next >= first {
			continue
		}
		_ = c.rn.Step(&raftpb.Message{
			Type: raftpb.MessageType_MsgHeartbeatResp.Enum(), From: new(id), To: new(c.selfID), Term: new(st.HardState.GetTerm()),
		})
	}
}

// gatedStorage is the log store as raft sees it: while a snapshot is owed
// after a configuration change (confSnapAt), it reports no snapshot
// available rather than the stored one, whose configuration lacks the new
// member. raft then retries later (probeForSnapshot).
type gatedStorage struct{ c *groupCore }

func (g gatedStorage) InitialState() (*raftpb.HardState, *raftpb.ConfState, error) {
	return g.c.store.InitialState()
}

func (g gatedStorage) Entries(lo, hi, maxSize uint64) ([]*raftpb.Entry, error) {
	return g.c.store.Entries(lo, hi, maxSize)
}

func (g gatedStorage) Term(i uint64) (uint64, error) { return g.c.store.Term(i) }
func (g gatedStorage) LastIndex() (uint64, error)    { return g.c.store.LastIndex() }
func (g gatedStorage) FirstIndex() (uint64, error)   { return g.c.store.FirstIndex() }

func (g gatedStorage) Snapshot() (*raftpb.Snapshot, error) {
	if g.c.snapIndex < g.c.confSnapAt {
		return nil, raft.ErrSnapshotTemporarilyUnavailable
	}
	return g.c.store.Snapshot()
}
