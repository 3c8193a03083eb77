package groups

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/groups/pb"
)

// bond is one authenticated stream to a co-member of a group, after the
// handshake. It has a reader and a writer goroutine; everything it sends
// goes through its bounded queue.
type bond struct {
	g      *groupNet
	st     network.Stream
	fr     *frameReader
	peer   peer.ID
	role   Role    // the peer's role
	opener peer.ID // who opened the stream (the tie-break compares it)
	since  time.Time
	first  []byte // the initiator's Proof, written before anything else

	pieces bool // the stream speaks bonds 1.1.0: large frames go in pieces
	queue  chan []byte
	urgent chan []byte    // priority frames (SendPriority): they may pass queue's
	asm    assembler      // the reader's frame in pieces
	rearm  chan time.Time // ticket expiry (zero: never), latest wins
	done   chan struct{}  // closed when the bond ends
	wdone  chan struct{}  // closed when the writer returned

	// mu guards the end against Deliver: once ended, the inbox hears
	// nothing more from this bond.
	mu        sync.RWMutex
	ended     bool
	code      Code
	reason    string
	remoteEnd bool // the peer ended it (or the stream broke): no final frame

	lastRecv                      atomic.Int64 // unix ns
	framesSent, framesRecv        atomic.Uint64
	piecesRecv                    atomic.Uint64 // piece frames among framesRecv
	bytesSent, bytesRecv, dropped atomic.Uint64
	// wfail: a data write failed (perhaps part way through a frame): the
	// stream is reset at the end, never followed by a Close frame.
	wfail atomic.Bool

	entryMu sync.Mutex
	entry   *catalog.SignedEntry // the peer's entry last checked
	version catalog.Version      // its version when the bond formed
}

func newBond(g *groupNet, st network.Stream, fr *frameReader, p peer.ID, role Role, opener peer.ID) *bond {
	b := &bond{g: g, st: st, fr: fr, peer: p, role: role, opener: opener, since: time.Now(), pieces: st.Protocol() != g.n.proto10,
		queue: make(chan []byte, g.n.params.SendQueue), urgent: make(chan []byte, max(g.n.params.SendQueue/4, 1)),
		asm: assembler{max: g.n.params.MaxFrameSize}, rearm: make(chan time.Time, 1),
		done: make(chan struct{}), wdone: make(chan struct{})}
	b.lastRecv.Store(time.Now().UnixNano())
	return b
}

func (b *bond) outbound() bool { return b.opener == b.g.n.self }

// setEntry records the peer's entry checked at the handshake and its
// ticket expiry.
func (b *bond) setEntry(e *catalog.SignedEntry, exp time.Time) {
	b.entryMu.Lock()
	b.entry, b.version = e, e.Entry.Version
	b.entryMu.Unlock()
	b.armExpiry(exp)
}

func (b *bond) armExpiry(exp time.Time) {
	for {
		select {
		case b.rearm <- exp:
			return
		default:
			select {
			case <-b.rearm:
			default:
			}
		}
	}
}

// recheck looks at a newer entry of the peer: the bond ends when it no
// longer lists the group (GroupNotFound) or fails the tickets
// (NotAllowed); otherwise the expiry timer follows its tickets.
func (b *bond) recheck(e *catalog.SignedEntry) {
	b.entryMu.Lock()
	if e == b.entry {
		b.entryMu.Unlock()
		return
	}
	b.entry = e
	since := b.version
	b.entryMu.Unlock()
	if _, ok := e.Entry.InGroup(b.g.spec.ID); !ok && e.Entry.Version.Compare(since) > 0 {
		b.end(CodeGroupNotFound, "the peer's entry no longer lists the group", false)
		return
	}
	exp, err := b.g.checkTickets(&e.Entry)
	if err != nil {
		b.end(CodeNotAllowed, err.Error(), false)
		return
	}
	b.armExpiry(exp)
}

