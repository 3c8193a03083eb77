package discovery

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/catalog/pb"
	"github.com/mosaik-go/mosaik/internal/framer"
)

// Departure hand-off (PROTOCOL.md section 10.10). A departure published on
// gossip has no delivery acknowledgement, so Leave used to wait a fixed
// DepartureGrace for pubsub to write it before the host could close. Now
// Leave also hands the signed departure to a few connected peers over a
// stream of its own; a peer that holds the departing node's entry checks
// the departure, publishes it on gossip itself (it is anonymous and carries
// its author's signature, so any node may; the content-based message ID
// makes the copies one message), applies it and answers "taken". Leave
// returns as soon as one peer has taken it (the other hand-offs are cut
// short), and waits DepartureGrace only when none did.
const (
	// maxDepartHandoffs is how many peers a departing node hands its
	// departure to.
	maxDepartHandoffs = 4
	// maxDepartServing bounds the hand-offs served at once and
	// maxDepartPerPeer those of one peer (a slots table, as for syncs: a
	// newcomer takes the slot of the oldest one still waiting for its
	// frame, others are reset).
	maxDepartServing = 16
	maxDepartPerPeer = 2
	// departReadTimeout bounds how long a served hand-off may take to
	// send its departure.
	departReadTimeout = 2 * time.Second
)

var (
	errRefusedHandoff = errors.New("discovery: the peer refused the departure")
	errNotHeld        = errors.New("discovery: the peer does not hold this node's entry")
)

// Answers to a hand-off, one byte. Only departTaken ends the sender's wait.
const (
	departTaken   byte = 0 // applied here, now or before
	departRefused byte = 1 // the departure did not pass the catalog's checks
	departNotHeld byte = 2 // this node holds no entry of the sender, or a newer one
)

// DepartProtocol is the departure hand-off protocol of network n
// (PROTOCOL.md section 10.10): "/mosaik/catalog/depart/1.0.0/<network hex>".
func DepartProtocol(n catalog.NetworkID) protocol.ID {
	return protocol.ID(departProtocolPrefix + n.String())
}

const departProtocolPrefix = "/mosaik/catalog/depart/1.0.0/"

// handOff hands the sealed departure dep to up to maxDepartHandoffs
// connected peers that serve the hand-off, at once, and reports whether
// one took it before ctx ended.
func (s *Service) handOff(ctx context.Context, dep []byte) bool {
	proto := DepartProtocol(s.network)
	var to []peer.ID
	for _, p := range s.h.Network().Peers() {
		if ok, _ := s.h.Peerstore().SupportsProtocols(p, proto); len(ok) > 0 {
			to = append(to, p)
		}
	}
	rand.Shuffle(len(to), func(i, j int) { to[i], to[j] = to[j], to[i] })
	to = to[:min(len(to), maxDepartHandoffs)]
	// The first peer to take it is enough: the rest are cut short, so a
	// slow peer does not hold the departure up.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		taken atomic.Bool
		wg    sync.WaitGroup
	)
	for _, p := range to {
		wg.Go(func() {
			if err := s.handOffTo(ctx, p, proto, dep); err != nil {
				s.log.Debug("departure hand-off failed", "peer", p, "err", err)
				return
			}
			taken.Store(true)
			cancel()
		})
	}
	wg.Wait()
	return taken.Load()
}

func (s *Service) handOffTo(ctx context.Context, p peer.ID, proto protocol.ID, dep []byte) error {
	st, err := s.h.NewStream(network.WithNoDial(ctx, "departure hand-off"), p, proto)
	if err != nil {
		return err
	}
	defer func() { _ = st.Close() }()
	// When ctx ends (a peer took the departure, or DepartureGrace passed)
	// a hand-off still writing is reset. One whose departure is written
	// only stops waiting for the answer: on QUIC a reset discards the
	// frame at a peer that has not read it yet (a loaded one: under load
	// few hand-offs are answered within the fast profile's 100 ms grace).
	// Half-closed, the stream still delivers it until the connection
	// closes (on yamux even after that; a QUIC connection's close drops
	// what the peer has not read).
	var (
		mu      sync.Mutex
		written bool
	)
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if written {
			_ = st.CloseRead()
			return
		}
		_ = st.Reset()
	})
	defer stop()
	if err := framer.WriteFrame(st, dep); err != nil {
		_ = st.Reset()
		return err
	}
	if err := st.CloseWrite(); err != nil {
		_ = st.Reset()
		return err
	}
	mu.Lock()
	written = true
	mu.Unlock()
	var ans [1]byte
	if _, err := io.ReadFull(st, ans[:]); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	}
	switch ans[0] {
	case departTaken:
	case departNotHeld:
		return errNotHeld
	default:
		return errRefusedHandoff
	}
	return nil
}

