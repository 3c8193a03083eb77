package groups

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/libp2p/go-libp2p/core/peer"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/mosaik-go/mosaik/groups/pb"
)

// Speculative snapshot transfer. A member far behind (a reader or a
// learner that just joined) learns from its first bonded peer's status
// which snapshot that peer holds, with the bytes' hash and size, long
// before the leader's MsgSnap arrives: the bond with the leader (often a
// new connection), the learner's configuration change and the snapshot
// the members store at it come first. So it starts fetching the announced
// bytes at once, from the peers that announce them. When the MsgSnap
// arrives and its descriptor names the same bytes (hash and size; its
// anchor is usually newer, since every member snapshots again at the
// configuration change, reusing the same bytes), the transfer in
// progress, or finished, is the snapshot's; any other is cancelled and the
// MsgSnap's fetched as usual.
//
// Nothing is trusted to the announcing peer: the speculative transfer
// checks the assembled bytes against the announced hash, and is used only
// when that hash is the descriptor's, the one the leader sent. A peer
// that lies about its bytes costs a failed speculative transfer, counted,
// after which the MsgSnap is fetched as usual. One speculative transfer
// exists at a time, one per announced hash; it ends with the group.

// specFetch is a speculative transfer. d, from, cancel, done and more are
// set at start; offered belongs to the group goroutine; data, staged and
// err are written by the transfer's goroutine before done is closed.
type specFetch struct {
	d       snapshotDescriptor // as announced: anchor, size and hash
	cancel  context.CancelFunc
	done    chan struct{}
	more    chan holderAt    // holders announcing d's bytes after the start
	leader  atomic.Value     // peer.ID: the holder whose status says it leads
	offered map[peer.ID]bool // holders given to the transfer so far
	started int64            // tick
	ended   int64            // tick it was seen done (0: not yet)

	data   []byte
	staged *stagedRestore
	served servedChunks
	err    error
}

// offer gives the transfer one more holder, holding its bytes at anchor
// a, if new (group goroutine). A full queue drops the offer: the transfer
// has holders enough.
func (s *specFetch) offer(p peer.ID, a snapshotAnchor) {
	if s.offered[p] {
		return
	}
	select {
	case s.more <- holderAt{id: p, anchor: a}:
		s.offered[p] = true
	default:
	}
}

// isLeader reports whether p is the holder whose status said it leads
// (any goroutine).
func (s *specFetch) isLeader(p peer.ID) bool {
	l, _ := s.leader.Load().(peer.ID)
	return l != "" && l == p
}

// finished reports whether the transfer's goroutine returned.
func (s *specFetch) finished() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// result waits for the transfer and returns it as the fetched snapshot
// of the MsgSnap's snap, whose descriptor d names the same bytes.
func (s *specFetch) result(ctx context.Context, snap *raftpb.Snapshot, d snapshotDescriptor) (*fetchedSnapshot, error) {
	select {
	case <-s.done:
	case <-ctx.Done():
		return nil, fmt.Errorf("groups: snapshot transfer at %v: %w", d.Anchor, ctx.Err())
	}
	if s.err != nil {
		return nil, s.err
	}
	if s.d.Hash != d.Hash || uint64(len(s.data)) != d.TotalSize {
		// Checked by the caller already; kept as the last word before
		// bytes reach raft.
		return nil, fmt.Errorf("%w at %v", errSnapshotHash, d.Anchor)
	}
	meta := snap.GetMetadata()
	if d.Anchor != (snapshotAnchor{Index: meta.GetIndex(), Term: meta.GetTerm()}) {
		return nil, fmt.Errorf("%w: anchor %v in a snapshot at %d/%d", errSnapshotDescriptor, d.Anchor, meta.GetIndex(), meta.GetTerm())
	}
	return &fetchedSnapshot{
		snap:   &raftpb.Snapshot{Metadata: proto.Clone(meta).(*raftpb.SnapshotMetadata), Data: s.data},
		hash:   d.Hash,
		staged: s.staged,
		served: &s.served,
	}, nil
}

// announcedHeld reads an anchor of a status: its anchor, and the hash and
// size of its bytes when the sender gave them.
func announcedHeld(x *pb.CoreAnchor) (heldInfo, bool) {
	h := heldInfo{anchor: snapshotAnchor{Index: x.GetIndex(), Term: x.GetTerm()}, size: x.GetSize()}
	if len(x.GetHash()) != len(h.hash) || h.size == 0 || h.anchor.Index == 0 {
		return h, false
	}
	copy(h.hash[:], x.GetHash())
	return h, true
}

