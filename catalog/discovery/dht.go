package discovery

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/catalog"
)

// dhtLoop stores the local entry and provider records in the DHT once the
// join settled (Params.SettleDelay), then after every change and every
// DHTRepublishInterval. A failed put (an empty routing table) is retried
// sooner, backing off from 250 ms up to the republish interval.
func (s *Service) dhtLoop() {
	// Each put and provide is a DHT lookup that dials the closest peers
	// it finds: at start, with a routing table of the bootstrap peer at
	// most, they competed with the join for the CPU and the bootstrap
	// peer, and many failed and were retried. Changes made until then are
	// in the first put.
	select {
	case <-s.ctx.Done():
		return
	case <-s.settled:
	}
	t := time.NewTimer(0)
	defer t.Stop()
	retry := 250 * time.Millisecond
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.dhtNow:
		case <-t.C:
		}
		next := s.params.DHTRepublishInterval
		if !s.putDHT() {
			next = min(retry, next)
			retry = min(2*retry, s.params.DHTRepublishInterval)
		} else {
			retry = 250 * time.Millisecond
		}
		t.Stop()
		select {
		case <-t.C:
		default:
		}
		t.Reset(next)
	}
}

// putDHT stores the local entry and provider records; it reports whether
// the entry reached the DHT.
func (s *Service) putDHT() bool {
	ctx, cancel := context.WithTimeout(s.ctx, s.params.DHTTimeout)
	defer cancel()
	local := s.Local()
	ok := true
	if err := s.dht.PutValue(ctx, DHTKey(s.network, s.h.ID()), local.Bytes()); err != nil {
		s.stats.dhtPutFailures.Add(1)
		s.log.Debug("DHT put failed", "err", err)
		ok = false
	} else {
		s.stats.dhtPuts.Add(1)
	}
	cids := append(make([]cid.Cid, 0, len(local.Entry.Streams)+1), NetworkCID(s.network))
	for _, st := range local.Entry.Streams {
		cids = append(cids, StreamCID(s.network, st))
	}
	for _, c := range cids {
		if err := s.dht.Provide(ctx, c, true); err != nil {
			s.log.Debug("DHT provide failed", "cid", c, "err", err)
			ok = false
		}
	}
	return ok
}

// FindProducers returns the catalog's producers of stream id after asking
// the DHT for more: every provider of the stream's CID is looked up, its
// signed entry fetched, verified and merged into the catalog (so it also
// finds producers that gossip has not reached). Without a DHT it returns
// the catalog's producers.
func (s *Service) FindProducers(ctx context.Context, id catalog.StreamID) ([]*catalog.SignedEntry, error) {
	if s.ctx.Err() != nil {
		return nil, ErrClosed
	}
	if s.dht == nil {
		return s.store.Snapshot().Producers(id), nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.params.DHTTimeout)
	defer cancel()
	var errs []error
	for pi := range s.dht.FindProvidersAsync(ctx, StreamCID(s.network, id), 64) {
		if pi.ID == s.h.ID() {
			continue
		}
		s.h.Peerstore().AddAddrs(pi.ID, pi.Addrs, s.params.Catalog.PurgeAfter)
		if err := s.fetchEntry(ctx, pi.ID); err != nil {
			errs = append(errs, err)
		}
	}
	found := s.store.Snapshot().Producers(id)
	if len(found) == 0 && len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if len(found) == 0 && ctx.Err() != nil {
		return nil, fmt.Errorf("discovery: find producers of %s: %w", id.Short(), ctx.Err())
	}
	return found, nil
}

// FetchEntry reads p's signed entry from the DHT and merges it.
func (s *Service) fetchEntry(ctx context.Context, p peer.ID) error {
	val, err := s.dht.GetValue(ctx, DHTKey(s.network, p))
	if err != nil {
		return fmt.Errorf("discovery: DHT entry of %s: %w", p, err)
	}
	e, err := s.open(val, s.now(), fromDHT)
	if err != nil {
		if !catalog.IsRejected(err) {
			return nil // the catalog already holds this version or a newer one
		}
		s.stats.refuse(true, catalog.Reason(err))
		return fmt.Errorf("discovery: DHT entry of %s: %w", p, err)
	}
	s.merge(e, fromDHT)
	return nil
}

// The routing-table refresh that kad-dht runs itself unless built with
// DHTOptions (its defaults in v0.42): every 10 minutes, and every 2
// minutes while the table holds fewer than 10 peers.
const (
	dhtRefreshInterval = 10 * time.Minute
	dhtLowCheck        = 2 * time.Minute
	dhtLowPeers        = 10
)

// dhtRefreshLoop refreshes the DHT's routing table once the join settled
// and then as kad-dht's automatic refresh would (DHTOptions turns that
// off; see there why). On a borrowed DHT that still refreshes itself a
// call costs a lookup of our own ID and liveness pings of stale peers:
// a refresh skips buckets refreshed within kad-dht's period.
func (s *Service) dhtRefreshLoop() {
	select {
	case <-s.ctx.Done():
		return
	case <-s.settled:
	}
	_ = s.dht.RefreshRoutingTable() // the result comes on a buffered channel nobody needs to read
	last := time.Now()
	t := time.NewTicker(dhtLowCheck)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		if time.Since(last) >= dhtRefreshInterval || s.dht.RoutingTable().Size() < dhtLowPeers {
			_ = s.dht.RefreshRoutingTable()
			last = time.Now()
		}
	}
}
