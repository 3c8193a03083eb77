package streams

import (
	"encoding/binary"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/mosaik-go/mosaik/catalog"
)

// refusal is a producer whose receiver ended for good. It is retried once
// the content of either catalog entry changed (theirs, ours; not their
// versions, which every heartbeat bumps), and then not before next: a
// backoff per producer, carried across refusals, spaces the retries. A
// verdict can also change with time alone (a ticket's not-before passes),
// so it is retried without a change too, at recheck (Params.RefusalRetryMax
// after the refusal, or next if later). Its subscription stays in
// Producers() as Terminated, with its error, for Params.RefusalRetention
// at most, until hide fires.
type refusal struct {
	theirs, ours catalog.ID // contentKey of both entries at the refusal
	// anyVersion: the producer ended on its own side (GracefulShutdown,
	// StreamNotFound) while its entry still listed the stream; any newer
	// version of its entry allows a retry, since a stream closed and
	// created again between two snapshots leaves the content unchanged.
	anyVersion bool
	version    catalog.Version // the producer's entry version at the refusal
	// oursPending: the producer may have judged a copy of our entry older
	// than ours (this refusal answered a retry that our own change caused,
	// or cut a session after our entry changed, say a ticket renewed just
	// before the old one expired, or the producer did not know us and no
	// sync helped); our next version (a heartbeat, which carries the entry
	// again) allows one more retry.
	oursPending bool
	oursVersion catalog.Version // our entry version at the refusal
	sub         *subscription
	hide        *time.Timer
	bo          backoff.BackOff
	next        time.Time   // no retry before this
	recheck     time.Time   // a retry without a change of either entry, not before this
	wake        *time.Timer // re-evaluates at wakeAt: next once an entry changed, else recheck
	wakeAt      time.Time
}

// forget stops the refusal's timers. Called with Consumer.mu held.
func (r refusal) forget() {
	if r.hide != nil {
		r.hide.Stop()
	}
	if r.wake != nil {
		r.wake.Stop()
	}
}

// changed reports whether the producer's or our entry changed in a way that
// may change the producer's answer.
func (r refusal) changed(theirs *catalog.Entry, ours ourEntry) bool {
	return r.ours != ours.key || r.theirs != contentKey(theirs) || (r.anyVersion && r.version != theirs.Version) ||
		(r.oursPending && r.oursVersion != ours.version)
}

// ourEntry is what a refusal compares of the consumer's own entry.
type ourEntry struct {
	key     catalog.ID
	version catalog.Version
}

func ourEntryOf(e *catalog.Entry) ourEntry { return ourEntry{key: contentKey(e), version: e.Version} }

// retry is the state a refused producer being retried carries into its
// next refusal.
type retry struct {
	bo          backoff.BackOff
	oursChanged bool // the retry followed a change of our own entry
}

// contentKey hashes what a producer can judge of an entry and what a
// producer's reconfiguration changes in its own: everything but the
// update time and the addresses. The run's start time is in it, so a
// restarted peer counts as changed.
func contentKey(e *catalog.Entry) catalog.ID {
	b := make([]byte, 0, 256)
	str := func(s []byte) {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	b = binary.BigEndian.AppendUint64(b, uint64(e.Version.StartMS))
	str(e.Network[:])
	str([]byte(e.Protocol))
	b = binary.AppendUvarint(b, uint64(len(e.Tags)))
	for _, t := range e.Tags {
		b = append(b, t[:]...)
	}
	b = binary.AppendUvarint(b, uint64(len(e.Streams)))
	for _, s := range e.Streams {
		b = append(b, s[:]...)
	}
	b = binary.AppendUvarint(b, uint64(len(e.Tickets)))
	for _, t := range e.Tickets {
		b = append(b, t.Class[:]...)
		str(t.Data)
	}
	b = binary.AppendUvarint(b, uint64(len(e.Groups)))
	for _, g := range e.Groups {
		b = append(append(b, g.Group[:]...), g.Role)
	}
	b = binary.AppendUvarint(b, uint64(len(e.Names)))
	for _, n := range e.Names {
		str([]byte(n))
	}
	return catalog.HashID(b)
}

// newRefusalBackoff spaces the retries of one refused producer:
// exponential from Params.RefusalRetryMin, doubling, ±50 % jitter, capped
// at Params.RefusalRetryMax, never giving up.
func (c *Consumer[T]) newRefusalBackoff() backoff.BackOff {
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = c.svc.params.RefusalRetryMin
	bo.MaxInterval = c.svc.params.RefusalRetryMax
	bo.Multiplier = 2
	bo.RandomizationFactor = 0.5
	bo.MaxElapsedTime = 0
	bo.Reset()
	return bo
}

// mayRetry reports whether refused producer e may be subscribed to again
// now. When an entry changed but its backoff has not elapsed, it arms a
// wake-up at the end of the backoff. On true, the refusal is gone and its
// backoff is kept for the next refusal. Called with Consumer.mu held.
func (c *Consumer[T]) mayRetry(ref refusal, e *catalog.Entry, ours ourEntry, now time.Time) bool {
	due := ref.recheck
	if ref.changed(e, ours) {
		due = ref.next
	}
	if now.Before(due) {
		// Arm, or re-arm: for an earlier due, or when the wake armed for
		// an earlier one has passed (a change that came and went).
		if ref.wake == nil || ref.wakeAt.After(due) || !ref.wakeAt.After(now) {
			if ref.wake != nil {
				ref.wake.Stop()
			}
			ref.wake, ref.wakeAt = c.timers.afterFunc(due.Sub(now), c.poke), due
			c.refused[e.PeerID] = ref
		}
		return false
	}
	delete(c.refused, e.PeerID)
	ref.forget()
	c.retries[e.PeerID] = retry{bo: ref.bo, oursChanged: ref.ours != ours.key}
	return true
}

// refuse records that producer theirs refused the consumer for good with
// err (whose code may be none); oursStale says the producer may have
// judged an older copy of our entry. It returns the subscription of a
// refusal it replaced, which the caller removes from the set once it has
// released Consumer.mu. Called with Consumer.mu held.
func (c *Consumer[T]) refuse(sub *subscription, theirs, ours *catalog.Entry, oursStale bool, err error) (replaced *subscription) {
	if old, had := c.refused[sub.peer]; had {
		old.forget()
		replaced = old.sub
	}
	rt, had := c.retries[sub.peer]
	delete(c.retries, sub.peer)
	if !had {
		rt.bo = c.newRefusalBackoff()
	}
	code, _ := codeOf(err)
	now := time.Now()
	next := now.Add(rt.bo.NextBackOff())
	c.refused[sub.peer] = refusal{theirs: contentKey(theirs), ours: contentKey(ours),
		anyVersion: code == CodeGracefulShutdown || code == CodeStreamNotFound, version: theirs.Version,
		oursPending: rt.oursChanged || oursStale, oursVersion: ours.Version,
		sub: sub, bo: rt.bo, next: next, recheck: later(next, now.Add(c.svc.params.RefusalRetryMax)),
		hide: c.timers.afterFunc(c.svc.params.RefusalRetention, func() { c.set.remove(sub) })}
	return replaced
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
