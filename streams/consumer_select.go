package streams

import (
	"cmp"
	"context"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/catalog"
)

func (c *Consumer[T]) worker() {
	defer c.wg.Done()
	var prev *catalog.Snapshot
	woken := true
	for {
		snap := c.svc.d.Catalog()
		// A catalog change that touches no producer of the stream (nor the
		// local entry) cannot change the selection: skip the evaluation.
		if woken || c.affected(prev, snap) {
			c.evaluate(snap)
		}
		prev, woken = snap, false
		select {
		case <-c.ctx.Done():
			c.mu.Lock()
			for _, r := range c.recvs {
				r.cancel()
				r.stopTimers()
			}
			for _, ref := range c.refused {
				ref.forget()
			}
			c.mu.Unlock()
			return
		case <-snap.Changed():
		case <-c.wake:
			woken = true
		}
	}
}

// affected reports whether the change from prev to snap may change the
// consumer's selection: a peer that produces the stream in either
// snapshot changed, or the local entry did, or the catalog cannot say.
func (c *Consumer[T]) affected(prev, snap *catalog.Snapshot) bool {
	if prev == nil {
		return true
	}
	only := changedPeers(prev, snap)
	if only == nil {
		return true
	}
	for id := range only {
		if e, ok := prev.Get(id); ok && e.Entry.Produces(c.id) {
			return true
		}
		if e, ok := snap.Get(id); ok && e.Entry.Produces(c.id) {
			return true
		}
		if snap.Departed(id) {
			return true // endedInOrder looks at departures
		}
	}
	return false
}

// evaluate subscribes to eligible producers and drops ineligible ones.
func (c *Consumer[T]) evaluate(snap *catalog.Snapshot) {
	now := time.Now()
	rtt := c.svc.d.RTT()
	var eligible []candidate
	ours := ourEntryOf(&snap.Local().Entry)
	for _, e := range snap.Producers(c.id) {
		c.mu.Lock()
		ref, refused := c.refused[e.Entry.PeerID]
		if refused && !c.mayRetry(ref, &e.Entry, ours, now) {
			c.mu.Unlock()
			continue // refused for good; wait for either entry to change, then the backoff
		}
		c.mu.Unlock()
		if refused {
			c.set.remove(ref.sub)
		}
		info := rtt.Info(e)
		if !info.RTTKnown {
			c.probe(e.Entry.PeerID)
			continue
		}
		expires, _, err := c.cfg.eligible(info, now)
		if err != nil {
			c.warnIneligible(e.Entry.PeerID, err)
			continue
		}
		eligible = append(eligible, candidate{e, info, expires})
	}
	if k := c.cfg.lowestK; k > 0 {
		eligible = c.lowest(eligible, k)
	}
	keep := map[peer.ID]bool{}
	type incumbent struct {
		r *receiver
		x candidate
	}
	var renew []incumbent
	var fresh []candidate
	for _, x := range eligible {
		p := x.e.Entry.PeerID
		keep[p] = true
		c.mu.Lock()
		r, ok := c.recvs[p]
		c.mu.Unlock()
		if ok {
			renew = append(renew, incumbent{r, x})
		} else {
			fresh = append(fresh, x)
		}
	}
	// Through the set, so conditions see the new entries; one update for
	// all of them, so the set re-evaluates its conditions once.
	moved := false
	for _, in := range renew {
		in.r.sub.mu.Lock()
		moved = moved || in.r.sub.entry != in.x.e
		in.r.sub.mu.Unlock()
	}
	if moved {
		c.set.update(func() {
			for _, in := range renew {
				in.r.sub.mu.Lock()
				in.r.sub.entry = in.x.e
				in.r.sub.mu.Unlock()
			}
		})
	}
	for _, in := range renew {
		c.armExpiry(in.r, in.x.expires) // a renewed ticket pushes the expiry back
	}
	for _, x := range fresh {
		c.start(x.e, x.expires)
	}
	// Forget refusals of producers that left: their subscriptions leave
	// Producers() too.
	present := map[peer.ID]bool{}
	for _, e := range snap.Producers(c.id) {
		present[e.Entry.PeerID] = true
	}
	var stale []*subscription
	c.mu.Lock()
	for p, ref := range c.refused {
		if !present[p] {
			delete(c.refused, p)
			ref.forget()
			stale = append(stale, ref.sub)
		}
	}
	for p := range c.retries {
		if !present[p] {
			delete(c.retries, p)
		}
	}
	c.mu.Unlock()
	for _, sub := range stale {
		c.set.remove(sub)
	}
	// Drop receivers of producers that are gone or no longer eligible, but
	// let a connected one finish reading a producer that ended in order.
	c.mu.Lock()
	var drop, drain []*receiver
	for p, r := range c.recvs {
		switch {
		case keep[p]:
			if r.drain != nil { // eligible again: the link goes on
				r.drain.Stop()
				r.drain = nil
				r.draining.Store(false)
				// ended stays set: the old producer's GracefulShutdown at
				// the end of this link is no refusal of the new one (a
				// producer closed and created again on the same node).
			}
		case r.drain != nil: // already draining
		case endedInOrder(snap, p, c.id) && r.sub.info().State == Connected:
			r.ended.Store(true)
			r.draining.Store(true)
			r.drainGen++
			gen := r.drainGen
			r.drain = c.timers.afterFunc(c.svc.params.CloseTimeout, func() { c.drained(r, gen) })
			drain = append(drain, r)
		default:
			drop = append(drop, r)
			delete(c.recvs, p)
		}
	}
	c.mu.Unlock()
	for _, r := range drain {
		c.log.Debug("producer ended; reading what is left on the link", "peer", r.sub.peer)
	}
	for _, r := range drop {
		c.log.Debug("dropping ineligible producer", "peer", r.sub.peer)
		c.stop(r)
	}
}

