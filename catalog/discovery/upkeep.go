package discovery

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/p2p/protocol/ping"

	"github.com/mosaik-go/mosaik/catalog"
)

func (s *Service) hostEventLoop() {
	for {
		select {
		case <-s.ctx.Done():
			return
		case ev, ok := <-s.hostSub.Out():
			if !ok {
				return
			}
			switch ev := ev.(type) {
			case event.EvtPeerIdentificationCompleted:
				s.log.Debug("peer identified", "peer", ev.Peer)
				if !s.params.DisableSync && slices.ContainsFunc(ev.Protocols, s.isSyncProtocol) && s.shouldSync(ev.Peer) {
					if s.topic != nil {
						s.connectSync(ev.Peer)
					} else {
						s.startSync(ev.Peer)
					}
				}
			case event.EvtPeerConnectednessChanged:
				s.log.Debug("peer connectedness", "peer", ev.Peer, "connectedness", ev.Connectedness.String())
				if ev.Connectedness != network.Connected {
					s.dropped.note(ev.Peer, time.Now())
					signal(s.connectNow)
				} else if _, ok := s.store.Snapshot().Get(ev.Peer); ok && ev.Peer != s.h.ID() {
					s.tagIfConnected(ev.Peer)
				}
			case event.EvtPeerIdentificationFailed:
				s.closeMute(ev.Peer, ev.Reason)
			case event.EvtLocalAddressesUpdated:
				if _, err := s.UpdateLocal(func(e *catalog.Entry) { e.Addrs = s.h.Addrs() }); err != nil {
					s.log.Warn("cannot update local addresses", "err", err)
				}
			}
		}
	}
}

// closeMute closes the connections to p after identify failed on one of
// them while p stays connected: most often a timeout on a loaded host
// (identify allows 5 s). go-libp2p runs identify once per connection and
// never again, and gossipsub opens its stream to a peer, and this service
// starts its sync, only once identify completed: such a connection would
// carry nothing for as long as it lasts, and a node whose only connection
// it is (a newcomer with one bootstrap peer) would stay cut off. Closed,
// the bootstrap loop or the connection top-up dials again, with a fresh
// identify.
func (s *Service) closeMute(p peer.ID, why error) {
	if p == s.h.ID() || s.h.Network().Connectedness(p) != network.Connected {
		return // the connection is gone already
	}
	// Only a timeout: identify also fails on a connection that closed
	// under it (two crossed dials, one closed), while another connection
	// to p is healthy and must stay.
	var te interface{ Timeout() bool }
	if !errors.Is(why, context.DeadlineExceeded) && !(errors.As(why, &te) && te.Timeout()) {
		return
	}
	// Events come late: another connection to p, identified, may carry
	// this node's gossip stream to it by now (crossed dials, a redial).
	// Then nothing is mute and nothing is closed.
	for _, c := range s.h.Network().ConnsToPeer(p) {
		for _, st := range c.GetStreams() {
			if st.Stat().Direction == network.DirOutbound && isGossipProtocol(string(st.Protocol())) {
				return
			}
		}
	}
	s.log.Info("identify failed on a live connection; closing it so that a new one identifies the peer", "peer", p, "err", why)
	if err := s.h.Network().ClosePeer(p); err != nil {
		s.log.Debug("closing a mute connection", "peer", p, "err", err)
		return
	}
	s.stats.muteClosed.Add(1) // once closed: what a reader of the count may check
}

// isGossipProtocol reports whether a stream protocol is gossipsub's (or
// floodsub's), as the router opens one to every peer it knows.
func isGossipProtocol(id string) bool {
	return strings.HasPrefix(id, "/meshsub/") || strings.HasPrefix(id, "/floodsub/")
}

// shouldSync decides whether a new connection to p warrants a full sync:
// when p is not in our catalog (a new peer, or one we purged during a
// partition), or while our catalog is empty (we are new). Connections to
// known peers add nothing a sync would: gossip keeps known entries fresh,
// and skipping them keeps a DHT-driven full mesh from costing O(N²) syncs.
func (s *Service) shouldSync(p peer.ID) bool {
	snap := s.store.Snapshot()
	if snap.Len() == 0 {
		return true
	}
	_, known := snap.Get(p)
	return !known
}

// keep is the store's eviction Keeper: it spares peers we are connected
// to and peers whose connections someone protects (package node protects
// the peers of live subscriptions, package groups its bonds). Called under
// the store's lock: the host's calls take only their own locks.
func (s *Service) keep(p peer.ID) bool {
	return s.h.Network().Connectedness(p) == network.Connected || s.h.ConnManager().IsProtected(p, "")
}

