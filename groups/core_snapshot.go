package groups

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.etcd.io/raft/v3/tracker"
	"google.golang.org/protobuf/proto"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/groups/pb"
)

// The core's side of chunked snapshot transfer (PROTOCOL.md §20). A
// MsgSnap on the wire carries a descriptor, never the state: the leader
// holds the bytes in its snapshot cache, and the follower fetches them in
// chunks over the snapshot protocol, in a goroutine of its own, from the
// members that announced the anchor in their status and from the leader
// last. The fetched snapshot comes back to the group goroutine as a call,
// which steps the MsgSnap with the real bytes into raft.

// kindSnapFailed is the core frame a follower sends to the MsgSnap's
// sender when the transfer failed (see CoreSnapshotFailed).
const kindSnapFailed byte = 0x25

// maxAnnouncedAnchors caps how many anchors of a status frame are read.
const maxAnnouncedAnchors = 8

// snapshotNet is what the bond layer offers snapshot transfer: chunk
// requests to a holder, and whether a peer is bonded in a group (only
// those are served). bondNet implements it over libp2p streams; the
// core's tests over the in-memory network.
type snapshotNet interface {
	// fetchChunk sends one request to holder and returns its decoded
	// answer (a refusal as *snapshotRefusedError). It returns once ctx
	// ends.
	fetchChunk(ctx context.Context, holder peer.ID, req snapshotChunkRequest) (snapshotChunk, error)
	// bondedWith reports whether p is bonded with this node in group.
	bondedWith(group catalog.ID, p peer.ID) bool
}

// snapXfer is a group's snapshot transfer state. cache is safe for
// concurrent use (the Service serves from it); everything else belongs to
// the group goroutine, except ctx and wg which the fetch goroutine uses.
type snapXfer struct {
	cache  *snapshotCache
	net    snapshotNet // nil: snapshots travel whole inside MsgSnap
	params snapshotFetchParams

	ctx    context.Context // cancelled when the group ends
	cancel context.CancelFunc
	wg     sync.WaitGroup // the fetch goroutine

	fetching uint64           // anchor index being fetched (0: none)
	sent     map[uint64]int64 // leader: raft id → tick its MsgSnap went out
	// stepped is the fetched snapshot whose MsgSnap was stepped into raft
	// without its data (nil: none). raft copies a snapshot it holds
	// several times on its way to Ready (protobuf clones of megabytes
	// each); it never reads the data, so it gets none and the Ready's
	// snapshot gets these bytes back (withSteppedData).
	stepped *fetchedSnapshot
	// installing is stepped once raft's Ready carries it: the snapshot
	// installSnapshot installs, with its known hash and its stage.
	installing *fetchedSnapshot

	// spec is the speculative transfer (snapshot_spec.go; nil: none),
	// specTried the hashes one was started for, never twice the same.
	spec *specFetch
	// adopted is the speculative transfer a MsgSnap's fetch took over
	// (nil: none), until that fetch ends: holders whose status announces
	// its bytes after the MsgSnap are still offered to it.
	adopted   *specFetch
	specTried map[[32]byte]bool
	// specPaused is the tick before which no speculative transfer starts:
	// one failed (a holder served other bytes than it announced, or none),
	// and a peer announcing ever new hashes could otherwise keep this node
	// fetching MaxTotal bytes at a time for nothing (specTried forgets
	// after maxAnnouncedAnchors hashes). The MsgSnap's fetch is not paused.
	specPaused int64
	// mismatched is the hash of the last snapshot whose transfer failed
	// its hash check (zero: none): chunks are checked only as a whole, so
	// the holder that served bad bytes is unknown, and asking the same
	// holders again failed the same way for good when one of them served
	// bad bytes (review probe: 248 failed transfers in 15 s, none
	// installed). The next transfer of those bytes asks the leader alone.
	mismatched [32]byte
	ttl        time.Duration // how long a held snapshot lives
	specStats  specStats
}

func (x *snapXfer) init(net snapshotNet, p SnapshotParams) {
	x.cache = newSnapshotCache(p.MaxHeld, p.TTL)
	x.net = net
	x.params = p.fetch()
	x.ctx, x.cancel = context.WithCancel(context.Background())
	x.sent = map[uint64]int64{}
	x.specTried = map[[32]byte]bool{}
	x.ttl = p.TTL
	if x.ttl <= 0 {
		x.ttl = defaultSnapshotTTL
	}
}

