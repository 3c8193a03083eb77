package streams

import (
	"slices"
	"strings"
	"sync"

	"github.com/libp2p/go-libp2p/core/peer"
)

// posCell is where the application stands in one producer's datums: the
// epoch and sequence number of the last datum it took. Written once per
// datum taken, read by Positions.
type posCell struct {
	mu         sync.Mutex
	epoch, seq uint64
}

func (p *posCell) set(epoch, seq uint64) {
	p.mu.Lock()
	p.epoch, p.seq = epoch, seq
	p.mu.Unlock()
}

func (p *posCell) get() (uint64, uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.epoch, p.seq
}

// cell returns producer p's position cell, creating it. Beyond maxSeen
// producers, the cells of those without a receiver are forgotten. Called
// with c.mu held.
func (c *Consumer[T]) cell(p peer.ID) *posCell {
	if x, ok := c.taken[p]; ok {
		return x
	}
	x := &posCell{}
	c.taken[p] = x
	if len(c.taken) > maxSeen {
		for q := range c.taken {
			if c.recvs[q] == nil && q != p {
				delete(c.taken, q)
			}
		}
	}
	return x
}

// Positions returns, per producer, the position of the last datum the
// application took from it (Recv, RecvDatum, TryRecv, All), sorted by
// producer; positions given with WithResumeFrom count until a datum of
// that producer is taken. Datums still in the delivery buffer are not
// counted: after a restart with WithResumeFrom(saved...), the datums
// after the saved positions are asked for again. Safe for concurrent use.
func (c *Consumer[T]) Positions() []Position {
	c.mu.Lock()
	out := make([]Position, 0, len(c.taken))
	cells := make([]*posCell, 0, len(c.taken))
	for p, x := range c.taken {
		out = append(out, Position{Producer: p})
		cells = append(cells, x)
	}
	c.mu.Unlock()
	k := 0
	for i := range out {
		out[i].Epoch, out[i].Seq = cells[i].get()
		if out[i].Epoch != 0 {
			out[k] = out[i]
			k++
		}
	}
	out = out[:k]
	slices.SortFunc(out, func(a, b Position) int { return strings.Compare(string(a.Producer), string(b.Producer)) })
	return out
}
