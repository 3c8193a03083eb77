package node

import (
	"context"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"

	"github.com/mosaik-go/mosaik/internal/dialer"
)

// bootstrapLoop keeps the node connected to its bootstrap peers: one that
// is not connected is dialed after 250 ms, then with a backoff doubling to
// 30 s (5 s while the node is isolated: connected to no peer of its
// catalog, as at start or across a partition), reset once connected. So a
// restarted bootstrap peer, or a healed link, is used again within
// seconds. The node paces these dials itself, so it clears the swarm's
// dial backoff (which grows to minutes) before each.
func (n *Node) bootstrapLoop() {
	defer n.wg.Done()
	const first, most, mostIsolated = 250 * time.Millisecond, 30 * time.Second, 5 * time.Second
	waits := make([]time.Duration, len(n.bootstrap)) // backoff per peer; 0: connected last time
	next := make([]time.Time, len(n.bootstrap))      // no dial before
	warned := make([]bool, len(n.bootstrap))         // unreachable, logged at Warn (once until reached)
	for {
		isolated := n.isolated()
		sleep := time.Second // how soon a lost connection or isolation is noticed
		var due []int        // the peers to dial now
		for i, pi := range n.bootstrap {
			if n.h.Network().Connectedness(pi.ID) == network.Connected {
				waits[i], next[i] = 0, time.Time{}
				if warned[i] {
					warned[i] = false
					n.log.Info("bootstrap peer reached", "peer", pi.ID)
				}
				continue
			}
			if isolated && waits[i] > mostIsolated {
				waits[i], next[i] = mostIsolated, time.Time{}
			}
			if until := time.Until(next[i]); until > 0 {
				sleep = min(sleep, until)
				continue
			}
			if waits[i] > 0 || isolated {
				if sw, ok := n.h.Network().(interface{ Backoff() *swarm.DialBackoff }); ok {
					sw.Backoff().Clear(pi.ID)
				}
			}
			due = append(due, i)
		}
		// Dial the due peers at once, not one after another: each dial is
		// a handshake against a peer that may be busy, and a newcomer
		// enters a bootstrap peer's catalog only once connected (its sync
		// hello). Serial dials under a Sybil flood on a loaded machine made
		// the last of four bootstrap peers wait for the three handshakes
		// before it (0.3 to 0.7 s each; BENCHMARKS.md, session 11).
		errs := make([]error, len(due))
		var wg sync.WaitGroup
		for j, i := range due {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(n.ctx, 5*time.Second)
				errs[j] = dialer.Connect(ctx, n.h, n.bootstrap[i])
				cancel()
			})
		}
		wg.Wait()
		for j, i := range due {
			pi, err := n.bootstrap[i], errs[j]
			if err == nil {
				waits[i] = 0
				if warned[i] {
					warned[i] = false
					n.log.Info("bootstrap peer reached", "peer", pi.ID)
				}
				continue
			}
			if n.ctx.Err() != nil {
				return
			}
			n.bootstrapFailed(pi, err, warned[i])
			warned[i] = true
			limit := most
			if isolated {
				limit = mostIsolated
			}
			waits[i] = min(max(2*waits[i], first), limit)
			next[i] = time.Now().Add(waits[i])
			sleep = min(sleep, waits[i])
		}
		t := time.NewTimer(sleep)
		select {
		case <-n.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// isolated reports whether the node is connected to no peer of its
// catalog.
func (n *Node) isolated() bool {
	snap := n.disc.Catalog()
	for _, p := range n.h.Network().Peers() {
		if p == n.h.ID() {
			continue
		}
		if _, ok := snap.Get(p); ok {
			return false
		}
	}
	return true
}