// stop cancels a fetch in flight and waits for its goroutine.
func (x *snapXfer) stop() {
	x.cancel()
	x.wg.Wait()
}

// machineTag is the descriptor's machine tag: the group id, which covers
// the state machine's signature.
func (c *groupCore) machineTag() string { return c.id.String() }

// sendRaft sends one of raft's messages to its peer. A MsgSnap goes out
// as a descriptor when the bond layer transfers snapshots (sendSnap).
func (c *groupCore) sendRaft(m *raftpb.Message) {
	if c.fenced(m.GetType()) {
		return // a fenced node's campaign goes nowhere (core_fence.go)
	}
	to := m.GetTo()
	snap := m.GetType() == raftpb.MessageType_MsgSnap
	p, ok := c.byRaft[to]
	var sent bool
	if ok && c.peers[p].up && snap && c.snap.net != nil {
		if sent = c.sendSnap(p, m); sent {
			return // raft learns the outcome later (see sendSnap)
		}
	} else if ok && c.peers[p].up {
		data, err := proto.Marshal(m)
		if err == nil {
			body, _ := proto.Marshal(&pb.CoreRaft{Epoch: c.epoch, Message: data})
			switch t := m.GetType(); {
			case t == raftpb.MessageType_MsgApp, t == raftpb.MessageType_MsgSnap, t == raftpb.MessageType_MsgProp,
				t == raftpb.MessageType_MsgHeartbeat && !c.replicating(to):
				// A follower that raft probes (one append at a time) answers
				// a heartbeat with a response that makes the leader send
				// its next append again: a heartbeat that passed a large
				// append in flight would have it sent again and again.
				sent = c.tr.Send(p, kindRaft, body)
			default:
				// Everything that carries no entries may pass
				// the frames queued before it, as etcd's transport sends
				// them on a stream apart from its appends: a heartbeat
				// carries a commit index the peer acknowledged, votes and
				// responses need no order with appends. A large append
				// then does not starve the heartbeats behind it (which
				// let CheckQuorum depose the leader while it is written).
				sent = c.tr.SendPriority(p, kindRaft, body)
			}
		}
	}
	if !sent {
		c.rn.ReportUnreachable(to)
		if snap {
			c.rn.ReportSnapshot(to, raft.SnapshotFailure)
		}
		return
	}
	if snap {
		// Without snapshot transfer the whole snapshot went in the message:
		// as far as raft cares the transfer is done; a lost frame shows up
		// as a rejected append.
		c.rn.ReportSnapshot(to, raft.SnapshotFinish)
	}
}

// sendSnap sends a MsgSnap with a descriptor in place of the state and
// holds the state in the cache; it reports whether the frame was queued.
// The snapshot's outcome reaches raft later: the follower's append
// response on success, its CoreSnapshotFailed or the stall check
// (checkSnapSends) on failure.
func (c *groupCore) sendSnap(p peer.ID, m *raftpb.Message) bool {
	orig := m.GetSnapshot()
	wire, _, err := snapshotToWire(orig, c.machineTag(), c.snap.cache, time.Now())
	if err != nil {
		c.log.Warn("cannot describe a snapshot", "err", err)
		return false
	}
	m.Snapshot = wire
	data, err := proto.Marshal(m)
	m.Snapshot = orig
	if err != nil {
		return false
	}
	body, _ := proto.Marshal(&pb.CoreRaft{Epoch: c.epoch, Message: data})
	if !c.tr.Send(p, kindRaft, body) {
		return false
	}
	c.snap.sent[m.GetTo()] = c.now
	c.log.Debug("sent a snapshot descriptor", "to", p, "index", orig.GetMetadata().GetIndex(), "bytes", len(orig.GetData()))
	return true
}

// replicating reports whether raft replicates to follower id in its
// pipelined state, where a heartbeat's response never has an append sent
// again.
func (c *groupCore) replicating(id uint64) bool {
	ok := false
	c.rn.WithProgress(func(pid uint64, _ raft.ProgressType, pr tracker.Progress) {
		if pid == id {
			ok = pr.State == tracker.StateReplicate
		}
	})
	return ok
}