// evictLoop forgets what the service keeps about peers the catalog
// evicted to make room (their RTT and connection-manager tag), as
// purgeLoop does for purged ones. A lagging subscription loses only that
// tidying: the RTT table is bounded by the peers probed, and the
// connection manager forgets tags with the last connection.
func (s *Service) evictLoop(sub *catalog.Subscription) {
	defer sub.Close()
	for {
		ev, err := sub.Next(s.ctx)
		if errors.Is(err, catalog.ErrLagged) {
			continue
		}
		if err != nil {
			return
		}
		if ev.Kind == catalog.PeerDeparted && ev.Evicted {
			s.rtt.Remove(ev.Peer)
			s.h.ConnManager().UntagPeer(ev.Peer, s.cmTag)
			s.log.Debug("peer evicted from the full catalog", "peer", ev.Peer)
		}
	}
}

// purgeLoop removes each entry as soon as it goes stale.
func (s *Service) purgeLoop() {
	for {
		snap := s.store.Snapshot()
		var expire <-chan time.Time
		var t *time.Timer
		if at, ok := s.store.NextExpiry(); ok {
			t = time.NewTimer(at.Sub(s.now()) + time.Millisecond)
			expire = t.C
		}
		select {
		case <-s.ctx.Done():
		case <-snap.Changed():
		case <-expire:
			for _, e := range s.store.Purge(s.now()) {
				s.rtt.Remove(e.Entry.PeerID)
				s.h.ConnManager().UntagPeer(e.Entry.PeerID, s.cmTag)
				s.stats.purged.Add(1)
				s.log.Debug("peer purged", "peer", e.Entry.PeerID, "last_update", e.Entry.Version.UpdatedAt())
			}
		}
		if t != nil {
			t.Stop()
		}
		if s.ctx.Err() != nil {
			return
		}
	}
}

// rttLoop probes the connected catalog peers on a jittered interval.
func (s *Service) rttLoop() {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		for e := range s.store.Snapshot().All() {
			p := e.Entry.PeerID
			if s.h.Network().Connectedness(p) != network.Connected {
				continue
			}
			if _, err := s.Probe(s.ctx, p); err != nil && s.ctx.Err() == nil {
				s.log.Debug("rtt probe failed", "peer", p, "err", err)
			}
		}
		t.Reset(jitter(s.params.RTTProbeInterval, 0.5))
	}
}

// flight is one RTT probe in progress; concurrent Probe calls for the
// same peer share it (libp2p allows few concurrent pings per peer).
type flight struct {
	done chan struct{}
	rtt  time.Duration
	err  error
}

// Probe measures the RTT to p once with libp2p ping (dialing if needed),
// records the sample in the RTT table and returns it. A probe of p already
// in progress is joined rather than repeated. It gives up after
// Params.PingTimeout or when ctx ends.
func (s *Service) Probe(ctx context.Context, p peer.ID) (time.Duration, error) {
	s.syncMu.Lock()
	if f := s.probing[p]; f != nil {
		s.syncMu.Unlock()
		select {
		case <-f.done:
			return f.rtt, f.err
		case <-ctx.Done():
			return 0, fmt.Errorf("discovery: ping %s: %w", p, ctx.Err())
		}
	}
	f := &flight{done: make(chan struct{})}
	s.probing[p] = f
	s.syncMu.Unlock()
	defer func() {
		s.syncMu.Lock()
		delete(s.probing, p)
		s.syncMu.Unlock()
		close(f.done)
	}()
	if s.h.Network().Connectedness(p) != network.Connected {
		// The catalog's addresses are not in the peerstore (see merged).
		if pi := s.dialInfo(p); len(pi.Addrs) > 0 {
			s.h.Peerstore().AddAddrs(p, pi.Addrs, peerstore.TempAddrTTL)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, s.params.PingTimeout)
	defer cancel() // ping.Ping keeps pinging until its ctx ends
	select {
	case res := <-ping.Ping(ctx, s.h, p):
		if res.Error != nil {
			f.err = fmt.Errorf("discovery: ping %s: %w", p, res.Error)
			return 0, f.err
		}
		s.rtt.Record(p, res.RTT, s.now())
		s.stats.rtt.Record(ctx, res.RTT.Seconds(), s.stats.rttAttrs)
		f.rtt = res.RTT
		return res.RTT, nil
	case <-ctx.Done():
		f.err = fmt.Errorf("discovery: ping %s: %w", p, ctx.Err())
		return 0, f.err
	}
}