// enqueue queues a framed frame of kind, through the fault hook. It never
// blocks: a full queue drops the frame and returns false.
func (b *bond) enqueue(kind byte, f []byte) bool { return b.enqueueOn(b.queue, kind, f) }

// enqueuePriority is enqueue for a small frame that may be written before
// frames queued earlier, between the pieces of a large one.
func (b *bond) enqueuePriority(kind byte, f []byte) bool { return b.enqueueOn(b.urgent, kind, f) }

func (b *bond) enqueueOn(q chan []byte, kind byte, f []byte) bool {
	g := b.g
	if hook := g.n.fault; hook != nil {
		switch ft := hook(g.n.self, b.peer, g.spec.ID, kind); ft.Action {
		case FaultDrop:
			return true
		case FaultDelay:
			g.mu.Lock()
			if g.closed {
				g.mu.Unlock()
				return false
			}
			g.wg.Add(1)
			g.mu.Unlock()
			time.AfterFunc(ft.Delay, func() {
				defer g.wg.Done()
				b.push(q, f)
			})
			return true
		}
	}
	return b.push(q, f)
}

func (b *bond) push(q chan []byte, f []byte) bool {
	select {
	case <-b.done:
		return false
	default:
	}
	select {
	case q <- f:
		return true
	default:
		b.dropped.Add(1)
		b.g.n.m.drops.Add(context.Background(), 1, b.g.n.m.attrs(b.g))
		return false
	}
}

// end ends the bond with code: the slot is freed, the inbox hears
// BondDown, and the writer sends the final frame unless remote.
// Idempotent.
func (b *bond) end(code Code, reason string, remote bool) {
	b.g.evMu.Lock()
	defer b.g.evMu.Unlock()
	b.endLocked(code, reason, remote)
}

// endLocked is end with the group's evMu held.
func (b *bond) endLocked(code Code, reason string, remote bool) {
	b.mu.Lock()
	if b.ended {
		b.mu.Unlock()
		return
	}
	b.ended, b.code, b.reason, b.remoteEnd = true, code, reason, remote
	b.mu.Unlock()
	if !remote {
		// A writer blocked on a peer that stops reading gives up within
		// CloseTimeout, not the heartbeats' stall bound: the group's
		// Close (and a Leave) waits for it.
		_ = b.st.SetWriteDeadline(time.Now().Add(b.g.n.params.CloseTimeout))
	}
	g := b.g
	g.mu.Lock()
	if g.slots[b.peer] == b {
		delete(g.slots, b.peer)
		g.n.h.ConnManager().Unprotect(b.peer, g.protectTag)
	}
	if code != CodeCancelled || remote { // a peer that ended on purpose is not retried at once
		r := g.retry[b.peer]
		if r == nil {
			r = &retry{}
			g.retry[b.peer] = r
		}
		r.wait = g.n.params.DialBackoff
		r.next = time.Now().Add(r.wait)
	}
	g.mu.Unlock()
	g.in.BondDown(b.peer, code)
	g.n.ends.add(code.bucket())
	g.n.m.ends.Add(context.Background(), 1, g.n.m.attrs(g, codeAttr(code.bucket()), reasonAttr(code.bucket())))
	g.log.Debug("bond down", "peer", b.peer, "code", code, "reason", reason, "remote", remote)
	close(b.done)
	g.poke()
}

func (b *bond) isEnded() bool {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.ended
}

