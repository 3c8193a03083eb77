// Package discovery keeps the catalog of one mosaik network fresh on a
// libp2p host. It is the I/O half of package catalog: catalog holds the
// entry model, signing and merge rules with no network access; discovery
// moves signed entries between peers and feeds them to a [catalog.Store].
//
// # What the service does
//
// A [Service] serves one network on one host. Once started it:
//
//   - publishes the local peer's signed entry on the network's gossipsub
//     topic ([TopicName]) at start, after every change, on a jittered
//     heartbeat (Params.AnnounceInterval; a new version each time) and,
//     unchanged, shortly after a new topic peer joins, and validates what
//     others publish there (reject invalid input, ignore stale or
//     redundant input, and updates over a peer's rate limit, over the
//     per-address caps or of new peers a full catalog cannot make room
//     for: see catalog.Params). Its own changes keep to the rate limit:
//     beyond Catalog.UpdateBurst quick changes, [Service.UpdateLocal]
//     holds a change and publishes it, with any later ones, when the limit
//     allows;
//   - sends heartbeats, its own and those it accepts, as batched bumps
//     ([BumpProtocol]): every Params.BumpInterval one frame to each of up
//     to Params.BumpPeers connected peers (and to those that push to it),
//     with what that peer has not had from it; it verifies, merges and
//     pushes on what it receives, syncs with the sender for bumps of
//     entries it lacks, and counts and penalises bad ones. Heartbeats go
//     on gossip too while a topic peer does not serve bump push, or when
//     no push peer does (PROTOCOL.md section 10.9);
//   - lets a full catalog evict only peers it is not connected to and
//     whose connections nobody protects (live subscriptions, group
//     bonds), and lets a peer it is connected to (its sync hello) in even
//     while Catalog.EvictMinAge holds strangers back;
//   - runs a catalog sync ([SyncProtocol]) when it connects to a peer of
//     the network that it does not know yet (or to any, while its catalog
//     is empty), so a new node gets whole catalogs at once, and relays on
//     gossip the peers it learns that way (relays that come within
//     Params.RelayDelay of each other share one message, a batch). Once a newcomer's gossip
//     subscription reaches the peer that served its join sync, that peer
//     syncs with it again if it merged entries meanwhile that its relays
//     could not bring the newcomer (joinrepair.go). The sync is a paged delta
//     exchange: the node sends a digest of what it holds, merges page by
//     page what the peer holds newer or it lacks, and sends the entries
//     the peer asks for in return, so memory stays bounded whatever the
//     catalog's size. An entry whose only change is its version (a
//     heartbeat) travels as a bump, its new version and signature, which
//     the receiver splices into the entry it holds. With peers that serve
//     only the delta sync without bumps ([SyncProtocolV2]) or the older
//     whole-catalog sync ([SyncProtocolV1]) it falls back to those, and it
//     serves all three;
//   - syncs with one random connected peer of the network every
//     Params.AntiEntropyInterval (several heartbeats), which repairs
//     entries gossip failed to deliver: a node hears peers it is not
//     connected to only through the gossipsub mesh, whose holes under churn
//     can keep a live peer's heartbeats from it for longer than PurgeAfter;
//   - repairs gossip links go-libp2p-pubsub has broken (see "Gossip
//     links" below);
//   - dials newly learned peers while it has few connections (the cascade),
//     so a node that knows one bootstrap peer converges quickly; a new
//     node puts off the dials for the entries of its join sync, its first
//     DHT work and one repair sync until its join settled
//     (Params.SettleDelay after start, longer while new peers keep coming);
//   - with a DHT ([WithDHT]), stores the local entry and provider records
//     in it, refreshes its routing table ([DHTOptions] turns kad-dht's
//     own refresh off) and looks producers up in it ([Service.FindProducers]);
//   - purges each peer as soon as its entry goes stale, applies signed
//     departures, and publishes its own departure on [Service.Close];
//   - measures the RTT to connected catalog peers with libp2p ping.
//
// The wire format of all of this is specified in PROTOCOL.md at the root of
// the module.
//
// # Usual sequence
//
//	svc, err := discovery.New(h, ps, catalog.IDFromString("my-app"),
//		discovery.WithDHT(d), discovery.WithTags(catalog.IDFromString("worker")))
//	...
//	defer svc.Close()
//
//	snap := svc.Catalog()            // immutable snapshot, never blocks
//	sub := svc.Subscribe()           // PeerDiscovered / PeerUpdated / PeerDeparted
//	defer sub.Close()
//	ev, err := sub.Next(ctx)
//
//	svc.UpdateLocal(func(e *catalog.Entry) { e.Streams = append(e.Streams, orders) })
//	svc.SyncWith(ctx, addrInfo)       // explicit sync, e.g. with a bootstrap peer
//	svc.Merge(signedEntry)           // a peer's entry the application holds
//	svc.FindProducers(ctx, orders)   // catalog producers, after asking the DHT
//	svc.Probe(ctx, peerID)           // one RTT sample
//
// [New] starts everything and returns without waiting for the network.
// Read the catalog with [Service.Catalog] (wait for changes on
// [catalog.Snapshot.Changed]) or follow events with [Service.Subscribe].
// Change the local entry only through [Service.UpdateLocal], which
// re-signs, bumps the version, announces and re-publishes to the DHT. Add a
// peer's signed entry held by the application with [Service.Merge], which
// relays it like a sync. The catalog's addresses are not copied into the
// host's peerstore: dial a catalog peer with its entry's
// [catalog.Entry.AddrInfo].
// The store returned by [Service.Store] accepts writes that bypass all of
// that.
// [Service.Close] publishes a departure, hands it to a few connected
// peers that put it on gossip too (or, when none takes it, waits
// Params.DepartureGrace for gossip to send it), and stops the service.
//
// Package node wires a Service to a host, a gossipsub router and a DHT it
// creates itself; use discovery directly to run mosaik on components you
// already have (plugin mode).
//
// # Your duties in plugin mode
//
// The service borrows the host, the pubsub router and the DHT; it never
// closes them, and Close leaves them usable (another service may attach to
// the same host later). The caller must:
//
//   - give a host whose peerstore holds its private key (libp2p.New does)
//     and whose identity is ed25519: entries are signed with the host key,
//     and peers refuse entries signed by any other key type. New does not
//     check the key type;
//   - keep identify and the ping service enabled (libp2p.New's defaults):
//     syncs start when identify completes, and RTT probes are pings;
//   - build the DHT with [DHTOptions], or at least with
//     dht.ProtocolPrefix([DHTProtocolPrefix]) and
//     dht.NamespacedValidator([DHTNamespace], [Validator]{}): without the
//     validator every put of an entry fails; a closed network (see
//     [WithAdmission]) adds [AdmissionDHTOption] after them;
//   - in a closed network, score the catalog topic
//     (pubsub.WithPeerScore with [PeerScoreParams], or
//     [CatalogTopicScoreParams] in the router's own parameters), so that
//     the senders of rejected entries lose score;
//   - keep the router's signature policy compatible with the other nodes of
//     the network: gossipsub drops messages whose signing does not match its
//     own policy. Routers created by package node publish anonymous
//     messages (StrictNoSign and no author; see [GossipSubOptions];
//     node.WithGossipSignaturePolicy changes it for a whole network), so
//     build the router with GossipSubOptions(), or at least with
//     pubsub.WithMessageSignaturePolicy(pubsub.StrictNoSign),
//     pubsub.WithNoAuthor() and a content-based message-ID function
//     (without an author gossipsub's default ID, sender and sequence
//     number, is empty). The service sets [MessageID] on its own topic
//     whatever the router's function is;
//   - not join the topic [TopicName] of the network nor register a
//     validator on it: the service does both and undoes them in Close;
//   - run at most one Service per network on a host: the service owns the
//     network's topic and sync stream handler.
//
// Params.DisableGossip allows a nil router; the catalog is then fed by
// syncs and the DHT only.
//
// # Gossip links
//
// go-libp2p-pubsub (v0.19) forgets every topic a connected peer subscribes
// to when its own writer stream to that peer dies while a connection
// stays (a stream reset, or a second connection outliving the first). It
// starts a new writer, but the peer never sends its subscriptions again,
// so from then on the router neither publishes, forwards nor gossips to
// it. Every AnnounceInterval the service looks for connected peers that
// serve the network's sync protocol and speak gossipsub but are not peers
// of the catalog topic; one seen so on two checks in a row gets its pubsub
// streams (both ways) reset, at most once per peer every ten minutes.
// Each router then opens a new writer, which starts with its
// subscriptions. In plugin mode this touches the router's streams with
// such a peer only; peers of the network that run without gossip
// (Params.DisableGossip) but speak gossipsub for other topics see it too,
// once every ten minutes.
//
// # Concurrency and ownership
//
// Every method of [Service] is safe for concurrent use. Calls that use the
// network take a context and return when it ends; [Service.Catalog],
// [Service.Local], [Service.PeerInfo] and [Service.Stats] never block.
// Snapshots and the entries in them are immutable and may be kept and
// shared freely. The function given to [Service.UpdateLocal] runs under
// the service's lock: it must be fast, must not block and must not call
// UpdateLocal.
//
// The service owns the goroutines it starts (announce, gossip read, topic
// events, gossip links, host events, purge, RTT, DHT, anti-entropy,
// background syncs and cascade dials) and, in [Service.Close], cancels them, resets the sync streams
// being served and waits for all of them; Close returns within about three
// Params.DepartureGrace periods. Close is idempotent and safe to call
// concurrently. After it, [Service.UpdateLocal], [Service.SyncWith],
// [Service.Merge] and [Service.FindProducers] return [ErrClosed], the last snapshot stays readable, and subscriptions
// end with [catalog.ErrClosed] once their buffered events are read.
//
// # Locks
//
// A [Service] has several mutexes, taken in this order and no other:
//
//  1. localMu (the local entry: [Service.UpdateLocal], heartbeats, the
//     departure), then the store's (catalog.Store.SetLocal) and through it
//     its subscriptions' (see package catalog);
//  2. syncMu (sync pacing and retries, inbound rate limiters, probes in flight), the
//     serving-slot table's, the bump push state's (push.go), lifeMu
//     (goroutine ownership) and the counters' lock are leaves: none is held while another lock is taken, or while
//     calling the store, the host or pubsub.
//
// Merges and departures take the store's lock only, outside all of the
// above. The function given to [Service.UpdateLocal] runs under localMu.
//
// # Metrics
//
// With [WithMeterProvider] (default: the global OpenTelemetry provider, a
// no-op unless an SDK is installed), the service registers, on the meter
// "github.com/mosaik-go/mosaik/catalog/discovery", these instruments, each
// with the attribute network=<short network ID>:
//
//	mosaik.discovery.entries          counter  outcome=added|updated
//	mosaik.discovery.refused          counter  verdict=rejected|ignored, reason=<catalog.Reason>
//	mosaik.discovery.peers.departed   counter  cause=departure|purged
//	mosaik.discovery.syncs            counter  direction=out|in, result=ok|failed|refused
//	mosaik.discovery.sync.errors      counter  direction=out|in, cause=<see PROTOCOL.md 10.4>
//	mosaik.discovery.sync.bytes       counter  direction=out|in, frame bytes on sync streams
//	mosaik.discovery.sync.entries     counter  direction=out|in, sealed entries in sync messages
//	mosaik.discovery.sync.bumps       counter  direction=out|in, bumps in sync pages (PROTOCOL.md 10.8)
//	mosaik.discovery.sync.bumps.refused counter bumps received that were not merged
//	mosaik.discovery.push.bumps       counter  outcome=sent|merged|known|pulled|refused|dropped (PROTOCOL.md 10.9)
//	mosaik.discovery.push.frames      counter  direction=out|in, bump push frames
//	mosaik.discovery.announcements    counter  own entry publications
//	mosaik.discovery.relayed          counter  entries relayed to gossip after a sync or DHT lookup
//	mosaik.discovery.relay_messages   counter  gossip messages of those relays (a batch carries several)
//	mosaik.discovery.dht.puts         counter  result=ok|failed
//	mosaik.discovery.links.repaired   counter  gossip links reset (see "Gossip links")
//	mosaik.discovery.catalog.size     gauge    remote peers in the catalog
//	mosaik.discovery.rtt              histogram, seconds (RTT probe samples; no network attribute)
//
// The same numbers are available without OpenTelemetry from
// [Service.Stats].
package discovery
