package catalog

import (
	"errors"
	"fmt"
	"time"
)

// Params tunes the catalog store. Start from [DefaultParams] or
// [TestParams]; the zero value is not valid.
type Params struct {
	// PurgeAfter is how long an entry stays without an update before it is
	// stale: stale entries are refused on merge and removed by Purge. Peers
	// refresh their entry every announce interval, so PurgeAfter must be
	// several announce intervals. Default 300 s (as in mosaik).
	PurgeAfter time.Duration
	// LateGrace is how much older than PurgeAfter an entry may be when it
	// arrives and still be taken: an entry is stale, ignored on arrival,
	// once it is PurgeAfter + LateGrace old by its update time ([Params.MaxAge]).
	// A held entry is purged PurgeAfter after the local time its newest
	// version arrived, and at the latest when it turns MaxAge. So a live
	// peer whose heartbeats reach us late (a loaded machine, a slow path)
	// stays in the catalog as long as they arrive younger than MaxAge,
	// rather than being purged and kept out for the very lateness that
	// purged it; a dead peer's last entry, relayed late, lingers at most
	// until MaxAge. A purge leaves a tombstone of the purged version until
	// it turns MaxAge, so a late copy of it cannot bring the peer back.
	// Zero is the strict rule: entries are stale at PurgeAfter by their
	// update time. Default 300 s (equal to PurgeAfter).
	LateGrace time.Duration
	// MaxClockDrift bounds how far in the future an entry's update time, and
	// how far from now a departure's timestamp, may be. Default 50 s.
	MaxClockDrift time.Duration
	// MaxEntrySize caps a sealed entry in bytes. Default 8 KiB: a typical
	// entry (4 addresses, 3 tags, 2 streams, a 300-byte ticket) seals to
	// 819 bytes; one with 64 addresses (16 of them WebTransport with a
	// certhash), 32 streams, 32 tags and two 1 KB tickets to 6.4 KiB.
	// A local entry over it is an error at startup and on update.
	MaxEntrySize int
	// MaxPeers caps the remote peers the catalog holds, so no input can
	// grow it without bound. A new peer that finds it full evicts the
	// newest-seen peer that holds no vouched ticket (see [TicketCheck])
	// and that the store's [Keeper] does not keep (connected, subscribed
	// or bonded peers); when none of the newest few hundred can go, the
	// new peer is refused (ignored, not rejected). Default 10 000.
	MaxPeers int
	// EvictMinAge spares the peers that entered the catalog less than
	// EvictMinAge ago from eviction by a new peer the [Keeper] does not
	// keep: when the peer eviction would pick is that young, the new peer
	// is refused (ignored, not rejected; reason "catalog_churn") before
	// its signature is verified. Without it a flood of fresh identities
	// costs each node a signature check, a merge and an eviction per
	// identity, and turns the newest slot over at the flood's rate; with
	// it a full catalog takes at most one such peer per EvictMinAge, and
	// the rest cost a decode. A new peer the Keeper keeps (one we are
	// connected to: its sync hello, or its entry relayed by gossip) is
	// never held back by it. Zero turns it off. Default 5 s.
	EvictMinAge time.Duration
	// MinUpdateInterval and UpdateBurst limit how often a peer's entry may
	// change: by the entries' own update timestamps, a peer gets one update
	// per MinUpdateInterval, with bursts of up to UpdateBurst (a token
	// bucket, run as GCRA on the timestamps). An update beyond that is
	// refused (ignored, not rejected: gossip drops it without penalty) and
	// counted ([Store.RateLimited], reason "rate_limited"). Heartbeats,
	// seconds apart, always pass; package discovery holds the local node's
	// own changes beyond the burst and coalesces them, so that every
	// receiver takes every version it publishes. Judging by timestamps
	// rather than arrival makes the verdict independent of the path and
	// delay that brought an update; a forger dating updates ahead borrows
	// at most MaxClockDrift worth. MinUpdateInterval zero disables the
	// limit. Defaults 1 s and 8.
	MinUpdateInterval time.Duration
	UpdateBurst       int
	// MaxPeersPerIP caps the entries that announce one public IP address,
	// and MaxPeersPerSubnet those that announce addresses in one /24
	// (IPv4) or /48 (IPv6): an entry that would exceed either is refused
	// (ignored). Only public addresses count: loopback, private and
	// link-local ones name no host others can tell apart (every peer of a
	// test on one machine is 127.0.0.1), so entries announcing only those
	// are held by MaxPeers and eviction alone. Zero disables a cap.
	// Defaults 8 and 64.
	MaxPeersPerIP     int
	MaxPeersPerSubnet int
	// EventBuffer is the per-subscription event buffer. When a subscriber
	// falls further behind, the oldest events are dropped and the
	// subscriber is told how many (see [LagError]). Default 256.
	EventBuffer int
}

