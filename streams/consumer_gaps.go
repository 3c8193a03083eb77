package streams

import (
	"fmt"

	"github.com/libp2p/go-libp2p/core/peer"
)

// position is where a producer's datums were last received.
type position struct {
	epoch, last uint64
	clean       bool // the producer's run ended with a graceful Close after last
	// restart, on a position {epoch, 0} of a new run none of whose datums
	// was handed over: the previous run's position, whose restart gap the
	// first datum handed over still owes the application.
	restart *position
}

// maxSeen bounds Consumer.seen: beyond it, positions of producers without a
// receiver are forgotten (their next subscription counts as a first one).
const maxSeen = 4096

// remember records where a producer's datums were last received. Beyond
// maxSeen producers, those without a receiver are forgotten.
func (c *Consumer[T]) remember(p peer.ID, pos position) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.seen[p]; ok && old.epoch == pos.epoch && old.last > pos.last {
		pos.last = old.last // a stale session ending late never moves it back
	}
	c.seen[p] = pos
	if len(c.seen) > maxSeen {
		for q := range c.seen {
			if c.recvs[q] == nil && q != p {
				delete(c.seen, q)
			}
		}
	}
}

// sequencer follows the sequence numbers of one subscription and tells the
// gaps in them. Where the producer's datums were last received (prev)
// decides what the first number means: with the same epoch, a jump is what
// was sent while the consumer was away; with a new epoch, the producer
// restarted; with no history, nothing was missed. Not safe for concurrent
// use: it belongs to the session reading the subscription.
type sequencer struct {
	prev    position
	cur     position
	want    uint64 // the sequence number expected next; 0: none yet
	restart bool   // the first datum follows a producer restart
	first   bool
	// replay: the producer resends from its replay window what followed
	// prev, so a jump before the first datum is what left the window.
	replay bool
}

func newSequencer(epoch uint64, prev position, known bool) *sequencer {
	known = known && epoch != 0 && prev.epoch != 0
	if prev.restart != nil && prev.last == 0 {
		// The first session of prev's run handed nothing over: the restart
		// gap, after the previous run's position, is still owed. Of the
		// same run, the producer resends from 1.
		q := &sequencer{prev: *prev.restart, cur: position{epoch: epoch}, restart: known, first: true}
		if known && prev.epoch == epoch {
			q.want = 1
		}
		return q
	}
	q := &sequencer{prev: prev, cur: position{epoch: epoch}, restart: known && prev.epoch != epoch, first: true}
	if known && !q.restart {
		q.want, q.cur.last = prev.last+1, prev.last
	}
	return q
}

// next takes the sequence number of the datum just read. It returns the
// gap right before it (nil if none), or an error wrapping errProtocol for a
// number that no producer sends (zero, or going backwards).
func (q *sequencer) next(seq uint64) (*Gap, error) {
	if seq == 0 || seq < q.want {
		return nil, fmt.Errorf("%w: sequence %d after %d", errProtocol, seq, q.cur.last)
	}
	var gap *Gap
	switch {
	case q.restart:
		q.restart = false
		if seq > 1 || !q.prev.clean {
			gap = &Gap{Cause: GapRestart, Missed: seq - 1, After: q.prev.last}
		}
	case q.want != 0 && seq > q.want:
		gap = &Gap{Cause: GapDropped, Missed: seq - q.want, After: q.cur.last}
		switch {
		case q.first && q.replay:
			gap.Cause = GapExpired
		case q.first:
			gap.Cause = GapReconnect
		}
	}
	q.first, q.want, q.cur.last = false, seq+1, seq
	return gap, nil
}

// closed records the producer's Close frame; clean means GracefulShutdown,
// so a later run starting at 1 lost nothing.
func (q *sequencer) closed(clean bool) { q.cur.clean = clean }

// position returns where this subscription left the producer's datums,
// and whether it is worth remembering (the producer has an epoch and the
// subscription saw a datum or a clean end).
func (q *sequencer) position() (position, bool) {
	return q.cur, q.cur.epoch != 0 && (q.cur.last > 0 || q.cur.clean)
}
