package harness

import (
	"context"
	"time"
)

// mode selects how a session is configured.
type mode int

const (
	// modeFlow: throughput, fan-out and latency rows. Buffers of the
	// systems without backpressure are raised so that the credit window
	// (1024 datums in flight per subscriber) can never make them drop.
	modeFlow mode = iota
	// modeOverload: the system's default limits (except where a variant
	// says otherwise), one fast and one slow subscriber.
	modeOverload
)

// openOpts describes the session a scenario needs.
type openOpts struct {
	subs    int  // subscribers
	mode    mode // flow or overload
	flush   bool // latency rows: the raw sender flushes every frame
	variant string
}

// system is one system under test. open builds a fresh publisher and subs
// subscribers on the system's own stack (hosts, server) and returns once
// every subscriber is ready to receive.
type system interface {
	name() string
	open(ctx context.Context, o openOpts) (session, error)
}

// session is an open publisher with its subscribers. start is called once,
// before the first send: it starts one receive loop per subscriber, each
// calling deliver(sub, payload) for every datum in the receiving
// goroutine (payload is only valid during the call). send publishes one
// datum to every subscriber; the caller must not modify p afterwards.
// close stops everything the session started.
type session interface {
	start(deliver func(sub int, p []byte))
	send(ctx context.Context, p []byte) error
	close() error
}

// bulkSender is a session whose transport has backpressure of its own
// (the raw stream): it sends n datums to every subscriber at once, each
// destination from its own goroutine, without the credit window.
type bulkSender interface {
	sendBulk(ctx context.Context, n int, p []byte) error
}

// readier is a session that may need time to return to its initial state
// between repetitions (a mosaik consumer cut in a previous repetition).
type readier interface {
	ready(ctx context.Context) error
}

// signal is one way a session can tell its application about loss.
type signal struct {
	name       string
	value      int64
	cumulative bool // a counter (compared before/after a repetition) rather than a current state
	visible    bool // the application can see it through the system's API (not just a log or a tracer)
}

// signaler is a session that can list its loss signals.
type signaler interface {
	signals() []signal
}

// firstDatumer measures the time from subscribing to the first datum,
// with the publisher already running and known: ops operations, each
// reported through sample.
type firstDatumer interface {
	firstDatum(ctx context.Context, ops int, sample func(time.Duration)) error
}

// discoverer measures discovery convergence: start n nodes, each given
// only the first one's address, and time from the start of the second
// node until 99 % of the (node, node) pairs are known and until every node
// knows every other, the latter up to limit.
type discoverer interface {
	name() string
	converge(ctx context.Context, n int, limit time.Duration) (convergence, error)
}

type convergence struct {
	p99, all time.Duration
	capped   bool // all reached the limit: the true time is longer
	capped99 bool // so did p99
	// started is when the start of the last node returned (its join may
	// still run in the background), on the same clock: roughly the part
	// of p99 that is node start-up (for mosaik, mostly libp2p's host
	// construction). Start-up and the spread of the entries share the
	// CPU, so on a CPU-bound row the split is not exact (see the method).
	started time.Duration
	// cpu99 and faults99: the process's CPU time (both cores) and minor
	// page faults from the start to 99 % of pairs. One system runs at a
	// time, so they are that system's (and the harness's polling).
	cpu99    time.Duration
	faults99 int64
}
