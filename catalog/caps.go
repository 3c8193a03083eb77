package catalog

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// Keeper tells the store which remote peers it must never evict when the
// catalog is full: peers we are connected to or hold subscriptions or
// bonds with. Those signals live outside the pure store; package node
// injects them with [Store.SetKeeper]. Keep is called with the store's
// lock held: it must be fast, must not block and must not call the store.
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

// evictable returns the peer to evict so that a new one fits: the newest
// seen among the last evictScan that holds no ticket and that the keeper
// does not keep; failing that, the newest seen among them that holds
// tickets. It reports false when the keeper keeps every one.
//
// Tickets are a preference, not a shield: the store cannot tell a ticket
// an issuer signed from one an attacker made up (it holds no validators of
// stream tickets), so sparing every ticket holder would let a Sybil pin
// catalog slots for good with junk tickets. The peers whose tickets did
// matter here (we subscribe to them, they to us, or we share a group)
// are the keeper's, and in a closed network every entry's admission
// ticket was checked before it got in.
func (s *Store) evictable(st *state) (peer.ID, bool) {
	k, _ := s.keeper.Load().(Keeper)
	var victim, ticketed peer.ID
	found, haveTicketed, scanned := false, false, 0
	st.seen.Descend(func(it timeItem) bool {
		if scanned++; scanned > evictScan {
			return false
		}
		p, ok := st.get(it.id)
		if !ok || (k != nil && k.Keep(it.id)) {
			return true
		}
		if len(p.e.Entry.Tickets) > 0 {
			if !haveTicketed {
				ticketed, haveTicketed = it.id, true
			}
			return true
		}
		victim, found = it.id, true
		return false
	})
	if !found && haveTicketed {
		return ticketed, true
	}
	return victim, found
}

// SetKeeper installs k, which names the peers eviction must spare (nil
// removes it). Entries that hold tickets go only after every other
// candidate (see evictable).
func (s *Store) SetKeeper(k Keeper) {
	s.keeper.Store(keeperBox{k})
}

// keeperBox lets atomic.Value hold a nil or any Keeper type.
type keeperBox struct{ Keeper }

func (b keeperBox) Keep(id peer.ID) bool { return b.Keeper != nil && b.Keeper.Keep(id) }