// checkSnapSends runs on the leader's ticks: a follower whose snapshot is
// pending in raft but which is not fetching it (its bond ended, or its
// status says so a while after the send) is reported failed, so that raft
// sends a new one instead of waiting forever.
func (c *groupCore) checkSnapSends() {
	if len(c.snap.sent) == 0 {
		return
	}
	if c.state != raft.StateLeader {
		clear(c.snap.sent)
		return
	}
	prs := c.rn.Status().Progress
	grace := int64(4 * c.statusEvery())
	for id, at := range c.snap.sent {
		pr, ok := prs[id]
		if !ok || pr.State != tracker.StateSnapshot {
			delete(c.snap.sent, id)
			continue
		}
		p, ok := c.byRaft[id]
		ps := c.peers[p]
		stalled := !ok || ps == nil || !ps.up ||
			(c.now-at > grace && ps.status.GetFetching() != pr.PendingSnapshot)
		if stalled {
			delete(c.snap.sent, id)
			c.rn.ReportSnapshot(id, raft.SnapshotFailure)
		}
	}
}

// onSnapFailed is a follower's report that its transfer failed.
func (c *groupCore) onSnapFailed(ps *peerState, body []byte) {
	m := new(pb.CoreSnapshotFailed)
	if proto.Unmarshal(body, m) != nil {
		c.drop()
		return
	}
	if _, ok := c.snap.sent[ps.id]; !ok || c.state != raft.StateLeader {
		return
	}
	if pr, ok := c.rn.Status().Progress[ps.id]; !ok || pr.PendingSnapshot != m.GetAnchor().GetIndex() {
		return // about an older snapshot than the one raft waits for
	}
	delete(c.snap.sent, ps.id)
	c.log.Debug("follower failed to fetch a snapshot", "peer", c.byRaft[ps.id], "index", m.GetAnchor().GetIndex(), "reason", m.GetReason())
	c.rn.ReportSnapshot(ps.id, raft.SnapshotFailure)
}

// onSnapMsg takes a MsgSnap that passed onRaft's checks. With a snapshot
// net it starts the fetch and returns false (the message is stepped once
// the bytes are here); without one the data is the whole snapshot, to be
// stepped now (true).
func (c *groupCore) onSnapMsg(from peer.ID, m *raftpb.Message) bool {
	if c.snap.net == nil {
		if err := c.checkSnapshot(m.GetSnapshot()); err != nil {
			c.log.Warn("dropping undecodable snapshot", "from", from, "err", err)
			c.drop()
			return false
		}
		return true
	}
	meta := m.GetSnapshot().GetMetadata()
	a := snapshotAnchor{Index: meta.GetIndex(), Term: meta.GetTerm()}
	if a.Index <= c.applied {
		// Stale: raft ignores its data and answers with its commit index,
		// which ends the leader's wait for this snapshot.
		return true
	}
	if c.snap.fetching != 0 {
		return false // one transfer at a time; raft resends after it
	}
	d, err := decodeSnapshotDescriptor(m.GetSnapshot().GetData())
	if err == nil && d.TotalSize > c.snap.params.MaxTotal {
		err = fmt.Errorf("%w: %d bytes over the cap of %d", errSnapshotDescriptor, d.TotalSize, c.snap.params.MaxTotal)
	}
	if err != nil {
		c.log.Warn("dropping a snapshot with a bad descriptor", "from", from, "err", err)
		c.drop()
		c.snapFailed(from, a, err)
		return false
	}
	holders, retry := c.fetchHolders(a, from, d.Hash)
	c.snap.fetching = a.Index
	epoch := c.epoch
	// A speculative transfer of the same bytes (same hash and size, at
	// whatever anchor it was announced) is this one; any other is
	// cancelled, and waited for before this one starts, so that one
	// snapshot's buffer is held at a time.
	spec := c.snap.spec
	c.snap.spec = nil
	var adopt *specFetch
	if spec != nil && !retry && spec.d.Hash == d.Hash && spec.d.TotalSize == d.TotalSize {
		adopt, spec = spec, nil
		c.snap.adopted = adopt
		adopt.leader.Store(from) // a MsgSnap comes from the leader
		adopt.offer(from, a)
		for _, p := range holders {
			adopt.offer(p, a)
		}
	} else if spec != nil {
		spec.cancel()
		c.snap.specStats.dropped.Add(1)
		c.met.add(c.met.specDropped, 1)
	}
	c.log.Info("fetching a snapshot", "index", a.Index, "bytes", d.TotalSize, "holders", len(holders), "speculative", adopt != nil)
	params, ctx := c.snap.params, c.snap.ctx
	var stage RestoreStage
	if adopt == nil {
		// The machine builds the new state aside while the chunks arrive
		// (a fallback after a failed speculative transfer restores whole).
		stage = c.sm.stage()
	}
	c.snap.wg.Add(1)
	go func() {
		defer c.snap.wg.Done()
		if spec != nil {
			<-spec.done
		}
		var fs *fetchedSnapshot
		var err error
		if adopt != nil {
			fs, err = adopt.result(ctx, m.GetSnapshot(), d)
			st, ctr := &c.snap.specStats.used, c.met.specUsed
			if err != nil {
				st, ctr = &c.snap.specStats.dropped, c.met.specDropped
				c.log.Debug("speculative snapshot transfer failed", "index", a.Index, "err", err)
			}
			st.Add(1)
			c.met.add(ctr, 1)
		}
		if adopt == nil || (err != nil && ctx.Err() == nil) {
			fetch, closeFetch := c.snapFetchFunc()
			served := &servedChunks{}
			fs, err = snapshotFromWire(ctx, m.GetSnapshot(), c.machineTag(), holders, served.wrap(fetch), params, stage)
			closeFetch()
			if fs != nil {
				fs.served = served
			}
		}
		done := func() { c.onSnapFetched(from, epoch, m, fs, err) }
		select {
		case c.calls <- done:
		case <-ctx.Done():
		}
	}()
	return false
}

