// Package groups runs replicated state machines over libp2p: nodes that
// derive the same group id bond with each other and run Raft (etcd's
// go.etcd.io/raft/v3) over a log of commands, applied in order to a
// StateMachine on every member.
//
// # Model
//
// A group id (DeriveID) is keyed blake3 over the group's secret Key, the
// bond timings every member must share (Params.Heartbeat,
// HeartbeatJitter, MissedHeartbeats), the state machine's Signature and
// the fingerprint of each WithRequireTicket validator, in order. Members are
// writers (raft voters or learners waiting to be promoted) or readers
// (learners for good). The leader keeps 1, 3 or 5 voters among caught-up
// writers; nothing is configured by hand.
//
// Only a majority commits: PreVote and CheckQuorum are on, so a leader cut
// off from its quorum steps down, and a minority side neither accepts
// writes nor answers strong reads (mosaik commits on both sides of a
// partition and discards one side later; this package does not).
//
// # Usual calls
//
//	g, err := groups.Join[Cmd, Q, R](svc, groups.KeyFromSecret("orders"), &book{})
//	defer g.Close()
//	if err := g.When().Online(ctx); err != nil { ... }
//	idx, err := g.Execute(ctx, Cmd{...})          // committed and applied here
//	r, at, err := g.Query(ctx, q, groups.Strong)  // linearizable read
//
// Feed/FeedMany return once the leader assigned log indexes; Execute and
// ExecuteMany once the commands are applied on this node at those indexes
// (each entry carries the caller's request id, so a slot that went to
// another entry is ErrNotApplied, never a silent success). Followers
// forward commands to the leader (Params.ForwardTimeout; an explicit
// not-leader reply fails at once). Weak queries read local state; Strong
// queries use raft's ReadIndex and wait until this node has applied up to
// it. One call's encoded commands must fit in a bond frame
// (Group.MaxBatchBytes: BondParams.MaxFrameSize, 4 MiB, less a little
// framing); a larger call fails with ErrTooLarge before anything is sent.
// A bond writes a frame over 64 KiB in pieces, with raft's heartbeats and
// votes between them, so that a large entry on a slow link does not hold
// them back until the leader is deposed (PROTOCOL.md §19.7).
//
// # Caller's duties
//
//   - StateMachine.Apply is deterministic: no clocks, randomness or I/O.
//     A panic in Apply ends the group on this node (ErrTerminated wrapping
//     ErrApplyPanic, When().Terminated, metric mosaik.groups.apply.panics,
//     an error log line); the process and other groups keep running.
//   - Restore of a fresh machine's Snapshot must reset the machine: a
//     member that loses a merge is reset that way.
//   - An *OfflineError hands the commands back. When MayApply is set (a
//     forward timed out, a leader was deposed after appending) the
//     commands may still commit: retrying is at-least-once, so make
//     commands idempotent when that matters.
//   - Close every handle. Joining an id already joined on the node returns
//     another handle to the same group; the group ends on this node when
//     its last handle closes.
//
// # Membership, bootstrap and merges
//
// A fresh writer that hears of no cluster within Params.BootstrapDelay
// bootstraps a singleton cluster with a random epoch; among bonded fresh
// writers only the first (eager before Reluctant, then lowest raft id)
// does. Members exchange status frames (epoch, last term and index,
// committed, leader). The leader adds bonded fresh peers as learners,
// promotes caught-up writers, removes members whose bond has been down for
// Params.RemoveAfter (or at once when they leave gracefully, below; a
// learner known to hold no log, which has nothing to resume, after a
// heartbeat), one ConfChangeV2 at a time, a change at most every two
// election timeouts.
//
// Clusters that started apart merge: when two leaders of different epochs
// see each other, the one with the lower (last term, last index, epoch)
// discards its raft state and state machine and rejoins the other through
// its log or a snapshot; its followers follow. The discard is reported by
// When().Discarded, the counter mosaik.groups.raft.discarded and a warn
// log line.
//
// A voter leaves gracefully when its group ends on its node (its last
// handle closes, or its Service closes while the log is in memory): a
// leader first hands leadership over to another voter (promoting a writer
// learner when it is the only voter), then the node asks the leader to
// remove it (a caught-up writer learner takes its place when the voters
// would turn even) and waits for the removal to apply, for at most
// Params.LeaveTimeout (2 s). So a room whose one voter closes has a new
// leader within a few round trips, and a group of three whose leader
// closes is three live voters again, not two of three for RemoveAfter. A
// learner (a reader, or a writer not promoted) asks the leader the same
// way, so a short-lived member such as a command-line client does not stay
// in the configuration for RemoveAfter; it does not wait when no leader is
// known. A node that shuts down with a data dir keeps its membership to
// resume it.
//
// A minority never commits. A member cut off from a majority of the
// voters answers no writes and no strong reads until it reaches them
// again, however long that takes; then it catches up, nothing discarded.
// A cluster that lost a majority of its voters for good (two of three
// crashed) therefore stays offline until they return (a data dir keeps
// their membership) or an operator who knows they are dead calls
// Group.ForceNewEpoch on a surviving writer: it restarts the group from
// that writer's log as a new epoch with it as the single voter, and the
// others follow it. The one case a cluster forces a new epoch by itself
// is a configuration change that lost a whole half while a majority of
// the incoming voters is reachable (growing from one voter to three
// passes through the joint step {n0,n1,n2}/{n0}; with n0 lost there, n1
// and n2 could never elect a leader): the writer with the most
// up-to-date log among them forces after RemoveAfter (15 s by default).
// Details in PROTOCOL.md §21.5.
//
// # Observing a group
//
// Service.Status returns a value snapshot per joined group: this node's
// role and raft role, the leader, term, commit and applied index, log
// position, configuration size, epoch and bonds, and the Description of
// a state machine that implements Describer (collections do: kind, name,
// items, version). Metrics (OpenTelemetry,
// attributes network and group): mosaik.groups.active,
// mosaik.groups.bonds.active, mosaik.groups.raft.elections (elections this
// node started; a failed pre-vote is none), mosaik.groups.raft.leader.changes
// (the known leader became another peer; losing and regaining the same
// leader is none), mosaik.groups.raft.committed (applied index),
// mosaik.groups.raft.apply_lag, mosaik.groups.raft.commit_latency (Execute
// to local apply, seconds), mosaik.groups.raft.discarded, and the bond
// layer's mosaik.groups.bonds.* counters. Every change of raft state is
// one info log line, "role changed".
//
// # Durability
//
// By default a group's raft log lives in memory, so a restarted node is a
// new member. WithDataDir(dir) (or WithJoinDefaults(WithDataDir(dir)) for
// every group of a Service; node.WithDataDir does that) keeps the log,
// hard state and snapshots in a write-ahead log under
// <dir>/groups/<group id hex>/ (one fdatasync per raft Ready), synced
// before raft sends anything that depends on them: a node restarted with
// the same identity and directory, even after SIGKILL, resumes its
// membership and state. One process at a time may hold a group's file.
//
// # Catch-up and snapshots
//
// Every Params.SnapshotEntries applied entries a member snapshots its state
// machine and compacts its log, keeping Params.CompactionWindow entries,
// so a member that lags by less replays the log. It also snapshots once
// commands stop arriving for Params.SnapshotQuiet after a burst, so that
// a member joining later finds a snapshot at hand. One that lags by more
// (a late joiner, a member back from a long partition) gets a snapshot,
// which never travels inside a bond frame: raft's MsgSnap carries a small
// descriptor (anchor, size, blake3 hash) and the member fetches the bytes
// in chunks of 256 KiB over the snapshot protocol
// (/mosaik/groups/snapshot/1.1.0/<network>: one stream per holder for the
// whole transfer, its requests pipelined and answered in order; a holder
// that speaks only 1.0.0 gets a stream per chunk), from the members that
// announced the anchor in their status and from the leader last. A holder that fails or stops answering (5 s per chunk) is
// dropped and its chunks go to the next; the whole is checked against the
// hash before the group's goroutine installs it (the fetch runs in a
// goroutine of the group, ended by Close, so the group keeps
// heartbeating). A machine that implements StagedRestorer decodes the
// chunks into a new state aside as they arrive; the install then only
// swaps it in. If every holder fails, the leader is told and sends a
// fresh MsgSnap. A member that a peer's status shows to be that far
// behind does not wait for the MsgSnap: the status names the held bytes'
// hash and size, and the member starts fetching them at once (a
// speculative transfer, one at a time); the MsgSnap then uses it when its
// descriptor names the same bytes (the usual case: members snapshot again
// at the configuration change that adds the member, with the same bytes),
// and otherwise it is cancelled. Either way only bytes whose hash is the
// leader's descriptor's are installed. A member keeps the snapshots it took or installed for 10 s
// after their last use and serves them to the members bonded with it in
// that group, so states far beyond the bond layer's frame cap (up to
// 1 GiB) reach new members without loading the leader alone. The chunk
// size, chunk timeout, TTL and window are each node's own
// (WithSnapshotParams); transfers are counted in the
// mosaik.groups.snapshot.* metrics (syncs served, received and failed,
// bytes served and received, speculative transfers started, used and
// dropped).
//
// # Concurrency
//
// Every Group method and When is safe for concurrent use. Each group has
// one goroutine that owns its raft RawNode, log store and state machine
// (StateMachine methods are never called concurrently); handles talk to it
// through channels, and calls from one goroutine are handled in order. The
// bond layer delivers frames without blocking: a full inbox drops frames
// (counted as mosaik.groups.inbox.dropped; raft retransmits). Blocking
// calls take ctx first and return ctx.Err() when it ends (outcome unknown
// for Execute and Feed).
//
// Lock order: the service's group registry lock, then the bond layer's
// locks (Join attaches under it); the view lock and the bond-event queue
// lock are leaves. The group goroutine holds no lock while calling the
// state machine or the transport.
package groups