// readLoop reads the peer's frames until the stream ends. After the bond
// ended it keeps draining until the peer's end of the stream (or the
// writer's read deadline), then closes or resets the stream.
func (b *bond) readLoop() {
	defer b.g.wg.Done()
	var err error
	for {
		var typ byte
		var body []byte
		typ, body, err = b.fr.next()
		if err != nil {
			break
		}
		if b.isEnded() {
			continue
		}
		b.lastRecv.Store(time.Now().UnixNano())
		b.framesRecv.Add(1)
		b.bytesRecv.Add(uint64(len(body) + 2))
		b.g.n.m.framesRecv.Add(context.Background(), 1, b.g.n.m.attrs(b.g))
		b.g.n.m.bytesReceived.Add(context.Background(), int64(len(body)+2), b.g.n.m.attrs(b.g))
		owned := false // body is the reader's buffer, valid until the next read
		if typ == framePieceFirst || typ == framePiece {
			b.piecesRecv.Add(1)
			if !b.pieces {
				b.end(CodeProtocolViolation, "a piece on a bonds 1.0.0 stream", false)
				continue
			}
			if typ, body, err = b.piece(typ, body); err != nil {
				b.end(CodeProtocolViolation, err.Error(), false)
				continue
			}
			if body == nil {
				continue // more pieces to come
			}
			owned = true // the rebuilt frame is ours
		}
		if cerr := b.handle(typ, body, owned); cerr != nil {
			b.end(cerr.Code, cerr.Reason, cerr.Remote)
		}
	}
	if !b.isEnded() {
		e := readErr(err)
		if errors.Is(err, io.EOF) {
			e = &CodeError{Code: CodeUnexpectedClose, Reason: "stream ended without a close frame", Remote: true}
		}
		var ce *CodeError
		errors.As(e, &ce)
		b.end(ce.Code, ce.Reason, ce.Remote)
	}
	<-b.wdone
	if errors.Is(err, io.EOF) {
		_ = b.st.Close()
	} else {
		_ = b.st.Reset()
	}
}

// piece takes one piece frame. Once the frame's last piece came it returns
// the frame; before, a nil body. A frame in pieces is neither a piece nor
// a handshake frame.
func (b *bond) piece(typ byte, body []byte) (byte, []byte, error) {
	f, err := b.asm.add(typ, body)
	if err != nil || f == nil {
		return 0, nil, err
	}
	if typ, body, err = splitFrame(f); err != nil {
		return 0, nil, err
	}
	if typ == framePieceFirst || typ == framePiece {
		return 0, nil, fmt.Errorf("%w: a piece frame in pieces", errProtocol)
	}
	if body == nil {
		body = []byte{}
	}
	return typ, body, nil
}

// handle acts on one frame; a non-nil result ends the bond. A core frame's
// body goes to the inbox as it is when owned, else as a copy.
func (b *bond) handle(typ byte, body []byte, owned bool) *CodeError {
	g := b.g
	switch {
	case typ >= firstCoreFrame:
		if !owned {
			body = bytes.Clone(body)
		}
		b.mu.RLock()
		if !b.ended {
			g.in.Deliver(b.peer, typ, body)
		}
		b.mu.RUnlock()
	case typ == framePing:
		if len(b.queue) == 0 {
			b.enqueue(framePong, encodeFrame(framePong, nil))
		}
	case typ == framePong:
	case typ == frameDeparture:
		return &CodeError{Code: CodeCancelled, Reason: "peer departed", Remote: true}
	case typ == frameClose:
		ce, err := decodeClose(body)
		if err != nil {
			return localErr(CodeProtocolViolation, "%v", err)
		}
		return ce
	case typ == frameEntry, typ == frameFormed:
		se, cerr := b.openEntry(typ, body)
		if cerr != nil || se == nil {
			return cerr
		}
		if typ == frameEntry {
			if se.PeerID() != b.peer {
				return localErr(CodeProtocolViolation, "entry update of %s", se.PeerID())
			}
			if cur, ok := g.n.d.Catalog().Get(b.peer); ok && cur.Entry.Version.Compare(se.Entry.Version) > 0 {
				se = cur
			}
			b.recheck(se)
		} else {
			g.poke()
		}
	default: // a handshake frame on a bond
		return localErr(CodeProtocolViolation, "frame %#x after the handshake", typ)
	}
	return nil
}

