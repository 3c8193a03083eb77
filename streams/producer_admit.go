package streams

import (
	"context"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/streams/pb"
)

// accept runs the producer part of the accept path: capacity, a fresh RTT
// sample, require predicates, tickets. Called by the service.
func (p *Producer[T]) accept(st network.Stream, sub *pb.Subscribe, entry *catalog.SignedEntry) {
	peerID := st.Conn().RemotePeer()
	// Reserve a slot under the lock, so concurrent accepts cannot exceed
	// max consumers; every exit below releases or converts it.
	p.mu.Lock()
	closed, full := p.closed, p.cfg.maxConsumers > 0 && len(p.subs)+p.pending >= p.cfg.maxConsumers
	if !closed && !full {
		p.pending++
	}
	if !closed {
		// Close waits for accepts under way (p.wg): the predicates and
		// ticket checks below never run after it returned.
		p.wg.Add(1)
		defer p.wg.Done()
	}
	p.mu.Unlock()
	if closed {
		p.reject(st, CodeStreamNotFound, "producer closed")
		return
	}
	if full {
		p.reject(st, CodeNoCapacity, "max consumers reached")
		return
	}
	admitted := false
	defer func() {
		if !admitted {
			p.mu.Lock()
			p.pending--
			p.mu.Unlock()
		}
	}()
	codec := codecName(p.codec)
	if want := sub.GetCodec(); want != "" && codec != "" && want != codec {
		p.reject(st, CodeCodecMismatch, "producer encodes "+codec+", consumer decodes "+want)
		return
	}
	// A fresh RTT sample, so RTT predicates never judge a consumer blind.
	pctx, cancel := context.WithTimeout(p.ctx, p.svc.params.HandshakeTimeout)
	_, perr := p.svc.d.Probe(pctx, peerID)
	cancel()
	if perr != nil {
		p.log.Debug("no RTT sample at accept", "peer", peerID, "err", perr)
	}
	info := p.svc.d.RTT().Info(entry)
	expires, code, err := p.cfg.eligible(info, time.Now())
	if err != nil {
		p.reject(st, code, err.Error())
		return
	}
	nw := p.svc.d.Network()
	features := sub.GetFeatures() & supportedFeatures
	if p.window == nil {
		features &^= featureReplay
	}
	// A consumer of this run asks for what followed its last datum.
	resume := features&featureReplay != 0 && sub.GetResume() && sub.GetResumeEpoch() == p.epoch
	accept, _ := appendControl(nil, frameAccept, &pb.Accept{Network: nw[:], Stream: p.id[:], Epoch: p.epoch, Features: features, Codec: codec})
	s := newOutSub(&subscription{stream: p.id, peer: peerID, entry: entry}, st, p.cfg.queue)
	s.inband = features&featureCloseFrames != 0
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		// Every consumer reads Close frames after Accept.
		_ = st.SetWriteDeadline(time.Now().Add(p.svc.params.HandshakeTimeout))
		if _, err := st.Write(accept); err != nil {
			_ = st.Reset()
			return
		}
		_ = st.SetWriteDeadline(time.Now().Add(p.svc.params.CloseTimeout))
		if _, err := st.Write(closeFrame(CodeGracefulShutdown, "producer closed")); err != nil {
			_ = st.ResetWithError(network.StreamErrorCode(CodeGracefulShutdown))
			return
		}
		_ = st.CloseWrite()
		_ = st.Close()
		return
	}
	if resume && sub.GetResumeAfter() < p.seq {
		// p.seq is stable under mu: every datum up to it is in the window
		// or already left it, every later one goes to the queue.
		s.resumeAt, s.catching = sub.GetResumeAfter()+1, true
	}
	// The subscription joins the fan-out (and the subscription set, which
	// end leaves under the same order) before Accept is written, so a
	// consumer that read Accept receives every datum sent from then on:
	// what is sent meanwhile waits in its queue, and the writer starts
	// once Accept is out.
	p.subs = append(p.subs, s)
	p.pending--
	admitted = true
	p.subWG.Add(2)
	p.set.add(s.sub)
	p.set.setState(s.sub, Connected, nil)
	p.mu.Unlock()
	// Every later write sets its own deadline (deadlineWriter, finish),
	// so this one is not cleared; end may have bounded the stream already,
	// or do it now: its bound is put back (as deadlineWriter does).
	_ = st.SetWriteDeadline(time.Now().Add(p.svc.params.HandshakeTimeout))
	if by := s.endBy.Load(); by != 0 {
		_ = st.SetWriteDeadline(time.Unix(0, by))
	}
	if _, err := st.Write(accept); err != nil {
		p.end(s, CodeUnexpectedClose, "writing Accept: "+err.Error(), true)
		_ = st.Reset()
		go p.writer(s) // both see s ended and wind down (subWG)
		go p.watchConsumer(s)
		return
	}
	p.svc.accepted.Add(1)
	// The consumer's entry may have changed since its Subscribe arrived
	// (the probe above takes up to HandshakeTimeout), and watchCatalog
	// skipped the change: it was no subscription yet. Judge the current
	// entry; from now on watchCatalog sees every change.
	if cur, ok := p.svc.d.Catalog().Get(peerID); ok && cur.Entry.Version.Compare(entry.Entry.Version) > 0 {
		p.set.update(func() {
			s.sub.mu.Lock()
			if cur.Entry.Version.Compare(s.sub.entry.Entry.Version) > 0 { // the watcher may have a newer one
				s.sub.entry = cur
			}
			s.sub.mu.Unlock()
		})
		entry = cur
		if expires, code, err = p.cfg.eligible(p.svc.d.RTT().Info(cur), time.Now()); err != nil {
			p.warnRefused(peerID, code, err.Error())
			p.end(s, code, err.Error(), false)
		}
	}
	p.armExpiry(s, expires, entry.Entry.Version)
	p.log.Debug("consumer accepted", "peer", peerID)
	go p.writer(s)
	go p.watchConsumer(s)
}