// endedInOrder reports whether producer p left the stream in order: its
// current entry no longer lists the stream, or it sent a signed departure.
// A producer does both only after it closed its subscriptions (each gets
// what was queued for it, then a Close frame), so a consumer that cancelled
// its subscription on hearing of it would drop the last datums unread. A
// producer purged for silence, or one that no longer passes the
// consumer's predicates or tickets, is cut at once.
func endedInOrder(snap *catalog.Snapshot, p peer.ID, id StreamID) bool {
	if e, ok := snap.Get(p); ok {
		return !e.Entry.Produces(id)
	}
	return snap.Departed(p)
}

// drained cancels a draining receiver whose producer did not close the
// subscription within CloseTimeout. gen tells a stale timer (its drain was
// ended and another started) from the current one.
func (c *Consumer[T]) drained(r *receiver, gen uint64) {
	c.mu.Lock()
	cut := r.drain != nil && r.drainGen == gen && c.recvs[r.sub.peer] == r
	if cut {
		delete(c.recvs, r.sub.peer)
	}
	c.mu.Unlock()
	if cut {
		c.log.Debug("producer that ended did not close its subscription in time", "peer", r.sub.peer)
		c.stop(r)
		c.poke()
	}
}

// candidate is an eligible producer.
type candidate struct {
	e       *catalog.SignedEntry
	info    catalog.PeerInfo
	expires time.Time
}

// lowest keeps the k candidates with the lowest RTT. An incumbent (already
// subscribed) outside the best k stays unless the k-th best beats it by
// more than the hysteresis margin, so RTT noise does not churn links.
//
// A producer whose receiver is retrying after a failure (refused with a
// retryable code such as NoCapacity, or unreachable) does not take one of
// the k places: the best of the others do, and the failing one's receiver
// is kept on top of them, retrying on its backoff. Once it connects it
// competes again, and the hysteresis drops whichever it beats. (It held
// the place, so a best-RTT producer at capacity left the consumer without
// data for the whole reconnect backoff while others had room.)
func (c *Consumer[T]) lowest(cands []candidate, k int) []candidate {
	if len(cands) <= k {
		return cands
	}
	slices.SortFunc(cands, func(a, b candidate) int { return cmp.Compare(a.info.RTT, b.info.RTT) })
	// The candidates' receivers, read under c.mu and judged after it (a
	// subscription's lock is never taken under Consumer.mu: doc.go).
	recvs := make(map[peer.ID]*receiver, len(cands))
	c.mu.Lock()
	for _, x := range cands {
		if r := c.recvs[x.e.Entry.PeerID]; r != nil {
			recvs[x.e.Entry.PeerID] = r
		}
	}
	c.mu.Unlock()
	var healthy, failing []candidate
	for _, x := range cands {
		if r := recvs[x.e.Entry.PeerID]; r != nil && r.failing() {
			failing = append(failing, x)
		} else {
			healthy = append(healthy, x)
		}
	}
	if len(healthy) <= k {
		return append(healthy, failing...)
	}
	chosen := slices.Clone(healthy[:k])
	for _, x := range healthy[k:] {
		if recvs[x.e.Entry.PeerID] == nil {
			continue
		}
		// Replace the worst newcomer among the chosen, if any, when the
		// incumbent is within the margin of it.
		for i := len(chosen) - 1; i >= 0; i-- {
			if recvs[chosen[i].e.Entry.PeerID] != nil {
				continue
			}
			if float64(chosen[i].info.RTT) >= float64(x.info.RTT)*(1-c.cfg.hysteresis) {
				chosen[i] = x
			}
			break
		}
	}
	return append(chosen, failing...)
}