// snapFetchFunc returns the function a transfer fetches its chunks with,
// counting the bytes received, and what to call when the transfer ended.
// It is safe to call from any goroutine.
func (c *groupCore) snapFetchFunc() (snapshotFetchFunc, func()) {
	net, met := c.snap.net, c.met
	placing, _ := net.(snapshotPlacingNet)
	// One stream per chunk (1.0.0), or one per holder for the whole
	// transfer where the net offers it (1.1.0, pipelined).
	one := func(ctx context.Context, holder peer.ID, req snapshotChunkRequest, dst []byte) (snapshotChunk, error) {
		if placing != nil && dst != nil {
			return placing.fetchChunkInto(ctx, holder, req, dst)
		}
		return net.fetchChunk(ctx, holder, req)
	}
	closeFn := func() {}
	if sn, ok := net.(snapshotSessionNet); ok {
		sessions := newSnapshotSessions(sn, one)
		one, closeFn = sessions.fetch, sessions.close
	}
	fetch := func(ctx context.Context, holder peer.ID, req snapshotChunkRequest, dst []byte) (snapshotChunk, error) {
		chunk, err := one(ctx, holder, req, dst)
		met.add(met.bytesReceived, int64(len(chunk.Data)))
		return chunk, err
	}
	return fetch, closeFn
}

// fetchHolders returns the holders to fetch the snapshot of hash at a
// from, sender last: every peer announcing a, unless the last transfer of
// these bytes failed its hash check, when the sender (the leader) alone
// serves (retry; see snapXfer.mismatched).
func (c *groupCore) fetchHolders(a snapshotAnchor, sender peer.ID, hash [32]byte) (_ []peer.ID, retry bool) {
	if hash == c.snap.mismatched {
		return []peer.ID{sender}, true
	}
	return c.holdersOf(a, sender), false
}

// holdersOf lists the bonded members that announced anchor a, in peer id
// order, then the sender (the leader) last.
func (c *groupCore) holdersOf(a snapshotAnchor, sender peer.ID) []peer.ID {
	var hs []peer.ID
	for p, ps := range c.peers {
		if p == sender || !ps.up {
			continue
		}
		for i, x := range ps.status.GetSnapshots() {
			if i == maxAnnouncedAnchors {
				break
			}
			if x.GetIndex() == a.Index && x.GetTerm() == a.Term {
				hs = append(hs, p)
				break
			}
		}
	}
	slices.Sort(hs)
	return append(hs, sender)
}

