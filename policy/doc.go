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
// [IssueSignedTicket]), which need no shared secret. Both are bound to one
// network and one class: a signed ticket carries them in its payload, a JWT
// in its [JWTNetworkClaim] and [JWTClassClaim] claims, so a ticket issued
// for a test network or another class is refused even where the same key
// is trusted. A JWT names its holder in "sub" as mosaik does, by
// [Subject]: the lowercase hex of the peer's 32-byte Ed25519 public key,
// not the base58 peer ID.
//
// Both built-in validators implement [Fingerprinter]: a hash of their
// configuration that groups fold into their ID, so that members requiring
// different tickets never form one group.
//
// # State and locks
//
// Validators are immutable values, except for the signed-ticket validator's
// verdict cache, which each configured copy owns. Its mutex is the only
// one in the package and is never held while a ticket is checked or a
// caller's code runs, so there is no lock order to respect.
package policy
