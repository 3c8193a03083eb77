// Package node runs a mosaik node: a libp2p host with gossipsub, the mosaik
// DHT and catalog discovery ([discovery.Service]) for one network. It owns
// construction and shutdown order, so that applications make one call to
// join a network and one to leave it.
//
// # Standalone and plugin mode
//
// In standalone mode [New] builds everything itself:
//
//	n, err := node.New("my-app",
//		node.WithBootstrap("/ip4/192.0.2.1/tcp/4001/p2p/12D3KooW..."),
//		node.WithTags("worker"))
//	...
//	defer n.Close()
//
// In plugin mode the application already runs libp2p and lends its
// components with [WithHost], [WithPubSub] and [WithDHT]. The node never
// closes what it borrows: after [Node.Close] the host, router and DHT
// remain usable, and mosaik may attach to the same host again. A borrowed
// DHT must have been built with discovery.DHTOptions(), and a borrowed
// router must sign (or not) like the network's other routers: anonymous
// messages (StrictNoSign, no author), like the routers the node creates
// (build it with discovery.GossipSubOptions()), or else every node of the network must
// be given WithGossipSignaturePolicy(pubsub.StrictSign). Otherwise it
// exchanges no catalog gossip with standalone nodes (see package discovery
// for the full list of plugin-mode duties).
// Components not lent are created on the borrowed host and closed with the
// node; lend the router when the host already runs one, since the node
// would otherwise start a second router on the same host.
//
// The network is named by a string: exactly 64 hex characters are the
// network ID itself, anything else is hashed to it (catalog.IDFromString).
// Tags given as strings follow the same rule.
//
// # Options
//
// Identity and transport (standalone only; ignored with [WithHost]):
// [WithIdentity] (an ed25519 key; default a new random key) and
// [WithListenAddrs] (default TCP and QUIC-v1 on 0.0.0.0, ports chosen by
// the OS).
//
// Joining: [WithBootstrap] (multiaddrs ending in /p2p/<id>) and
// [WithBootstrapPeers]; [WithTags] and [WithEntry] fill in the local entry
// before it is first signed.
//
// Components: [WithHost], [WithPubSub], [WithDHT] lend existing ones;
// [WithoutDHT] runs without a DHT (the catalog is then fed by gossip and
// syncs, and FindProducers looks only at the catalog); [WithDHTOptions]
// adds kad-dht options to the DHT the node creates.
//
// Closed networks: [WithAdmission] takes policy ticket validators (the
// same ones streams take): every catalog entry must then hold a valid
// admission ticket, checked in the gossip validator (a Reject, which
// lowers the sender's gossipsub score), in both catalog sync versions (a
// peer that is not admitted is refused the sync) and in the DHT validator
// of a DHT the node builds (a borrowed one needs
// discovery.AdmissionDHTOption); entries leave the catalog when their
// ticket expires. The node's own entry must carry its ticket
// ([WithEntry]) or New fails with discovery.ErrNotAdmitted; renew it with
// [Node.ReplaceTicket] before it expires. Every node of the network must
// use the same validators. The gossipsub router New builds scores the
// catalog topic by rejected messages in open and closed networks alike
// (discovery.PeerScoreParams).
//
// Tuning and observability: [WithDiscoveryParams] (default
// discovery.DefaultParams()), [WithFastProfile], [WithLogger] (default
// slog.Default()) and [WithMeterProvider] (default the global OpenTelemetry
// provider). Options apply in order, so a later [WithDiscoveryParams]
// overrides the parameters chosen by an earlier [WithFastProfile] and vice
// versa; streams and bond parameters given by [WithStreamsParams] or
// [WithBondParams] are kept by a later WithFastProfile, which sets its own
// only when none were given.
//
// # What New starts
//
// In order, undoing what it started if a later step fails:
//
//  1. without [WithHost], a libp2p host: the given or a new ed25519
//     identity; TCP and QUIC-v1; Noise and TLS; yamux; a resource manager
//     with libp2p's default limits scaled to the machine's memory and file
//     descriptors (rcmgr.DefaultLimits.AutoScale()) plus limits of the
//     catalog sync, streams and groups protocols (see resourceLimits in
//     host.go: sync streams bounded by MaxConcurrentSyncs and SyncBurst;
//     streams and group bonds up to 1024 each way plus 256 per GiB, 256
//     per peer; snapshot transfer 256 each way, 64 per peer); a connection
//     manager (low water 160, high water 512, one-minute grace); relay and
//     libp2p metrics disabled; agent version "mosaik-go/0.1.0";
//  2. without [WithPubSub], and unless gossip is disabled, a gossipsub
//     router with discovery.GossipSubOptions(): anonymous messages
//     (StrictNoSign, no author; unless [WithGossipSignaturePolicy] says
//     otherwise) identified by a BLAKE3 hash of their content, flood publishing, no
//     peer exchange, and larger validation and outbound queues;
//  3. without [WithDHT] or [WithoutDHT], a kad-dht built with
//     discovery.DHTOptions() (protocol /mosaik/kad/1.0.0, entry validator,
//     server mode, and no automatic routing-table refresh: the discovery
//     service refreshes it, first once the join settled), the bootstrap
//     peers and [WithDHTOptions];
//  4. the discovery service, which announces the local entry, syncs
//     catalogs with peers as they connect, and keeps the catalog fresh;
//  5. with bootstrap peers, a background loop that keeps the node
//     connected to them: one that is not connected is dialed after 250 ms,
//     then with a backoff doubling to 30 s (to 5 s while the node is
//     isolated, connected to no peer of its catalog), reset once
//     connected.
//
// New does not wait for the network: it returns once everything has
// started. Read [Node.Catalog] (and wait on its Changed channel) or
// subscribe with Node.Discovery().Subscribe() to learn when peers arrive.
//
// # Telling the operator
//
// A node reports what keeps it from working at Warn level, once per cause
// rather than once per retry: a bootstrap peer it cannot reach (again only
// after it was reached in between), and finding no other peer of its
// network [WithNoPeersWarning] after start (30 s; 10 s in the fast
// profile), with the networks its connected peers serve instead. The
// streams service logs refused subscriptions on both sides (package
// streams, "Refusals").
//
// A second process with the node's key is a misconfiguration the network
// cannot survive: peers keep the newer of the two processes' entries and
// ignore the other's. The node that finds a newer entry of its own peer ID
// that it did not sign logs an Error once and closes
// [Node.DuplicateIdentity]; the node keeps running, and deciding to stop
// is the application's (mosaik-node exits 1). Such an entry reaches the
// older process by gossip through a third peer, or at the latest with the
// next anti-entropy sync (discovery.Params.AntiEntropyInterval: about
// 2 min by default, 3 s in the fast profile).
//
// # Connection manager
//
// Trimming (by the host's connection manager, when connections pass its
// high water) never cuts a live subscription: the streams service
// protects the peer of each subscription, in either direction, through
// [Node.Protect] and [Node.Unprotect] (tag [Node.ProtectTag], one per network), which
// count calls per peer; other services of the node may use them too. The
// discovery service tags every catalog peer with
// discovery.CatalogPeerValue, so that peers outside the network are
// trimmed first. With [WithHost] the borrowed host's connection manager is
// used. The node's one mutex (the protection counts) is a leaf: it is held
// only around the connection manager's Protect and Unprotect.
//
// # Close
//
// [Node.Close] stops the bootstrap loop, then closes what the node created
// in reverse order of creation: the discovery service first (it publishes a
// signed departure when it has topic peers and waits
// discovery.Params.DepartureGrace for it to leave), then the DHT, the
// gossipsub router and the host. Borrowed components are left open. Close
// is idempotent and safe to call concurrently; every method of [Node] is
// safe for concurrent use. It returns within about three
// discovery.Params.DepartureGrace periods (see discovery.Service.Close),
// plus the groups' graceful leave (at most groups.Params.LeaveTimeout,
// the groups leaving in parallel) when the node runs groups, plus the time
// libp2p takes to close the DHT and the host: the node's own loops
// (bootstrap dials, rendezvous, mDNS) are cancelled, not waited out.
//
// # Fast profile
//
// [WithFastProfile] selects timings for tests on one machine:
// discovery.TestParams() (entries stale after 3 s, heartbeats every
// second ± 25 %, 5 s clock drift, faster syncs, probes and DHT
// republishing) and, for a router the node creates, [FastGossipSubParams]
// (a gossipsub mesh of degree 3, so that some 30 nodes fit in one
// process). Nodes of one network must share a profile: a
// fast-profile node purges default-profile peers between their heartbeats.
package node
