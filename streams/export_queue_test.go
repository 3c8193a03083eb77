package streams

import (
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
)

// QueueState is one subscription's queue as its producer sees it, for the
// external tests of fan-out and memory bounds.
type QueueState struct {
	Peer     peer.ID
	Len, Cap int   // datums queued, queue capacity
	Bytes    int64 // payload bytes pinned: queued plus the datum being written
}

// Queues returns the state of p's subscriptions' queues.
func Queues[T any](p *Producer[T]) []QueueState {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]QueueState, 0, len(p.subs))
	for _, s := range p.subs {
		out = append(out, QueueState{Peer: s.sub.peer, Len: len(s.q), Cap: cap(s.q), Bytes: s.queued.Load()})
	}
	return out
}

// PeakQueuedBytes returns the most payload bytes one subscription of p ever
// pinned, ended subscriptions included.
func PeakQueuedBytes[T any](p *Producer[T]) int64 { return p.peakQueued.Load() }

// HostAttached reports whether the streams protocol dispatcher holds h.
func HostAttached(h host.Host) bool {
	_, ok := muxes.Load(h)
	return ok
}