// DefaultParams returns the production defaults.
func DefaultParams() Params {
	return Params{
		PurgeAfter:    300 * time.Second,
		LateGrace:     300 * time.Second,
		MaxClockDrift: 50 * time.Second,
		MaxEntrySize:  DefaultMaxEntrySize,
		MaxPeers:      10_000,
		EvictMinAge:   5 * time.Second,
		EventBuffer:   256,

		MinUpdateInterval: time.Second,
		UpdateBurst:       8,
		MaxPeersPerIP:     8,
		MaxPeersPerSubnet: 64,
	}
}

// TestParams returns a fast profile for tests: entries go stale after 3 s,
// and the update rate limit and EvictMinAge are off, so that table tests
// of the store can step versions and arrivals by a millisecond
// (discovery's test profile turns the rate limit on).
func TestParams() Params {
	p := DefaultParams()
	p.PurgeAfter = 3 * time.Second
	p.LateGrace = 3 * time.Second
	p.MaxClockDrift = 5 * time.Second
	p.MinUpdateInterval = 0
	p.EvictMinAge = 0
	return p
}

// MaxAge is the age (now minus update time) at which an entry is stale:
// PurgeAfter + LateGrace.
func (p Params) MaxAge() time.Duration { return p.PurgeAfter + p.LateGrace }

// Validate reports every invalid field. It does not modify p.
func (p Params) Validate() error {
	var errs []error
	if p.PurgeAfter <= 0 {
		errs = append(errs, fmt.Errorf("PurgeAfter must be > 0, got %v", p.PurgeAfter))
	}
	if p.LateGrace < 0 {
		errs = append(errs, fmt.Errorf("LateGrace must be >= 0, got %v", p.LateGrace))
	}
	if p.MaxClockDrift <= 0 {
		errs = append(errs, fmt.Errorf("MaxClockDrift must be > 0, got %v", p.MaxClockDrift))
	}
	if p.MaxEntrySize < 512 || p.MaxEntrySize > 4<<20 {
		errs = append(errs, fmt.Errorf("MaxEntrySize must be within [512, 4 MiB], got %d", p.MaxEntrySize))
	}
	if p.MaxPeers < 1 {
		errs = append(errs, fmt.Errorf("MaxPeers must be >= 1, got %d", p.MaxPeers))
	}
	if p.MinUpdateInterval < 0 || p.MinUpdateInterval >= p.PurgeAfter {
		errs = append(errs, fmt.Errorf("MinUpdateInterval must be within [0, PurgeAfter), got %v", p.MinUpdateInterval))
	}
	if p.MinUpdateInterval > 0 && p.UpdateBurst < 1 {
		errs = append(errs, fmt.Errorf("UpdateBurst must be >= 1 with a MinUpdateInterval, got %d", p.UpdateBurst))
	}
	if p.EvictMinAge < 0 {
		errs = append(errs, fmt.Errorf("EvictMinAge must be >= 0, got %v", p.EvictMinAge))
	}
	if p.MaxPeersPerIP < 0 || p.MaxPeersPerSubnet < 0 {
		errs = append(errs, fmt.Errorf("MaxPeersPerIP and MaxPeersPerSubnet must be >= 0, got %d and %d", p.MaxPeersPerIP, p.MaxPeersPerSubnet))
	}
	if p.EventBuffer < 1 {
		errs = append(errs, fmt.Errorf("EventBuffer must be >= 1, got %d", p.EventBuffer))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("catalog: invalid params: %w", err)
	}
	return nil
}
