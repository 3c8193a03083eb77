// Package policy says who may produce and who may consume: eligibility
// predicates over a peer's catalog entry and RTT, and tickets — signed,
// expiring credentials a peer carries in its catalog entry — with their
// validators.
//
// The package is pure: no host, no goroutines, and every check takes the
// time as an argument, so it is tested with fixed clocks.
//
// # Predicates
//
//	streams.WithRequire(policy.All(policy.HasTags("validator"), policy.RTTBelow(50*time.Millisecond)))
//
// Predicates must be fast and must not block.
//
// # Tickets
//
// A ticket is a class (an ID by the catalog's string rule) and opaque
// bytes. A node adds tickets to its own entry (node.AddTicket); they travel
// signed inside the entry. A [TicketValidator] is offered only the tickets
// of its class; when several are valid, the one expiring latest counts.
// With several validators all must pass and the earliest expiry applies.
// Streams check tickets on connect, on every catalog change, and cut a
// subscription when its ticket expires unless a renewed ticket arrived.
//
// Two ticket formats are built in: JWT ([JWT], issued with [JWTBuilder]) and
// libp2p-signed tickets ([SignedTicketValidator], issued with
// [IssueSignedTicket]), which need no shared secret. A JWT names its holder
// in "sub" as mosaik does, by [Subject]: the lowercase hex of the peer's
// 32-byte Ed25519 public key, not the base58 peer ID.
package policy
