package groups

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/groups/pb"
)

// Core frame kinds (see contract.go for the range).
const (
	kindRaft      byte = 0x20
	kindStatus    byte = 0x21
	kindForward   byte = 0x22
	kindForwardOK byte = 0x23
	kindNotLeader byte = 0x24
)

// maxCoreFrame caps a decoded core frame (a MsgSnap carries a whole
// snapshot only over a bond layer without snapshot transfer, as in some
// tests; the bond layer's own cap is lower).
const maxCoreFrame = 64 << 20

// inboxSize bounds the frames waiting for the group goroutine, and
// maxInboxBytes their bytes (4096 frames of the bond layer's 4 MiB cap
// would be 16 GiB); beyond either, frames are dropped and counted (raft
// retransmits).
const (
	inboxSize     = 4096
	maxInboxBytes = 128 << 20
)

// maxInflight is raft's MaxInflightMsgs: the appends with entries a
// leader has in flight to one follower before it waits for an ack. It is
// small on purpose: while the window is full, new proposals accumulate in
// the leader's log and the next ack releases them as one append, so the
// append and ack frames, the follower's Ready and the commit update are
// shared by every command that arrived in the meantime (the batch grows
// with the load). A wide window (etcd's 256) sends an append per proposal
// and the cost per command stays that of a lone one. Catch-up is not
// slowed: each append carries up to MaxSizePerMsg of entries. Measured
// on the bench's 3 voters (quick groups rows, load ≈ 7 on 2 cores, two
// alternating runs each, puts/s at 8 and 64 clients): 2 gave 27k/14k and
// 31k/20k, 4 gave 20k/13k and 31k/19k, 8 gave 16k/11k and 17k/16k.
const maxInflight = 2

// callQueue is how many handle calls (Execute, Feed, Query) may wait for
// the group goroutine. Queued, a caller goes straight on to wait for its
// result; with an unbuffered channel each caller parked on the hand-off,
// and the goroutine's receive then made it runnable only for it to park
// again on its result: one more scheduling round trip per call, and a
// burst of runnable callers on the group goroutine's P. A caller still
// learns of the group's end while it waits (the handles select on done).
const callQueue = 1024

// machine is the typed state machine as the core sees it.
type machine interface {
	apply(actx ApplyContext, cmds [][]byte) // may panic: the core recovers
	snapshot() ([]byte, error)
	restore(data []byte) error
	// capture returns a function that writes, on any goroutine, the
	// state as of this call after room zero bytes (as snapshotAfter), or
	// nil when the machine cannot be captured (no SnapshotCapturer).
	capture(room int) func() ([]byte, error)
	// stage returns a stage that restores a snapshot as it arrives, or
	// nil (no StagedRestorer).
	stage() RestoreStage
}

type frame struct {
	from peer.ID
	kind byte
	body []byte
}

type bondEvent struct {
	p    peer.ID
	up   bool
	role Role
	code Code
}

type peerState struct {
	id     uint64
	role   Role
	up     bool
	downAt int64 // tick of the last BondDown
	status *pb.CoreStatus
	// blank: the last status this peer sent said it holds no log (epoch
	// 0, no entries). Kept when the bond ends (status is then nil), so the
	// leader can tell a learner that never got the log (manageMembers).
	// A learner fetching its first snapshot is not blank: the leader's
	// descriptor gave it the cluster's epoch.
	blank bool
	// blankAt: the tick its status last turned blank (see halfGone).
	blankAt int64
}

