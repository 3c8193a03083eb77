package catalog

import (
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// Keeper tells the store which remote peers it must never evict when the
// catalog is full: peers we are connected to or hold subscriptions or
// bonds with. Those signals live outside the pure store; package node
// injects them with [Store.SetKeeper]. Keep is called with or without the
// store's lock held (a full catalog asks it about every new peer, also
// before the signature check): it must be fast, must not block and must
// not call the store.
type Keeper interface {
	Keep(id peer.ID) bool
}

// KeeperFunc adapts a function to [Keeper].
type KeeperFunc func(peer.ID) bool

// Keep calls f.
func (f KeeperFunc) Keep(id peer.ID) bool { return f(id) }

// evictScan bounds how many of the newest entries the store considers for
// eviction before it refuses a new peer: when that many in a row must be
// kept, the catalog is full of peers worth keeping.
const evictScan = 256

// capKeys returns the count keys of e: each public IP address it
// announces and each subnet of them, without duplicates. Loopback,
// private, link-local and otherwise non-global addresses are not counted:
// they name no host that others could tell apart (every peer of a test on
// one machine is 127.0.0.1, every peer of a LAN shares its private
// range), so an entry that announces only such addresses is held by
// MaxPeers and eviction alone.
func capKeys(e *Entry) []capKey {
	var keys []capKey
	for _, a := range e.Addrs {
		ip, ok := publicIP(a)
		if !ok {
			continue
		}
		bits := 24
		if ip.Is6() {
			bits = 48
		}
		pfx, _ := ip.Prefix(bits)
		keys = append(keys, capKey{addr: ip}, capKey{subnet: true, addr: pfx.Addr()})
	}
	slices.SortFunc(keys, compareCapKeys)
	return slices.Compact(keys)
}

// publicIP returns the IP address of a's first component if it is a
// global unicast address outside the private ranges.
func publicIP(a ma.Multiaddr) (netip.Addr, bool) {
	if len(a) == 0 {
		return netip.Addr{}, false
	}
	c := a[0]
	if c.Code() != ma.P_IP4 && c.Code() != ma.P_IP6 {
		return netip.Addr{}, false
	}
	ip, ok := netip.AddrFromSlice(c.RawValue())
	if !ok {
		return netip.Addr{}, false
	}
	ip = ip.Unmap()
	if !ip.IsGlobalUnicast() || ip.IsPrivate() || ip.IsLoopback() {
		return netip.Addr{}, false
	}
	return ip, true
}

// checkCaps reports whether admitting e (replacing old, if not nil) would
// put more than MaxPeersPerIP entries on one of its public addresses or
// more than MaxPeersPerSubnet on one of its subnets.
func (s *Store) checkCaps(st *state, e, old *SignedEntry) error {
	if s.params.MaxPeersPerIP <= 0 && s.params.MaxPeersPerSubnet <= 0 {
		return nil
	}
	if old != nil && slices.EqualFunc(old.Entry.Addrs, e.Entry.Addrs, ma.Multiaddr.Equal) {
		return nil // a heartbeat: the counts stay
	}
	var had []capKey
	if old != nil {
		had = capKeys(&old.Entry)
	}
	for _, k := range capKeys(&e.Entry) {
		if slices.Contains(had, k) {
			continue // e replaces old at this address: the count stays
		}
		limit, what := s.params.MaxPeersPerIP, "address"
		if k.subnet {
			limit, what = s.params.MaxPeersPerSubnet, "subnet"
		}
		if limit > 0 && st.count(k) >= limit {
			return fmt.Errorf("%w: %s %s already has %d peers", ErrAddressCap, what, k.addr, limit)
		}
	}
	return nil
}

// evictable returns the peer to evict so that a new peer fits at now:
// the newest seen among the last evictScan that is not vouched for (see
// [TicketCheck]) and that the keeper does not keep; failing that, the
// newest seen among them that is vouched for. It returns ErrCatalogFull
// when the keeper keeps every one, and ErrCatalogChurn when the peer it
// would pick entered less than EvictMinAge before now and the new peer is
// not kept (newKept).
//
// A ticket in an entry is a preference only when it is vouched for: the
// store cannot tell a ticket an issuer signed from one an attacker made
// up, so counting every ticket would let a Sybil with junk tickets outlast
// honest peers that hold none. The peers whose tickets do matter here (we
// subscribe to them, they to us, or we share a group) are the keeper's.
//
// The age rule picks the same victim and only defers it: the candidate is
// the newest-seen, so an older peer is never evicted in its place, and a
// refused peer comes back with its next heartbeat or sync.
func (s *Store) evictable(st *state, now time.Time, newKept bool) (peer.ID, error) {
	k, _ := s.keeper.Load().(Keeper)
	var victim, vouched peerItem
	found, haveVouched, scanned := false, false, 0
	st.seen.Descend(func(it timeItem) bool {
		if scanned++; scanned > evictScan {
			return false
		}
		p, ok := st.get(it.id)
		if !ok || (k != nil && k.Keep(it.id)) {
			return true
		}
		if p.vouch.at(now.UnixMilli()) {
			if !haveVouched {
				vouched, haveVouched = p, true
			}
			return true
		}
		victim, found = p, true
		return false
	})
	if !found {
		if !haveVouched {
			return "", fmt.Errorf("%w: %d peers, none of the newest %d evictable", ErrCatalogFull, st.peers.Len(), evictScan)
		}
		victim = vouched
	}
	if age := now.Sub(time.Unix(0, victim.seen)); !newKept && age < s.params.EvictMinAge {
		return "", fmt.Errorf("%w: %d peers, the one to evict arrived %v ago", ErrCatalogChurn, st.peers.Len(), age.Round(time.Millisecond))
	}
	return victim.id, nil
}

// TicketCheck tells the store which entries hold a ticket that counts at
// eviction (see [Params.MaxPeers]): Vouches reports whether some local
// validator accepts one of e's tickets. It is called with the store's lock
// held when an entry that holds tickets is merged (once per peer and set
// of tickets: a heartbeat that keeps them keeps the verdict), so it must
// be fast, must not block and must not call the store. Without one, only
// the entries of a closed catalog count as vouched for: their admission
// ticket was verified (see [Store.SetAdmission]).
type TicketCheck interface {
	Vouches(e *Entry, now time.Time) bool
}

// TicketCheckUntil is a [TicketCheck] that also says until when it vouches
// for an entry (the zero time: no end). A check that implements it is
// asked VouchesUntil instead of Vouches, and the entry stops counting as a
// ticket holder at eviction when its tickets expire, not at its next
// update. The ticket check the node builds (node.WithEvictionTickets)
// does.
type TicketCheckUntil interface {
	TicketCheck
	VouchesUntil(e *Entry, now time.Time) (until time.Time, ok bool)
}

// vouch is a TicketCheck verdict: ok until end (unix ms; 0: no end).
type vouch struct {
	ok  bool
	end int64
	gen uint64 // the ticket check's generation (ticketCheckBox) that gave it
}

// at reports whether the verdict holds at now (ms).
func (v vouch) at(nowMS int64) bool { return v.ok && (v.end == 0 || nowMS < v.end) }

// TicketCheckFunc adapts a function to [TicketCheck].
type TicketCheckFunc func(e *Entry, now time.Time) bool

// Vouches calls f.
func (f TicketCheckFunc) Vouches(e *Entry, now time.Time) bool { return f(e, now) }

// SetTicketCheck installs c (nil removes it). Entries already held keep
// their verdict until their next update.
func (s *Store) SetTicketCheck(c TicketCheck) {
	s.ticketMu.Lock()
	defer s.ticketMu.Unlock()
	s.tickets.Store(ticketCheckBox{c: c, gen: s.tickets.Load().(ticketCheckBox).gen + 1})
}

// ticketCheckBox lets atomic.Value hold a nil or any TicketCheck type; gen
// counts the checks installed, so that a verdict of another one (or of
// none) is not kept.
type ticketCheckBox struct {
	c   TicketCheck
	gen uint64
}

// vouched reports whether e counts as a ticket holder at eviction: in a
// closed catalog every admitted entry does, else one that the ticket check
// vouches for. old is the peer's held item, if known: an update with the
// same tickets keeps its verdict, when the same check gave it (entries
// held before SetTicketCheck are judged at their next update).
func (s *Store) vouched(e *SignedEntry, old peerItem, known bool, now time.Time) vouch {
	if s.Admission() != nil {
		return vouch{ok: true} // purged when its admission ends
	}
	if len(e.Entry.Tickets) == 0 {
		return vouch{}
	}
	box := s.tickets.Load().(ticketCheckBox)
	c := box.c
	if c == nil {
		return vouch{}
	}
	if known && old.vouch.gen == box.gen &&
		slices.EqualFunc(old.e.Entry.Tickets, e.Entry.Tickets, func(a, b Ticket) bool { return compareTickets(a, b) == 0 }) {
		return old.vouch
	}
	if cu, ok := c.(TicketCheckUntil); ok {
		until, ok := cu.VouchesUntil(&e.Entry, now)
		if !ok {
			return vouch{gen: box.gen}
		}
		v := vouch{ok: true, gen: box.gen}
		if !until.IsZero() {
			v.end = until.UnixMilli()
		}
		return v
	}
	return vouch{ok: c.Vouches(&e.Entry, now), gen: box.gen}
}

// SetKeeper installs k, which names the peers eviction must spare (nil
// removes it). Entries vouched for go only after every other candidate
// (see evictable).
func (s *Store) SetKeeper(k Keeper) {
	s.keeper.Store(keeperBox{k})
}

// keeperBox lets atomic.Value hold a nil or any Keeper type.
type keeperBox struct{ Keeper }

func (b keeperBox) Keep(id peer.ID) bool { return b.Keeper != nil && b.Keeper.Keep(id) }
