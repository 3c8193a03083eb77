package groups

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/groups/pb"
	"github.com/mosaik-go/mosaik/internal/dialer"
)

// dial bonds with the peer of entry e as the initiator, after catalog
// syncs when the peer does not know us yet (UnknownPeer, bounded).
func (g *groupNet) dial(e *catalog.SignedEntry) {
	defer g.wg.Done()
	p := e.PeerID()
	var err error
	for try := 0; ; try++ {
		err = g.initiate(e)
		if code, ok := codeOf(err); !ok || code != CodeUnknownPeer || try >= g.n.params.UnknownPeerRetries || g.ctx.Err() != nil {
			break
		}
		ctx, cancel := context.WithTimeout(g.ctx, 2*g.n.params.HandshakeTimeout)
		serr := g.n.d.SyncWith(ctx, e.Entry.AddrInfo())
		cancel()
		if serr != nil {
			g.log.Debug("catalog sync after UnknownPeer failed", "peer", p, "err", serr)
		}
	}
	g.mu.Lock()
	delete(g.dialing, p)
	g.mu.Unlock()
	if err != nil {
		g.failed(p)
		if g.ctx.Err() == nil {
			g.log.Debug("bond attempt failed", "peer", p, "err", err)
		}
	}
	g.poke() // the slot is free again, or the backoff needs a timer
}

// initiate runs the initiator's side of one handshake: Hello, then the
// responder's Welcome (or Close), then our Proof.
func (g *groupNet) initiate(e *catalog.SignedEntry) (err error) {
	n, p := g.n, e.PeerID()
	code := Code(0)
	defer func() {
		if err != nil {
			if c, ok := codeOf(err); ok {
				code = c
			} else if code == 0 {
				code = CodeUnexpectedClose
			}
			n.refused(g, code)
		}
	}()
	exp, err := g.checkTickets(&e.Entry)
	if err != nil {
		return localErr(CodeNotAllowed, "%v", err)
	}
	ctx, cancel := context.WithTimeout(g.ctx, n.params.HandshakeTimeout)
	defer cancel()
	if err := dialer.Connect(ctx, n.h, e.Entry.AddrInfo()); err != nil {
		return fmt.Errorf("groups: connect to %s: %w", p, err)
	}
	st, err := n.h.NewStream(ctx, p, n.proto, n.proto10)
	if err != nil {
		return fmt.Errorf("groups: open bond stream to %s: %w", p, err)
	}
	_ = st.SetDeadline(time.Now().Add(n.params.HandshakeTimeout))
	var ni [nonceSize]byte
	_, _ = rand.Read(ni[:])
	hi := &pb.BondHello{Network: n.network[:], Group: g.spec.ID[:], Nonce: ni[:], Role: uint32(g.spec.Role)}
	if _, err := st.Write(encodeMsg(frameHello, hi)); err != nil {
		_ = st.Reset()
		return fmt.Errorf("groups: send hello: %w", err)
	}
	fr := newHandshakeReader(st)
	typ, body, err := fr.next()
	if err != nil {
		return g.abort(st, readErr(err))
	}
	switch typ {
	case frameClose:
		ce, err := decodeClose(body)
		if err != nil {
			return g.abort(st, localErr(CodeProtocolViolation, "%v", err))
		}
		_ = st.Close()
		return ce
	case frameWelcome:
	default:
		return g.abort(st, localErr(CodeProtocolViolation, "frame %#x instead of welcome", typ))
	}
	w, err := decodeWelcome(body)
	if err != nil {
		return g.abort(st, localErr(CodeInvalidHandshake, "%v", err))
	}
	if !proofEqual(w.proof, proof(g.key, sideResponder, g.spec.ID, p, n.self, ni, w.nonce)) {
		return g.abort(st, localErr(CodeInvalidProof, "responder's proof"))
	}
	_ = st.SetDeadline(time.Time{})
	fr.bonded(n.params.MaxFrameSize)
	b := newBond(g, st, fr, p, w.role, n.self)
	b.setEntry(e, exp)
	pi := proof(g.key, sideInitiator, g.spec.ID, n.self, p, ni, w.nonce)
	b.first = encodeMsg(frameProof, &pb.BondProof{Proof: pi[:]})
	if err := g.register(b); err != nil {
		return g.abort(st, err)
	}
	return nil
}

// abort refuses a handshake in-band: a Close frame with the code, then the
// stream is closed (reset with the code when the frame cannot be written).
func (g *groupNet) abort(st network.Stream, err error) error {
	code, ok := codeOf(err)
	var ce *CodeError
	if ok && errors.As(err, &ce) && !ce.Remote {
		writeClose(st, code, ce.Reason, g.n.params.CloseTimeout)
	} else {
		_ = st.Reset()
	}
	return err
}