// groupCore is one group on this node. Everything below the "goroutine
// state" comment belongs to run's goroutine (STYLE rule 17); other
// goroutines reach it through frames, bond events and calls.
type groupCore struct {
	id     catalog.ID
	self   peer.ID
	selfID uint64
	cfg    config
	p      Params
	log    *slog.Logger
	met    *metrics
	sm     machine
	tr     transport
	saved  hardVote // the term and vote on disk (core_ready.go)

	frames  chan frame
	bondMu  sync.Mutex
	bondQ   []bondEvent
	bondSig chan struct{}
	calls   chan func()
	quit    chan struct{}
	done    chan struct{}
	ticker  *time.Ticker
	tick    <-chan time.Time

	dropped    atomic.Uint64
	inboxBytes atomic.Int64 // bytes of the frames queued in frames
	view       viewState

	// goroutine state
	now       int64 // ticks since start
	initial   []byte
	store     logStore
	rn        *raft.RawNode
	conf      *raftpb.ConfState
	epoch     uint64
	lost      map[uint64]bool
	lostEpoch uint64
	lostTerm  uint64 // the raft term this node was at when it abandoned lostEpoch
	parent    uint64 // epoch this cluster was forced from (0: none)
	// epochPending: append the epoch entry once this node leads the
	// cluster it just created.
	epochPending bool
	// resumed: restarted over a stored log; cleared by maybeResume.
	resumed bool
	// voteFenced: this node's log started empty (a memory store, a new
	// data dir, a wipe) and it has not yet committed an entry of its
	// leader's term. Its raft id is its peer's, so it may still be a voter
	// that acknowledged entries it no longer holds: it grants no vote and
	// seeks none until it holds everything committed (core_fence.go).
	voteFenced bool
	freshSince int64
	applied    uint64
	snapIndex  uint64
	snapNow    bool // take a snapshot after this Ready
	// snapBuilding is the index of the snapshot being written on another
	// goroutine (SnapshotCapturer), 0 when none; snapWG waits for it.
	snapBuilding uint64
	snapWG       sync.WaitGroup
	// confSnapAt is the index of the last configuration change after
	// which a snapshot is owed (confApplied). Until one at or after it is
	// stored, raft is told no snapshot is available (gatedStorage): the
	// stored one lacks the new member, which would refuse it.
	confSnapAt uint64
	// snapRetryAt: after a failed snapshot none is tried before this tick
	// (snapIndex stays where the last stored one is, so the gate above
	// stays closed and raft never sends a new member the old snapshot).
	snapRetryAt int64
	// lastSnap is the last snapshot this core stored, and smAt the index
	// of the last entry that changed the state machine (a command run).
	// While smAt <= lastSnap.index the state is the one lastSnap holds,
	// so a snapshot owed at a later index (after a configuration change,
	// which the state machine never sees) is those same bytes: they are
	// reused instead of written again by every member at once. Both log
	// stores keep the last snapshot's data in memory anyway, so holding it
	// here costs nothing more.
	lastSnap *storedSnap
	smAt     uint64
	// smTick is the tick at which smAt last moved (maybeQuietSnapshot).
	smTick int64
	// raftGen counts the RawNodes this core started (resetRaftOn): a
	// snapshot captured under one is not stored under the next.
	raftGen       uint64
	gaugedApplied uint64
	lead          uint64
	state         raft.StateType
	peers         map[peer.ID]*peerState
	byRaft        map[uint64]peer.ID
	nextSeq       uint64
	props         []pendingProp // batches for the next proposal (flushProposals)
	propBytes     int
	assign        map[uint64]*feedCall // local batches awaiting an index, by seq
	fwdAssign     map[[2]uint64]fwdTo  // forwarded batches awaiting an index
	forwards      map[uint64]*feedCall // batches forwarded to the leader, by seq
	// execs: executes awaiting apply, by index. Two calls may wait on one
	// index: a leader deposed before commit gave it to one, the next
	// leader to another; the entry applied there answers both.
	execs      map[uint64][]*execCall
	recent     map[uint64][2]uint64 // (origin, seq) of recently applied entries
	reads      map[uint64]*readCall // strong queries, by read id
	readSeq    uint64
	ccAt       int64 // tick of the last conf change proposal (0: none)
	lastLead   uint64
	fatal      error // set by a goroutine step that must end the group
	failed     error
	discarded  uint64
	absent     map[uint64]int64 // conf members with no known peer: first tick noticed
	noLeader   int64            // tick since which no leader is known
	deferredAt int64            // tick since which a forced epoch waits for a higher log (0: none)
	pace       pace             // the leader's yardstick for caught-up learners
	snap       snapXfer         // chunked snapshot transfer (core_snapshot.go)
	leaving    *leaveState      // this node's graceful leave (core_leave.go)
	leavers    map[uint64]bool  // the leader's leaving members: Left owed
	leaveAt    int64            // tick of the last removal proposed for a leaver
}

type fwdTo struct {
	p peer.ID
	n uint32
}