// handleDepart serves a departure hand-off: one frame holding a sealed
// departure, checked like one from gossip, published on gossip by this
// node, applied, then answered.
func (s *Service) handleDepart(st network.Stream) {
	if !s.enter() {
		_ = st.Reset()
		return
	}
	defer s.wg.Done()
	from := st.Conn().RemotePeer()
	_, member := s.store.Snapshot().Get(from)
	sl, evicted, code, _ := s.departs.take(from, st, !member)
	if evicted != nil {
		s.stats.refuse(false, "busy")
		_ = evicted.st.ResetWithError(network.StreamResourceLimitExceeded)
	}
	if sl == nil {
		s.stats.refuse(false, "busy")
		_ = st.ResetWithError(code)
		return
	}
	defer s.departs.release(sl)
	defer func() { _ = st.Close() }()
	_ = st.SetDeadline(time.Now().Add(departReadTimeout))
	data, err := framer.ReadFrame(bufio.NewReaderSize(st, 256), catalog.MaxDepartureSize)
	if !s.departs.read(sl) {
		return // evicted: already reset and counted
	}
	if err != nil {
		if c := causeOf(err); c == "oversize" || c == "truncated" {
			s.stats.refuse(true, c)
		}
		_ = st.Reset()
		return
	}
	ans, err := s.takeDeparture(from, data)
	if err != nil {
		s.stats.refuse(catalog.IsRejected(err), catalog.Reason(err))
		s.log.Debug("departure hand-off refused", "from", from, "err", err)
	}
	_, _ = st.Write([]byte{ans})
}

// takeDeparture checks a handed-off departure; when this node holds the
// peer at that version or older, it publishes the departure on gossip and
// applies it. It returns the answer: departTaken once applied (here and
// now, or before: the gossip copy came first), departNotHeld when this
// node holds no entry of the peer, or a newer one (it cannot pass the
// departure on: the sender should not count on it), departRefused with
// the reason when the departure does not pass the checks.
//
// It publishes before it applies: the publication, byte for byte the
// departing peer's own, marks the message seen, so its gossip copy is a
// duplicate here whenever it comes; and a copy that came first was
// validated before this node applied the departure, so it was forwarded.
// Either way the departure goes on from here once.
func (s *Service) takeDeparture(from peer.ID, data []byte) (byte, error) {
	d, err := catalog.OpenDeparture(data)
	if err != nil {
		return departRefused, err
	}
	if d.PeerID != from {
		// Only the departing peer hands its departure off; a relay of
		// someone else's is gossip's job.
		return departRefused, fmt.Errorf("%w: a departure of %s handed off by %s", catalog.ErrSignerMismatch, d.PeerID, from)
	}
	switch err := s.store.CheckDeparture(d, s.now()); {
	case errors.Is(err, catalog.ErrUnknown):
		if s.store.Snapshot().DepartedAt(d.PeerID, d.LastVersion) {
			return departTaken, nil // its gossip copy came first
		}
		return departNotHeld, nil
	case errors.Is(err, catalog.ErrNotNewer):
		s.stats.refuse(false, catalog.Reason(err))
		return departNotHeld, nil
	case err != nil:
		return departRefused, err
	}
	if err := s.publish(s.ctx, &pb.Announcement{Kind: &pb.Announcement_Departure{Departure: data}}); err != nil {
		s.log.Debug("handed-off departure not published", "peer", d.PeerID, "err", err)
	}
	s.depart(d) // false only when its gossip copy was applied meanwhile: taken either way
	return departTaken, nil
}