// writeClose writes a Close frame and closes the stream; it resets the
// stream with the code if the frame cannot be written in time.
func writeClose(st network.Stream, code Code, reason string, timeout time.Duration) {
	_ = st.SetWriteDeadline(time.Now().Add(timeout))
	if _, err := st.Write(encodeClose(code, reason)); err != nil {
		_ = st.ResetWithError(network.StreamErrorCode(code))
		return
	}
	_ = st.Close()
}

// readErr maps a handshake read error to a code.
func readErr(err error) error {
	if code, ok := codeOf(err); ok {
		return &CodeError{Code: code, Reason: "stream reset", Remote: true}
	}
	var ne net.Error
	if errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return localErr(CodeTimeout, "handshake")
	}
	if errors.Is(err, errProtocol) {
		return localErr(CodeProtocolViolation, "%v", err)
	}
	return &CodeError{Code: CodeUnexpectedClose, Reason: err.Error(), Remote: true}
}

// respond runs the responder's side of a handshake, in mosaik's order:
// unknown peer, then Hello (timeout, undecodable), network, group, already
// bonded, tickets; then Welcome and the initiator's Proof.
func (n *bondNet) respond(st network.Stream) {
	p := st.Conn().RemotePeer()
	var g *groupNet
	fail := func(err error) {
		code, _ := codeOf(err)
		n.refused(g, code)
		log := n.log
		if g != nil {
			log = g.log
		}
		log.Debug("bond refused", "peer", p, "err", err)
		var ce *CodeError
		if errors.As(err, &ce) && !ce.Remote {
			writeClose(st, code, ce.Reason, n.params.CloseTimeout)
		} else {
			_ = st.Reset()
		}
	}
	_ = st.SetDeadline(time.Now().Add(n.params.HandshakeTimeout))
	entry, ok := n.d.Catalog().Get(p)
	if !ok {
		fail(localErr(CodeUnknownPeer, "no signed entry of %s", p))
		return
	}
	fr := newHandshakeReader(st)
	typ, body, err := fr.next()
	if err != nil {
		fail(readErr(err))
		return
	}
	if typ != frameHello {
		if typ == frameClose {
			fail(&CodeError{Code: CodeCancelled, Reason: "closed before hello", Remote: true})
			return
		}
		fail(localErr(CodeProtocolViolation, "frame %#x before hello", typ))
		return
	}
	h, err := decodeHello(body)
	if err != nil {
		fail(localErr(CodeInvalidHandshake, "%v", err))
		return
	}
	if h.network != n.network {
		fail(localErr(CodeDifferentNetwork, "network %s", h.network.Short()))
		return
	}
	if g = n.group(h.group); g == nil {
		fail(localErr(CodeGroupNotFound, "group %s", h.group.Short()))
		return
	}
	g.mu.Lock()
	old, dialing, closed := g.slots[p], g.dialing[p], g.closed
	g.mu.Unlock()
	switch {
	case closed:
		fail(localErr(CodeGroupNotFound, "group %s is closing", h.group.Short()))
		return
	case old != nil && !wins(p, old.opener), dialing && !wins(p, n.self):
		fail(localErr(CodeAlreadyBonded, "bond to %s exists", p))
		return
	}
	exp, err := g.checkTickets(&entry.Entry)
	if err != nil {
		fail(localErr(CodeNotAllowed, "%v", err))
		return
	}
	var nr [nonceSize]byte
	_, _ = rand.Read(nr[:])
	pr := proof(g.key, sideResponder, g.spec.ID, n.self, p, h.nonce, nr)
	if _, err := st.Write(encodeMsg(frameWelcome, &pb.BondWelcome{Nonce: nr[:], Proof: pr[:], Role: uint32(g.spec.Role)})); err != nil {
		fail(&CodeError{Code: CodeUnexpectedClose, Reason: err.Error(), Remote: true})
		return
	}
	typ, body, err = fr.next()
	if err != nil {
		fail(readErr(err))
		return
	}
	switch typ {
	case frameClose:
		ce, err := decodeClose(body)
		if err != nil {
			fail(localErr(CodeProtocolViolation, "%v", err))
			return
		}
		_ = st.Close()
		n.refused(g, ce.Code)
		g.log.Debug("bond refused by initiator", "peer", p, "err", ce)
		return
	case frameProof:
	default:
		fail(localErr(CodeProtocolViolation, "frame %#x instead of proof", typ))
		return
	}
	pi, err := decodeProof(body)
	if err != nil {
		fail(localErr(CodeInvalidHandshake, "%v", err))
		return
	}
	if !proofEqual(pi, proof(g.key, sideInitiator, g.spec.ID, p, n.self, h.nonce, nr)) {
		fail(localErr(CodeInvalidProof, "initiator's proof"))
		return
	}
	_ = st.SetDeadline(time.Time{})
	fr.bonded(n.params.MaxFrameSize)
	b := newBond(g, st, fr, p, h.role, p)
	b.setEntry(entry, exp)
	if err := g.register(b); err != nil {
		fail(err)
		return
	}
}