func newGroupCore(s *Service, id catalog.ID, cfg config, sm machine) (*groupCore, error) {
	c := &groupCore{
		id:        id,
		self:      s.self,
		selfID:    raftID(s.self),
		cfg:       cfg,
		p:         cfg.params,
		log:       s.logger().With("group", id.Short()),
		met:       newMetrics(s.meter, s.network, id),
		sm:        sm,
		frames:    make(chan frame, inboxSize),
		bondSig:   make(chan struct{}, 1),
		calls:     make(chan func(), callQueue),
		quit:      make(chan struct{}),
		done:      make(chan struct{}),
		lost:      map[uint64]bool{},
		peers:     map[peer.ID]*peerState{},
		byRaft:    map[uint64]peer.ID{},
		assign:    map[uint64]*feedCall{},
		fwdAssign: map[[2]uint64]fwdTo{},
		forwards:  map[uint64]*feedCall{},
		execs:     map[uint64][]*execCall{},
		recent:    map[uint64][2]uint64{},
		reads:     map[uint64]*readCall{},
		absent:    map[uint64]int64{},
	}
	c.view.init()
	sn, _ := s.net.(snapshotNet)
	c.snap.init(sn, cfg.snapshot)
	// Request ids start at random so a restarted node never reuses one.
	c.nextSeq = rand.Uint64() >> 1
	init, err := sm.snapshot()
	if err != nil {
		return nil, fmt.Errorf("groups: snapshot of the fresh state machine: %w", err)
	}
	c.initial = init
	if cfg.openStore == nil {
		err = c.resetRaft()
	} else {
		err = c.recover()
	}
	if err != nil {
		if c.store != nil {
			_ = c.store.Close()
		}
		return nil, err
	}
	if cfg.tick != nil {
		c.tick = cfg.tick
	} else {
		c.ticker = time.NewTicker(c.p.Tick)
		c.tick = c.ticker.C
	}
	return c, nil
}

// start attaches to the bond layer and runs the loop.
func (c *groupCore) start(tr transport) {
	c.tr = tr
	c.met.add(c.met.active, 1)
	go c.run()
}

// stop ends the loop and waits for it, after a graceful leave of at most
// leave (core_leave.go; 0: none). Idempotent.
func (c *groupCore) stop(leave time.Duration) {
	c.leave(leave)
	select {
	case <-c.quit:
	default:
		close(c.quit)
	}
	<-c.done
}

func (c *groupCore) resetRaft() error {
	if c.store != nil {
		_ = c.store.Close()
		c.store = nil
	}
	if c.cfg.openStore == nil {
		c.store = newMemStore()
	} else {
		st, err := c.cfg.openStore(c.id, true)
		if err != nil {
			return fmt.Errorf("groups: opening an empty log store: %w", err)
		}
		c.store = st
	}
	c.conf = &raftpb.ConfState{}
	c.applied, c.snapIndex = 0, 0
	c.freshSince = c.now
	c.voteFenced = true
	return c.resetRaftOn(0)
}

// resetRaftOn starts a new RawNode over c.store, whose state machine is at
// applied.
func (c *groupCore) resetRaftOn(applied uint64) error {
	if c.state != raft.StateFollower {
		// A wiped or forced leader (or candidate) restarts as a follower
		// without a SoftState from raft: log the change onSoftState would.
		c.log.Info("role changed", "from", c.state.String(), "to", raft.StateFollower.String(), "leader", "", "epoch", c.epoch)
	}
	c.lead, c.state = 0, raft.StateFollower
	c.deferredAt = 0
	// A conf change proposed before a wipe or force is gone with the old
	// raft node (it would hold manageMembers back for two election
	// timeouts), and members noticed absent belong to the old
	// configuration.
	c.ccAt = 0
	clear(c.absent)
	c.raftGen++
	c.confSnapAt = 0
	c.lastSnap = nil // the state machine is replaced or restored
	et := c.p.ticks(c.p.ElectionTimeout)
	if c.cfg.reluctant {
		et *= c.p.ReluctantFactor
	}
	ht := c.p.ticks(c.p.Heartbeat)
	if et <= ht {
		et = ht + 1
	}
	rn, err := raft.NewRawNode(&raft.Config{
		ID:                        c.selfID,
		ElectionTick:              et,
		HeartbeatTick:             ht,
		Storage:                   gatedStorage{c},
		Applied:                   applied,
		MaxSizePerMsg:             maxSizePerMsg(c.cfg.maxBatch),
		MaxInflightMsgs:           maxInflight,
		MaxUncommittedEntriesSize: 64 << 20,
		CheckQuorum:               true,
		PreVote:                   true,
		DisableProposalForwarding: true,
		StepDownOnRemoval:         true,
		ReadOnlyOption:            raft.ReadOnlySafe,
		Logger:                    raftLogger{c.log},
	})
	if err != nil {
		return fmt.Errorf("groups: raft node: %w", err)
	}
	c.rn = rn
	return nil
}

// Deliver implements inbox: it never blocks.
func (c *groupCore) Deliver(from peer.ID, kind byte, body []byte) {
	if len(body) > maxCoreFrame {
		c.drop()
		return
	}
	n := int64(len(body))
	if c.inboxBytes.Add(n) > maxInboxBytes {
		c.inboxBytes.Add(-n)
		c.drop()
		return
	}
	select {
	case c.frames <- frame{from, kind, body}:
	default:
		c.inboxBytes.Add(-n)
		c.drop()
	}
}

