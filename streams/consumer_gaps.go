package streams

import (
	"github.com/libp2p/go-libp2p/core/peer"
)

// position is where a producer's datums were last received.
type position struct {
	epoch, last uint64
	clean       bool // the producer's run ended with a graceful Close after last
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