// armExpiry (re)sets the subscription's ticket-expiry timer from the
// consumer's entry of version v: a renewed ticket in a newer entry pushes
// it back without interrupting the stream. An entry older than the one it
// was last armed from changes nothing (accept and watchCatalog may judge
// two versions in either order). The timer belongs to this subscription,
// so it never cuts a later one.
func (p *Producer[T]) armExpiry(s *outSub, expires time.Time, v catalog.Version) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if v.Compare(s.expiryOf) < 0 || s.removed {
		return // an older entry, or the subscription ended
	}
	s.expiryOf = v
	switch {
	case expires.IsZero():
		if s.expiry != nil {
			s.expiry.Stop()
		}
	case s.expiry == nil:
		s.expiry = p.timers.afterFunc(time.Until(expires), func() {
			p.warnRefused(s.sub.peer, CodeNotAllowed, "ticket expired")
			p.end(s, CodeNotAllowed, "ticket expired", false)
		})
	default:
		s.expiry.Reset(time.Until(expires))
	}
}

// watchCatalog re-checks subscriptions when the catalog changes: the
// consumer's current entry and RTT against the predicates and tickets.
// Only the consumers whose entries changed are re-checked (every one of
// them heartbeats, so each is re-checked at least every announce
// interval), unless the catalog cannot say which changed or the local
// entry did.
func (p *Producer[T]) watchCatalog() {
	defer p.wg.Done()
	snap := p.svc.d.Catalog()
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-snap.Changed():
		}
		prev := snap
		snap = p.svc.d.Catalog() // evaluate exactly the snapshot waited on next
		only := changedPeers(prev, snap)
		p.mu.Lock()
		subs := make([]*outSub, 0, len(p.subs))
		for _, s := range p.subs {
			if only == nil || only[s.sub.peer] {
				subs = append(subs, s)
			}
		}
		p.mu.Unlock()
		if len(subs) == 0 {
			continue
		}
		now := time.Now()
		type fresh struct {
			s *outSub
			e *catalog.SignedEntry
		}
		var live []fresh
		for _, s := range subs {
			e, ok := snap.Get(s.sub.peer)
			if !ok {
				// The consumer departed, or went silent for PurgeAfter: on a
				// link that died without a reset (a partition) this is how
				// the producer notices. A consumer that is still there gets
				// UnknownPeer, syncs catalogs and resubscribes.
				p.end(s, CodeUnknownPeer, "consumer left the catalog", false)
				continue
			}
			live = append(live, fresh{s, e})
		}
		// One update of the subscription set for the whole change, so
		// conditions over tags see it at once (and the set's re-evaluation
		// runs once, not once per subscription).
		p.set.update(func() {
			for _, f := range live {
				f.s.sub.mu.Lock()
				f.s.sub.entry = f.e
				f.s.sub.mu.Unlock()
			}
		})
		for _, f := range live {
			expires, _, err := p.cfg.eligible(p.svc.d.RTT().Info(f.e), now)
			if err != nil {
				p.warnRefused(f.s.sub.peer, CodeNotAllowed, err.Error())
				p.end(f.s, CodeNotAllowed, err.Error(), false)
				continue
			}
			p.armExpiry(f.s, expires, f.e.Entry.Version)
		}
	}
}

// changedPeers returns the set of peers whose entries differ between prev
// and snap, or nil when every peer must be looked at: the catalog no
// longer remembers the changes, or the local entry changed.
func changedPeers(prev, snap *catalog.Snapshot) map[peer.ID]bool {
	ids, ok := snap.ChangedSince(prev)
	if !ok {
		return nil
	}
	local := snap.Local().Entry.PeerID
	set := make(map[peer.ID]bool, len(ids))
	for _, id := range ids {
		if id == local {
			return nil
		}
		set[id] = true
	}
	return set
}