// failing reports whether the receiver is retrying after a failure: not
// connected, with the error of its last attempt.
func (r *receiver) failing() bool {
	r.sub.mu.Lock()
	defer r.sub.mu.Unlock()
	return r.sub.state != Connected && r.sub.err != nil
}

// probe takes an RTT sample of p in the background, then re-evaluates.
func (c *Consumer[T]) probe(p peer.ID) {
	c.mu.Lock()
	if c.probing[p] {
		c.mu.Unlock()
		return
	}
	c.probing[p] = true
	c.wg.Add(1)
	c.mu.Unlock()
	go func() {
		defer c.wg.Done()
		_, err := c.svc.d.Probe(c.ctx, p)
		c.mu.Lock()
		delete(c.probing, p)
		c.mu.Unlock()
		if err == nil {
			c.poke()
		} else if c.ctx.Err() == nil {
			c.log.Debug("RTT probe of producer failed", "peer", p, "err", err)
		}
	}()
}

func (c *Consumer[T]) start(e *catalog.SignedEntry, expires time.Time) {
	ctx, cancel := context.WithCancel(c.ctx)
	r := &receiver{sub: &subscription{stream: c.id, peer: e.Entry.PeerID, entry: e, state: Connecting}, cancel: cancel, done: make(chan struct{})}
	c.mu.Lock()
	if c.ctx.Err() != nil {
		c.mu.Unlock()
		cancel()
		return
	}
	c.recvs[e.Entry.PeerID] = r
	r.sub.pos = c.cell(e.Entry.PeerID)
	// A receiver of this producer cancelled just before (its ticket
	// expired, the producer was dropped and picked up again) may still be
	// reading: the new one starts once it ended, or it would resume from
	// the position the old one had when its last session began, and have
	// the replay window resend, or count as missed, what the old one
	// delivered since.
	prev := c.running[e.Entry.PeerID]
	c.running[e.Entry.PeerID] = r.done
	c.wg.Add(1)
	c.mu.Unlock()
	c.set.add(r.sub)
	c.armExpiry(r, expires)
	go c.receive(ctx, r, prev)
}

// armExpiry (re)sets a receiver's ticket-expiry timer. The timer belongs to
// this receiver, so it can never cut a later one.
func (c *Consumer[T]) armExpiry(r *receiver, expires time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case expires.IsZero():
		if r.expiry != nil {
			r.expiry.Stop()
		}
	case r.expiry == nil:
		r.expiry = c.timers.afterFunc(time.Until(expires), func() {
			c.mu.Lock()
			if c.recvs[r.sub.peer] == r {
				delete(c.recvs, r.sub.peer)
			}
			c.mu.Unlock()
			c.log.Debug("producer ticket expired", "peer", r.sub.peer)
			c.stop(r)
			c.poke()
		})
	default:
		r.expiry.Reset(time.Until(expires))
	}
}

func (c *Consumer[T]) stop(r *receiver) {
	c.mu.Lock()
	r.stopTimers()
	c.mu.Unlock()
	r.cancel()
}

// stopTimers stops the receiver's ticket-expiry and drain timers. Called
// with Consumer.mu held.
func (r *receiver) stopTimers() {
	if r.expiry != nil {
		r.expiry.Stop()
	}
	if r.drain != nil {
		r.drain.Stop()
	}
}