// onSnapFetched runs on the group goroutine when a fetch ended: it steps
// the MsgSnap with the fetched bytes (raft's Ready then installs them) or
// tells the sender the transfer failed.
func (c *groupCore) onSnapFetched(from peer.ID, epoch uint64, m *raftpb.Message, fs *fetchedSnapshot, err error) {
	c.snap.fetching = 0
	c.snap.adopted = nil
	meta := m.GetSnapshot().GetMetadata()
	a := snapshotAnchor{Index: meta.GetIndex(), Term: meta.GetTerm()}
	if err == nil {
		err = c.checkSnapshot(fs.snap)
	}
	if err != nil {
		c.met.add(c.met.syncsFailed, 1)
		c.log.Warn("snapshot transfer failed", "index", a.Index, "err", err)
		if errors.Is(err, errSnapshotHash) {
			if d, derr := decodeSnapshotDescriptor(m.GetSnapshot().GetData()); derr == nil {
				c.snap.mismatched = d.Hash
			}
		}
		c.snapFailed(from, a, err)
		return
	}
	c.snap.mismatched = [32]byte{}
	if c.epoch != epoch || a.Index <= c.applied {
		return // the cluster moved on meanwhile
	}
	m.Snapshot = &raftpb.Snapshot{Metadata: fs.snap.GetMetadata()}
	c.snap.stepped = fs
	c.met.add(c.met.syncsReceived, 1)
	c.log.Debug("fetched a snapshot", "index", a.Index, "bytes", len(fs.snap.GetData()), "staged", fs.staged != nil, "chunks_by_holder", fs.served)
	defer func() {
		if r := recover(); r != nil {
			c.fatal = fmt.Errorf("%w: raft failed on a snapshot from %s: %v", ErrTerminated, from, r)
		}
	}()
	_ = c.rn.Step(m)
}

// withSteppedData returns the Ready's snapshot s with its data: the bytes
// of the fetched snapshot stepped without them (snapXfer.stepped) when s
// is that snapshot, else s as it is. The first Ready after the step
// carries the snapshot if raft took it, so the bytes are dropped at the
// first Ready either way.
func (c *groupCore) withSteppedData(s *raftpb.Snapshot) *raftpb.Snapshot {
	c.snap.installing = nil
	fs := c.snap.stepped
	if fs == nil {
		return s
	}
	c.snap.stepped = nil
	st := fs.snap
	if s == nil || raft.IsEmptySnap(s) || len(s.GetData()) != 0 {
		return s
	}
	meta := s.GetMetadata()
	if meta.GetIndex() != st.GetMetadata().GetIndex() || meta.GetTerm() != st.GetMetadata().GetTerm() {
		return s
	}
	c.snap.installing = fs
	return &raftpb.Snapshot{Metadata: meta, Data: st.GetData()}
}

func (c *groupCore) snapFailed(to peer.ID, a snapshotAnchor, err error) {
	reason := err.Error()
	if len(reason) > snapshotMaxReason {
		reason = reason[:snapshotMaxReason]
	}
	c.send(to, kindSnapFailed, &pb.CoreSnapshotFailed{Anchor: &pb.CoreAnchor{Index: a.Index, Term: a.Term}, Reason: reason})
}

// heldAnchors lists the anchors this node serves, newest first, each with
// its bytes' hash and size, for its status.
func (c *groupCore) heldAnchors() []*pb.CoreAnchor {
	as := c.snap.cache.announced(time.Now())
	slices.SortFunc(as, func(x, y heldInfo) int { return -cmpAnchor(x.anchor, y.anchor) })
	out := make([]*pb.CoreAnchor, 0, min(len(as), maxAnnouncedAnchors))
	for _, h := range as[:min(len(as), maxAnnouncedAnchors)] {
		out = append(out, &pb.CoreAnchor{Index: h.anchor.Index, Term: h.anchor.Term, Hash: h.hash[:], Size: h.size})
	}
	return out
}

func cmpAnchor(x, y snapshotAnchor) int {
	return cmp.Or(cmp.Compare(x.Index, y.Index), cmp.Compare(x.Term, y.Term))
}

// storedSnap is a snapshot this core stored (groupCore.lastSnap).
type storedSnap struct {
	index uint64
	epoch uint64
	data  []byte    // never modified: raft's storage and the cache share it
	hash  *[32]byte // its blake3 hash, when known
}

// snapshotDataEpoch is the epoch framed in snapshot data, or ^0 (no
// epoch) when it does not decode, so that it is never reused.
func snapshotDataEpoch(data []byte) uint64 {
	cs, err := decodeSnapshotData(data)
	if err != nil {
		return ^uint64(0)
	}
	return cs.GetEpoch()
}
