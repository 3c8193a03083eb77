// Package streams carries typed data from producers to consumers over
// dedicated libp2p streams (/mosaik/streams/1.0.0), wired up by the catalog:
// consumers find producers of their stream in the catalog and subscribe to
// every eligible one; producers admit consumers they know and that satisfy
// their policy.
//
// # Usual sequence
//
//	n, _ := node.New("my-net", ...)                        // owns a *streams.Service
//	p, err := streams.NewProducer[Order](n.Streams(), "orders",
//		streams.WithRequire(policy.HasTags("trader")))             // who may consume
//	defer p.Close()                                       // flushes queues, sends GracefulShutdown
//	err = p.Send(ctx, Order{...})                         // waits until online (1 consumer by default)
//
//	c, err := streams.NewConsumer[Order](n.Streams(), "orders",
//		streams.WithMaxRTT(50*time.Millisecond))       // which producers to use
//	defer c.Close()
//	for v, err := range c.All(ctx) { ... }                // or Recv(ctx) / TryRecv() / RecvDatum(ctx)
//
// Stream names become IDs by the catalog's string rule (64 hex characters
// decode, anything else is hashed), so "orders" names the same stream on
// every node.
//
// # Open by default
//
// A producer without a policy admits every consumer in its catalog, that
// is every peer that joined the network. Restrict one producer with
// WithRequire, WithMaxRTT, WithTickets, WithTicketValidators or WithPolicy,
// or every producer of a service with WithDefaultPolicy (the node's
// node.WithDefaultStreamPolicy), so that a deployment requires tickets
// everywhere with one option.
//
// # Delivery guarantees
//
// Datums of one producer reach each consumer in order. The producer numbers
// every datum it sends (Datum.Seq), once for all its consumers, and names
// its run with a random epoch, so every loss is visible to the consumer:
// RecvDatum returns each datum with a *Gap when datums of its producer
// were missed right before it (dropped for this consumer, sent while it was
// reconnecting, or lost in a producer restart), and the same counts are in
// Stats.Gaps (per producer and overall) and the
// mosaik.streams.consumer.gaps metric. Nothing is lost silently:
//
//   - a producer waits for its consumers at most one lag grace per Send
//     (WithLagGrace, default 100 ms), however many of them lag: the graces
//     run concurrently. Each subscription has a queue bounded in datums
//     (WithQueueSize, default 1024) and in bytes (Params.MaxQueueBytes,
//     default 64 MiB); when it stays full for the grace the consumer is
//     disconnected with TooSlow (10413), or with WithDropLagging the datum
//     is skipped for that consumer and counted in Stats.Dropped (the
//     consumer sees a gap). In both modes a consumer whose stream takes
//     nothing for Params.WriteTimeout (default 30 s) is disconnected with
//     TooSlow: drop mode tolerates a slow consumer, not a stopped one;
//   - a consumer delivers into a bounded buffer (WithBuffer, default 1024).
//     When the application does not read, the buffer fills, the consumer
//     stops reading from its producers, libp2p flow control reaches them and
//     their lagging policy decides. There is no unbounded queue anywhere;
//   - across producers there is no ordering and no de-duplication.
//
// # Resuming without loss
//
// Losses are reported; a replay window avoids the common ones. A producer
// created with WithReplay keeps its last datums (bounded by count, bytes
// and age, one window shared by all its consumers). A consumer that
// resubscribes after a link failure or a TooSlow cut asks to resume after
// the last datum it holds from that producer's run, and receives what
// followed from the window, exactly once and in order, then the live
// datums; what had already left the window is reported as a gap of cause
// GapExpired, counting exactly those datums. An application that saves
// Consumer.Positions resumes after its own restart with
// WithResumeFrom(saved...). A new run of the producer (a restart, a new
// epoch) starts with an empty window: its losses are reported as before
// (GapRestart). A resuming consumer is served by its own writer outside the
// live fan-out until it has caught up, so a slow one holds back no one
// else. Producers without a window, and consumers that do not ask,
// interoperate with those that have them (PROTOCOL.md 16.6).
//
// # Receiving fast
//
// For []byte streams read by one goroutine, WithCodec(BorrowedBytes{})
// makes a consumer read each datum into a recycled buffer that stays valid
// until the next receive call: no allocation or copy per datum. Copy what
// you keep.
//
// # Caller's duties
//
//   - Close every Producer and Consumer you create when you are done with
//     it. Service.Close (and so the node's Close) closes those still open,
//     producers first, so that consumers receive what was queued.
//     Producer.Close delivers what is queued (up to Params.CloseTimeout),
//     then withdraws the stream from the catalog entry; consumers read to
//     the end of the subscription even when they hear of the withdrawal
//     first (for at most Params.CloseTimeout, during which the producer
//     still counts as connected). Consumer.Close only cancels and waits for
//     its goroutines. No timer callback of a handle runs after its Close
//     returns.
//   - Predicates (WithRequire, Condition.WithPredicate) and sinks
//     (WithUndelivered) must be fast and must not block.
//   - At most one Producer per stream per node (ErrProducerExists).
//
// # Concurrency
//
// Producers, consumers, conditions and Service are safe for concurrent use.
// Condition.Wait is edge-triggered: the subscription set evaluates every
// condition that was waited on at each change and counts its rises, so a
// rise that is undone before the next Wait is not missed, and every Wait
// blocked at a rise returns. WaitOnline and WaitOffline are level-triggered.
//
// Lock order, outer first (a lock is only taken while holding the ones
// before it):
//
//  1. muxesMu, then hostMux.mu (registering a service on a host);
//  2. Producer.sendMu, then Producer.mu (a fan-out, and Close); sendMu
//     is held for a whole fan-out, lag grace included, so datums enter
//     every queue in sequence order, while Producer.mu is released before
//     any wait;
//  3. Consumer.mu, under which only Discovery.Catalog (a snapshot read) is
//     called;
//  4. subscriptionSet.mu, then subscription.mu; Condition predicates run
//     here.
//
// Service.mu, Consumer.bmu, codeCounts.mu and timerGroup.mu are leaves:
// nothing else is locked while one is held. Producer.mu is one too, except
// at an admission, which adds the subscription to the producer's set (4.,
// the connection protector included) under it, so that the subscription
// joins the fan-out and the set in one step before Accept is written:
// Condition predicates must not call into the producer. Consumer.mu is
// released before a subscription set is updated. No lock is held across a
// Close, a network call or a wait for goroutines, and timer callbacks start
// with no lock held.
//
// # Errors
//
// Sentinels (ErrClosed, ErrOffline, ErrFull, ErrProducerExists, ErrEmpty,
// ErrTooLarge) are matched with errors.Is; a subscription's end reason is a *CodeError
// carrying the wire Code, found with errors.As on SubscriptionInfo.Err.
//
// # Refusals
//
// A refusal that configuration causes (NotAllowed: a require predicate or
// a ticket; NoCapacity; DifferentNetwork; CodecMismatch) is logged at Warn
// on both sides, once per peer, stream and cause within 10 minutes
// however often the consumer retries: the producer names the consumer it
// refused, the consumer the producer that refused it, each with the reason
// and a hint of what to do. A consumer whose own policy excludes a
// producer says so the same way, at Info (the policy doing its job). [WithNamedRequire] gives a predicate the
// name the reason shows ("require tags reader: not met"). Refusals that
// the network's normal churn causes (UnknownPeer, StreamNotFound) stay at
// Debug.
//
// # Counters
//
// Stats, ServiceStats, SubscriptionInfo and HandleInfo are snapshots: plain
// values copied out of the live counters, safe to keep and compare. The
// same counts are exported as OpenTelemetry metrics (mosaik.streams.*).
package streams