func (c *groupCore) drop() {
	c.dropped.Add(1)
	c.met.add(c.met.dropped, 1)
}

// BondUp implements inbox. Bond events are queued without bound (one per
// bond change) so none is lost.
func (c *groupCore) BondUp(p peer.ID, role Role) { c.queueBond(bondEvent{p: p, up: true, role: role}) }

// BondDown implements inbox.
func (c *groupCore) BondDown(p peer.ID, code Code) { c.queueBond(bondEvent{p: p, code: code}) }

func (c *groupCore) queueBond(ev bondEvent) {
	c.bondMu.Lock()
	c.bondQ = append(c.bondQ, ev)
	c.bondMu.Unlock()
	select {
	case c.bondSig <- struct{}{}:
	default:
	}
}

func (c *groupCore) run() {
	defer close(c.done)
	defer func() {
		c.snap.stop()
		c.snapWG.Wait()
		if c.ticker != nil {
			c.ticker.Stop()
		}
		if c.failed != nil {
			c.failAll(c.failed)
		} else {
			c.failAll(ErrTerminated)
		}
		if c.tr != nil {
			_ = c.tr.Close()
		}
		_ = c.store.Close()
		c.met.add(c.met.active, -1)
		c.publish()
		c.view.terminate(c.failed)
	}()
	for {
		select {
		case <-c.quit:
			return
		case <-c.tick:
			c.onTick()
		case f := <-c.frames:
			c.onFrame(f)
		case <-c.bondSig:
			c.takeBonds()
		case fn := <-c.calls:
			fn()
		}
		c.drainQueued()
		c.leaveTurn()
		if err := c.safeReady(); err != nil {
			c.failed = err
			c.log.Error("group ended on this node", "err", err)
			return
		}
		c.publish()
		c.recordGauges()
	}
}

// maxDrain bounds how many queued calls and frames one turn of the loop
// takes before handling raft's Ready, so ticks are never starved.
const maxDrain = 256

// drainQueued takes the calls and frames already queued, without waiting,
// so that concurrent Execute calls become one Ready: one batch of entries
// appended and persisted together, and one append message per follower,
// instead of one of each per call. etcd raft accepts any number of
// Propose and Step calls between two Ready.
func (c *groupCore) drainQueued() {
	for range maxDrain {
		select {
		case fn := <-c.calls:
			fn()
		case f := <-c.frames:
			c.onFrame(f)
		default:
			return
		}
	}
}

// safeReady is processReady with raft's own panics (a storage or
// invariant failure) turned into the group's end on this node.
func (c *groupCore) safeReady() (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: raft failed: %v", ErrTerminated, r)
		}
	}()
	return c.processReady()
}

func (c *groupCore) recordGauges() {
	if c.applied == c.gaugedApplied {
		return
	}
	c.gaugedApplied = c.applied
	ctx := context.Background()
	c.met.committed.Record(ctx, int64(c.applied), c.met.attrs)
	c.met.applyLag.Record(ctx, int64(c.rn.BasicStatus().HardState.GetCommit())-int64(c.applied), c.met.attrs)
}

func (c *groupCore) onTick() {
	c.now++
	c.rn.Tick()
	c.expireCalls()
	c.maybeBootstrap()
	if c.now%int64(c.statusEvery()) == 0 {
		c.broadcastStatus()
		c.forgetGone()
	}
	if c.state == raft.StateLeader && c.now%int64(c.p.ticks(c.p.Heartbeat)) == 0 {
		c.manageMembers()
	}
	c.checkSnapSends()
	c.checkSpec()
	c.maybeQuietSnapshot()
	if c.snapNow && c.snapRetryAt != 0 && c.now >= c.snapRetryAt {
		c.maybeSnapshot() // a failed snapshot still owed (an idle group has no Ready to retry it)
	}
}

func (c *groupCore) statusEvery() int { return c.p.ticks(c.p.Heartbeat) * 2 }

// maxSizePerMsg is raft's MaxSizePerMsg for a batch limit (Group.
// MaxBatchBytes): 1 MiB, or half the limit when the bond frame is smaller
// than about 2 MiB, so that an append of many entries fits in a frame as
// one of a single entry does. 0 (a core built without Join): 1 MiB.
func maxSizePerMsg(maxBatch int) uint64 {
	if maxBatch <= 0 {
		return 1 << 20
	}
	return uint64(min(1<<20, maxBatch/2))
}