// openEntry opens the sealed entry of an entry frame and merges it into
// the catalog (an entry that is not newer is fine: gossip was faster). A
// BondFormed entry over this node's MaxEntrySize is skipped (nil, nil):
// the cap is per node, so an honest member with a larger one may relay
// it; this catalog could not hold it anyway.
func (b *bond) openEntry(typ byte, body []byte) (*catalog.SignedEntry, *CodeError) {
	store := b.g.n.d.Store()
	max := store.Params().MaxEntrySize
	raw, err := decodeEntryFrame(body, max)
	if errors.Is(err, errEntryOverCap) && typ == frameFormed {
		b.g.log.Debug("BondFormed entry over MaxEntrySize skipped", "peer", b.peer, "max", max)
		return nil, nil
	}
	if err != nil {
		return nil, localErr(CodeProtocolViolation, "%v", err)
	}
	se, err := catalog.OpenEntry(raw, max)
	if err != nil {
		return nil, localErr(CodeProtocolViolation, "entry: %v", err)
	}
	_, _ = store.Merge(se, time.Now())
	return se, nil
}

// writeBatchBytes bounds the frames gathered into one stream write.
const writeBatchBytes = 256 << 10

// writeLoop writes queued frames and heartbeats, checks the peer's
// silence and the tickets' expiry, and sends the final frame.
func (b *bond) writeLoop() {
	defer b.g.wg.Done()
	defer close(b.wdone)
	g, s := b.g, b.g.spec
	stall := s.Heartbeat * time.Duration(s.MissedHeartbeats)
	write := func(f []byte, frames int) bool {
		d := stall
		select {
		case <-b.done: // ended here: see endLocked
			d = min(d, g.n.params.CloseTimeout)
		default:
		}
		_ = b.st.SetWriteDeadline(time.Now().Add(d))
		if _, err := b.st.Write(f); err != nil {
			b.wfail.Store(true)
			code := CodeUnexpectedClose
			if c, ok := codeOf(err); ok {
				code = c
			} else if errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
				code = CodeTimeout
			}
			b.end(code, "write: "+err.Error(), true)
			return false
		}
		b.framesSent.Add(uint64(frames))
		b.bytesSent.Add(uint64(len(f)))
		g.n.m.framesSent.Add(context.Background(), int64(frames), g.n.m.attrs(g))
		g.n.m.bytesSent.Add(context.Background(), int64(len(f)), g.n.m.attrs(g))
		return true
	}
	if b.first != nil && !write(b.first, 1) {
		b.finish()
		return
	}
	tick := func() time.Duration {
		return s.Heartbeat - rand.N(s.HeartbeatJitter)
	}
	hb := time.NewTimer(0) // first tick at once, as mosaik
	defer hb.Stop()
	exp := time.NewTimer(time.Hour)
	exp.Stop()
	defer exp.Stop()
	missed := 0
	var wbuf []byte // reused batch buffer
	// urgentFirst writes the priority frames queued now; false when a
	// write failed or the bond ended.
	urgentFirst := func() bool {
		for {
			select {
			case <-b.done:
				return false
			case f := <-b.urgent:
				if !write(f, 1) {
					return false
				}
			default:
				return true
			}
		}
	}
	for {
		if !urgentFirst() {
			b.finish()
			return
		}
		select {
		case <-b.done:
			b.finish()
			return
		case f := <-b.urgent:
			write(f, 1)
		case f := <-b.queue:
			// Frames queued behind f go out in the same Write: one
			// stream write (and one yamux frame, one syscall) per burst
			// instead of one per raft message. A large frame goes alone,
			// in pieces.
			frames := 1
			var large []byte
			switch {
			case b.pieces && needsPieces(f):
				large, f = f, nil
			case len(b.queue) > 0:
				batch := append(wbuf[:0], f...)
			gather:
				for len(batch) < writeBatchBytes {
					select {
					case more := <-b.queue:
						if b.pieces && needsPieces(more) {
							large = more
							break gather
						}
						batch = append(batch, more...)
						frames++
					default:
						break gather
					}
				}
				if cap(batch) <= 2*writeBatchBytes {
					wbuf = batch
				}
				f = batch
			}
			if f != nil && !write(f, frames) {
				continue
			}
			if large != nil {
				b.writePieces(large, write, urgentFirst)
			}
		case t := <-b.rearm:
			exp.Stop()
			if !t.IsZero() {
				exp.Reset(time.Until(t))
			}
		case <-exp.C:
			if e, ok := g.n.d.Catalog().Get(b.peer); ok {
				if t, err := g.checkTickets(&e.Entry); err == nil {
					if !t.IsZero() {
						exp.Reset(time.Until(t))
					}
					continue
				}
			}
			b.end(CodeNotAllowed, "ticket expired", false)
		case <-hb.C:
			hb.Reset(tick())
			if time.Since(time.Unix(0, b.lastRecv.Load())) > s.Heartbeat+s.HeartbeatJitter {
				missed++
			} else {
				missed = 0
			}
			if missed >= s.MissedHeartbeats {
				b.end(CodeTimeout, "missed heartbeats", false)
				continue
			}
			if len(b.queue) == 0 {
				if hook := g.n.fault; hook != nil && hook(g.n.self, b.peer, s.ID, framePing).Action != FaultDeliver {
					continue
				}
				write(encodeFrame(framePing, nil), 1)
			}
		}
	}
}

