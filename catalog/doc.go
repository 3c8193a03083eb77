// Package catalog is the pure model of the mosaik peer catalog: the signed
// entry every peer publishes about itself, the rules by which a node merges
// the entries it receives, and the immutable snapshots through which the
// rest of the node reads the result.
//
// The package does no I/O and starts no goroutines. Every decision that
// depends on time takes the current time, now, as an argument, so the whole
// model is tested deterministically. Gossip, sync and DHT bootstrap belong
// to the discovery service, which drives this package. Of go-libp2p only
// core/crypto, core/peer and core/record are imported (a test enforces it).
//
// # IDs
//
// An [ID] is 32 bytes. Networks, streams, tags and ticket classes are IDs
// ([NetworkID], [StreamID], [Tag] and [TicketClass] are aliases). They are
// derived from strings by one rule, [IDFromString]: exactly 64 hexadecimal
// characters, in either case, decode to the 32 bytes; any other string is
// hashed with BLAKE3-256. So "orders" and the hex of blake3("orders") name
// the same stream, and [ID.String] (64 lowercase hex characters) round-trips
// through IDFromString. [ID.UnmarshalText] applies the same rule, so
// configuration files may hold names or hex. [HashID] always hashes;
// [ID.Derive] is blake3(id ‖ info); [ID.Short] (the first 5 bytes, 10 hex
// characters) is meant for logs and metric labels.
//
// # Entries
//
// An [Entry] is a peer's self-description: its peer ID, network, protocol
// string, [Version], addresses, tags, produced streams and tickets. The sets
// are kept sorted and unique ([Entry.Normalize]), which makes the encoding
// canonical and lets [Entry.HasTag] and [Entry.Produces] use binary search.
//
// A Version is (StartMS, UpdateMS): the unix millisecond at which the node's
// run began, and a per-run counter that follows the wall clock. Versions
// compare lexicographically. [Version.Next] sets UpdateMS to
// max(UpdateMS, now)+1, so versions strictly increase even when the clock
// stalls or steps back, and a restarted node (a later StartMS) beats every
// entry of its previous run.
//
// A [SignedEntry] is an entry together with its sealed bytes. [Seal]
// normalizes a copy of the entry, encodes it as deterministic protobuf
// (catalog/pb) and signs it as a libp2p record envelope under the
// mosaik-only domain [EntryDomain] with payload type [EntryPayloadType]; the
// key must be the entry's peer's. [OpenEntry] verifies untrusted bytes and
// checks, in this order: the size cap (before any decoding), the envelope,
// that the signer's key is ed25519, the payload type, the signature and
// domain, the entry's structure (field sizes, the caps [MaxAddrs],
// [MaxTags], [MaxStreams], [MaxTickets], a valid version, parseable
// multiaddrs), and that the signer is the entry's peer. It does not look at
// the network, the freshness or the version: that is the [Store]'s job.
// Sealed bytes in the canonical encoding [Seal] produces have a content
// hash ([SignedEntry.ContentHash]) that a heartbeat does not change: a
// receiver that holds that content rebuilds a newer version from its
// version and signature alone ([SignedEntry.ApplyBump], the bumps of
// catalog sync 2.1.0), then opens the result like any received bytes.
// [SealDeparture] and [OpenDeparture] do the same for a [Departure], the
// signed notice of a leaving peer ([DepartureDomain], at most
// [MaxDepartureSize] bytes).
//
// [Local] owns the local peer's key and current entry. [Local.Update]
// applies a change and bumps the version (and re-seals) only if the content
// changed; [Local.Refresh] always bumps, and is the liveness heartbeat;
// [Local.Departure] seals a departure for the current version.
//
// # The store and its verdicts
//
// A [Store] is the catalog of one network: the local entry plus the remote
// entries that passed its rules. [Store.Merge] applies them in order:
//
//   - another network: [ErrOtherNetwork];
//   - the local peer's own entry: [ErrLocal];
//   - updated more than Params.MaxClockDrift after now: [ErrClockDrift];
//   - updated Params.MaxAge (PurgeAfter + LateGrace) or longer before now
//     (stale): [ErrStale];
//   - not strictly newer than the known entry of that peer, or than the
//     last version of a peer that departed or was purged: [ErrNotNewer];
//   - over the peer's update rate limit, one update per
//     Params.MinUpdateInterval with bursts of Params.UpdateBurst, judged by
//     the entries' own timestamps, the bucket kept across a departure
//     or purge and the peer's return (a new run begun a refill's time
//     after the last one starts with a full bucket): [ErrRateLimited]
//     (counted by [Store.RateLimited]);
//   - announcing a public IP address already announced by
//     Params.MaxPeersPerIP entries, or one in a /24 (IPv4) or /48 (IPv6)
//     announced by Params.MaxPeersPerSubnet: [ErrAddressCap] (loopback,
//     private and link-local addresses are not counted);
//   - a new peer while the catalog holds Params.MaxPeers, when no peer may
//     be evicted: [ErrCatalogFull]; or when the peer eviction would pick
//     entered less than Params.EvictMinAge ago and the Keeper does not
//     keep the new peer: [ErrCatalogChurn] (judged before the signature,
//     so that a flood of fresh identities costs a decode each);
//
// and otherwise adds the entry ([Added]) or replaces the older one
// ([Updated]). A new peer that finds the catalog full evicts the peer seen
// most recently among those that the store's [Keeper] (injected with
// [Store.SetKeeper]; package discovery keeps connected and protected
// peers) does not keep, preferring one not vouched for: long-known and
// useful peers stay, and the newest stranger makes room. An entry is
// vouched for when a [TicketCheck] (see [Store.SetTicketCheck]) accepts
// one of its tickets (until they expire, with a [TicketCheckUntil]), or,
// in a closed catalog, by its verified admission ticket; any other ticket counts for nothing, since the store cannot
// tell a real ticket from a made-up one. [Store.Check] answers the same question without changing
// anything; [Store.MergeBytes] is OpenEntry (with Params.MaxEntrySize)
// followed by Merge.
//
// [Store.Depart] applies a departure: it must be for this network and dated
// within MaxClockDrift of now (either way), the peer must be known
// ([ErrUnknown] otherwise), and its LastVersion must be at least the known
// version ([ErrNotNewer] otherwise), so a replayed old departure never
// removes a peer that has come back. The store then remembers the departed
// peer's LastVersion as a tombstone until that version is stale, so that
// older entries of the peer still travelling through gossip or syncs cannot
// bring it back; a newer entry (the peer returned) is accepted and clears
// the tombstone. [Store.CheckDeparture] answers Depart's question without
// changing anything (gossip validation asks it). [Store.Purge] removes
// every entry whose newest version arrived PurgeAfter ago or turned MaxAge
// old (a late heartbeat, younger than MaxAge, still holds its peer for
// PurgeAfter from its arrival), leaving a tombstone of its version as a
// departure does, and every tombstone whose version turned MaxAge old;
// [Store.NextExpiry] says when it next has work.
//
// Every refusal is an error value checked with errors.Is. [IsRejected] sorts
// them in two classes, like the Accept / Reject / Ignore of gossip
// validation: rejected input is invalid (oversize, malformed, bad
// signature, signer mismatch, wrong payload type, other network, clock
// drift, and in a closed catalog [ErrUnadmitted]) and the peer that sent it
// misbehaved; the rest ([ErrStale],
// [ErrNotNewer], [ErrLocal], [ErrUnknown], [ErrRateLimited],
// [ErrAddressCap], [ErrCatalogFull]) is valid but useless now, and is
// dropped quietly. [Reason] gives a short stable label for metrics.
//
// A closed network's store has an [Admission] check ([Store.SetAdmission];
// package policy's Require over ticket validators implements it): every
// remote entry must pass it, after its signature is verified, and the
// verdict is cached per (peer, version). An entry is purged the instant
// its admission ends, as if it had gone stale.
//
// # Snapshots
//
// Reads go through a [Snapshot], an immutable view taken without locks by
// [Store.Snapshot]. Its indexes are persistent B-trees shared with the
// snapshots before and after it, so an update costs O(log n) time and
// memory whatever the catalog size, and [Snapshot.Producers] is a range
// of an index. It never changes; every change to the store publishes a
// new one whose [Snapshot.Version] is one higher, and closes the old one's
// [Snapshot.Changed] channel. To follow the catalog, wait on Changed, then
// take the store's current snapshot. [Snapshot.Get] includes the local
// entry; [Snapshot.Len], [Snapshot.All], [Snapshot.Peers] and
// [Snapshot.Producers] cover remote peers only, in peer ID order. Snapshots
// do not filter stale entries by themselves: an entry stays visible until
// Purge removes it. Entries are shared between snapshots and must be treated
// as read-only ([Entry.Clone] before changing one). [Snapshot.ChangedSince]
// names the peers that changed between two snapshots, so a reader that
// follows Changed can re-examine only those.
//
// # Events
//
// [Store.Subscribe] returns a [Subscription] to future changes of remote
// peers: [PeerDiscovered] and [PeerUpdated] on merges, [PeerDeparted] on
// departures, on purges (with Event.Purged set) and on evictions (with
// Event.Evicted set). Event.Old is the entry replaced or removed, so a
// consumer can react to what changed only. Changes of the local
// entry ([Store.SetLocal]) are not events. Writers never wait for
// subscribers: each subscription has a bounded buffer (Params.EventBuffer,
// or the size given to Subscribe), and when it is full the oldest event is
// dropped and counted. The next call to [Subscription.Next] then returns a
// [*LagError] whose Missed field says how many were lost (errors.Is(err,
// [ErrLagged])) and the subscription carries on with the events it kept. A
// subscriber that lagged should re-read the current snapshot. After
// [Subscription.Close] or [Store.Close], Next still returns the buffered
// events, then [ErrClosed].
//
// # RTT
//
// [RTTTable] keeps a smoothed round-trip time per peer by RFC 6298 (the
// first sample R gives SRTT = R and RTTVAR = R/2; then alpha = 1/8 and
// beta = 1/4). [PeerInfo] pairs an entry with its RTT for eligibility
// predicates; [PeerInfo.RTTBelow] is a strict comparison and optimistic: it
// is true while a peer has no sample.
//
// # Usual sequence
//
// The discovery service does, in essence:
//
//	local, err := catalog.NewLocal(key, network, time.Now(), func(e *catalog.Entry) {
//		e.Addrs = host.Addrs()
//	})
//	store, err := catalog.NewStore(local.Current(), catalog.DefaultParams())
//	defer store.Close()
//
//	// On every announce tick, and after every local change:
//	s, err := local.Refresh(time.Now()) // or local.Update(time.Now(), change)
//	err = store.SetLocal(s)
//	publish(s.Bytes())
//
//	// For every entry received by gossip or sync:
//	e, outcome, err := store.MergeBytes(data, time.Now())
//	switch {
//	case err == nil: // a new or updated peer; an event was emitted
//	case catalog.IsRejected(err): // penalise the sender
//	default: // stale or redundant: ignore
//	}
//
//	// For every departure received:
//	d, err := catalog.OpenDeparture(data)
//	if err == nil {
//		removed, err := store.Depart(d, time.Now())
//	}
//
//	// When the timer set from store.NextExpiry() fires:
//	gone := store.Purge(time.Now())
//
//	// On shutdown: publish local.Departure(time.Now()), then store.Close().
//
// and the rest of the node reads store.Snapshot() and consumes
// store.Subscribe(0).
//
// # The caller's duties
//
//   - Pass now from the wall clock. Versions carry wall-clock milliseconds,
//     and freshness, clock drift and departure dates are judged against now.
//   - Run [Store.Purge] when [Store.NextExpiry] says, and re-arm the timer
//     after every merge, departure and purge. Nothing else removes stale
//     entries and tombstones, and snapshots show stale entries until then.
//   - Give [Store.Merge] only entries made by [Seal] or [OpenEntry], and
//     [Store.Depart] only departures from [OpenDeparture]: the store trusts
//     its arguments and does not verify signatures itself.
//   - After every change of the [Local] entry, install it with
//     [Store.SetLocal] (it must be strictly newer) and publish its bytes.
//     With [Local.SetUpdateLimit], call [Local.Flush] when [Local.Pending]
//     says, so that a held change is published.
//   - Treat every entry read from a snapshot or an event as read-only, and
//     do not modify the buffers passed to or returned by this package.
//   - Forget a peer's RTT ([RTTTable.Remove]) when it departs or is purged.
//   - Close subscriptions and the store when done.
//
// # Concurrency
//
// [Store] is safe for concurrent use: reads are lock-free snapshots,
// writers serialize on a mutex, and no method blocks on a subscriber.
// [Snapshot], [SignedEntry] and [ID] values are immutable and may be shared
// freely. [Subscription] and [RTTTable] are safe for concurrent use; a
// subscription is meant to be drained by one goroutine. [Local] is not safe
// for concurrent use: its owner serializes calls.
//
// Lock order: a [Store]'s mutex, then a [Subscription]'s (the store
// pushes events to its subscriptions under its own lock; a subscription
// never takes the store's lock while holding its own: Close releases it
// first). An [RTTTable]'s lock is a leaf, never held with another. No lock
// is held while calling out of the package, and no method blocks on a
// subscriber.
package catalog