// onStatusSnapshots runs when a bonded peer's status arrived: it offers
// the peer to the speculative transfer in progress when it announces the
// same bytes, or starts one when this node is far enough behind the
// newest snapshot the peer announces that the leader will have to send
// one.
func (c *groupCore) onStatusSnapshots(from peer.ID, ps *peerState) {
	if c.snap.net == nil || ps.status == nil {
		return
	}
	s := c.snap.spec
	if s == nil {
		s = c.snap.adopted
	}
	if s != nil {
		if s.finished() {
			return
		}
		if ps.status.GetIsLeader() {
			s.leader.Store(from)
		}
		for i, x := range ps.status.GetSnapshots() {
			if i == maxAnnouncedAnchors {
				break
			}
			// The same bytes at any anchor: members snapshot again at
			// configuration changes, reusing the bytes, and a holder's
			// older anchors expire unless fetched.
			if h, ok := announcedHeld(x); ok && h.hash == s.d.Hash && h.size == s.d.TotalSize {
				s.offer(from, h.anchor)
				break
			}
		}
		return
	}
	if c.snap.fetching != 0 {
		return
	}
	var best heldInfo
	for i, x := range ps.status.GetSnapshots() {
		if i == maxAnnouncedAnchors {
			break
		}
		if h, ok := announcedHeld(x); ok && h.anchor.Index > best.anchor.Index {
			best = h
		}
	}
	// Behind by more than the log a member keeps past its snapshot: the
	// leader has compacted what this node needs and will send a snapshot.
	// And only a snapshot of the peer's whole applied state: a member
	// stores its snapshot for this node at the configuration change that
	// adds it, reusing the last one's bytes when nothing but configuration
	// changes came since, so those are the bytes the leader will send;
	// a snapshot older than the state would be other bytes.
	if best.anchor.Index == 0 || best.anchor.Index <= c.applied+c.p.CompactionWindow ||
		ps.status.GetApplied() != best.anchor.Index ||
		best.size > c.snap.params.MaxTotal || c.snap.specTried[best.hash] || c.now < c.snap.specPaused {
		return
	}
	c.startSpec(from, best)
}

// startSpec starts the speculative transfer of the bytes h that from
// announced, from it and every other bonded peer announcing them.
func (c *groupCore) startSpec(from peer.ID, h heldInfo) {
	if len(c.snap.specTried) >= maxAnnouncedAnchors {
		clear(c.snap.specTried)
	}
	c.snap.specTried[h.hash] = true
	d := snapshotDescriptor{Anchor: h.anchor, TotalSize: h.size, Hash: h.hash, Machine: c.machineTag()}
	ctx, cancel := context.WithCancel(c.snap.ctx)
	s := &specFetch{
		d: d, cancel: cancel, done: make(chan struct{}),
		more: make(chan holderAt, 8), offered: map[peer.ID]bool{from: true}, started: c.now,
	}
	holders := []peer.ID{from}
	for p, ps := range c.peers {
		if p == from || !ps.up || ps.status == nil {
			continue
		}
		for i, x := range ps.status.GetSnapshots() {
			if i == maxAnnouncedAnchors {
				break
			}
			if o, ok := announcedHeld(x); ok && o.hash == h.hash && o.size == h.size {
				if o.anchor == h.anchor {
					holders = append(holders, p)
					s.offered[p] = true
				} else {
					s.offer(p, o.anchor) // read once the transfer starts
				}
				break
			}
		}
	}
	for p := range s.offered {
		if ps := c.peers[p]; ps != nil && ps.status.GetIsLeader() {
			s.leader.Store(p)
		}
	}
	c.snap.spec = s
	c.snap.specStats.started.Add(1)
	c.met.add(c.met.specStarted, 1)
	c.log.Debug("fetching an announced snapshot ahead of its MsgSnap", "from", from, "index", h.anchor.Index, "bytes", h.size, "holders", len(holders))
	stage := c.sm.stage()
	fetch, closeFetch := c.snapFetchFunc()
	fetch = s.served.wrap(fetch)
	params := c.snap.params
	c.snap.wg.Add(1)
	go func() {
		defer c.snap.wg.Done()
		defer close(s.done)
		defer closeFetch()
		w := newStagedWriter(d.TotalSize, stage)
		if err := fetchSnapshotMore(ctx, d, holders, s.more, s.isLeader, fetch, w, params); err != nil {
			w.finish(true)
			s.err = err
			return
		}
		s.data, s.staged = w.result()
	}()
}

// checkSpec runs on ticks: a speculative transfer that failed, that this
// node no longer needs (it applied past its anchor) or that finished and
// waited longer than a held snapshot lives for a MsgSnap naming it is
// dropped, and its memory with it. After a failure none starts for as
// long as a held snapshot lives (specPaused).
func (c *groupCore) checkSpec() {
	s := c.snap.spec
	if s == nil {
		return
	}
	if s.ended == 0 && s.finished() {
		s.ended = c.now
	}
	keep := int64(c.p.ticks(c.snap.ttl))
	drop := c.applied >= s.d.Anchor.Index || (s.ended != 0 && (s.err != nil || c.now-s.ended > keep))
	if !drop {
		return
	}
	if s.err != nil {
		c.log.Debug("speculative snapshot transfer failed; none starts for a snapshot TTL", "index", s.d.Anchor.Index, "err", s.err)
		c.snap.specPaused = c.now + keep
	}
	s.cancel()
	c.snap.spec = nil
	c.snap.specStats.dropped.Add(1)
	c.met.add(c.met.specDropped, 1)
}

// specStats count speculative transfers (for tests: the metrics say the
// same to an operator).
type specStats struct {
	started, used, dropped atomic.Int64
}