// needsPieces reports whether the framed frame f is larger than a piece.
func needsPieces(f []byte) bool {
	n, k := binary.Uvarint(f)
	return k > 0 && n > pieceSize
}

// writePieces writes the large framed frame f in pieces, with the
// priority frames queued meanwhile between them (urgentFirst), until a
// write fails or the bond ends.
// Each piece is built in one buffer of a piece's size, not the whole
// frame's.
func (b *bond) writePieces(f []byte, write func([]byte, int) bool, urgentFirst func() bool) {
	buf := make([]byte, 0, pieceSize+16)
	for off, more := 0, true; more; {
		var p []byte
		p, off, more = appendPiece(buf[:0], f, off)
		if !write(p, 1) || (more && !urgentFirst()) {
			return
		}
	}
}

// finish sends the final frame of a bond ended here (Departure when the
// group is closing, else Close with the code), closes our side and bounds the
// reader's wait for the peer's side.
func (b *bond) finish() {
	b.mu.RLock()
	code, reason, remote := b.code, b.reason, b.remoteEnd
	b.mu.RUnlock()
	timeout := b.g.n.params.CloseTimeout
	b.g.mu.Lock()
	leaving := b.g.closed
	b.g.mu.Unlock()
	if b.wfail.Load() {
		// What reached the peer of the failed write is unknown: a Close
		// frame after it would read as garbage.
		_ = b.st.ResetWithError(network.StreamErrorCode(code))
		return
	}
	if !remote {
		f := encodeClose(code, reason)
		if code == CodeCancelled && leaving {
			f = encodeFrame(frameDeparture, nil)
		}
		_ = b.st.SetWriteDeadline(time.Now().Add(timeout))
		if _, err := b.st.Write(f); err != nil {
			_ = b.st.ResetWithError(network.StreamErrorCode(code))
			return
		}
	}
	_ = b.st.CloseWrite()
	_ = b.st.SetReadDeadline(time.Now().Add(timeout))
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

func (b *bond) info() BondInfo {
	return BondInfo{Peer: b.peer, Role: b.role, Initiator: b.outbound(), Since: b.since,
		FramesSent: b.framesSent.Load(), FramesReceived: b.framesRecv.Load(),
		BytesSent: b.bytesSent.Load(), BytesReceived: b.bytesRecv.Load(),
		Dropped: b.dropped.Load(), Queued: len(b.queue) + len(b.urgent)}
}

func entryMsg(e *catalog.SignedEntry) *pb.BondEntry { return &pb.BondEntry{Entry: e.Bytes()} }
