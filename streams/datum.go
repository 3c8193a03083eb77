package streams

import (
	"fmt"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Datum is a received datum with where it came from and what was missed
// before it. Consumer.RecvDatum returns it; Recv returns only the Value.
type Datum[T any] struct {
	Value    T
	Producer peer.ID // the producer that sent it
	// Seq is the producer's sequence number of this datum within the
	// producer's current run: it counts every datum the producer sent, so
	// the datums of one producer arrive with increasing Seq.
	Seq uint64
	// Epoch names the producer's run that Seq counts in (PROTOCOL.md
	// 16.1): a random non-zero number drawn when the producer starts; 0
	// when the producer does not say. With Producer and Seq it is the
	// Position to resume from (WithResumeFrom).
	Epoch uint64
	// Gap is set on the first datum after datums of the same producer were
	// missed; nil otherwise.
	Gap *Gap
}

// GapCause says why datums were missed.
type GapCause uint8

const (
	// GapDropped: the producer skipped datums for this consumer within one
	// subscription because its queue was full (WithDropLagging).
	GapDropped GapCause = iota + 1
	// GapReconnect: the producer sent datums while this consumer was not
	// subscribed to it (the link failed, or the consumer was cut with
	// TooSlow, and it resubscribed).
	GapReconnect
	// GapRestart: the producer restarted (a new run, seen by a new epoch in
	// its Accept). Missed counts the datums of the new run sent before this
	// consumer resubscribed; datums of the previous run sent after the last
	// one received here are lost too but cannot be counted.
	GapRestart
	// GapExpired: this consumer resubscribed asking the producer to resend
	// what it missed from its replay window (WithReplay), but these datums
	// had already left the window. Missed counts exactly them; the rest of
	// the range was resent.
	GapExpired
)

func (c GapCause) String() string {
	switch c {
	case GapDropped:
		return "dropped"
	case GapReconnect:
		return "reconnect"
	case GapRestart:
		return "restart"
	case GapExpired:
		return "expired"
	}
	return fmt.Sprintf("GapCause(%d)", uint8(c))
}

// Gap describes datums of one producer this consumer missed right before a
// datum. Every gap is also counted in Stats.Gaps (overall and per
// producer) and in the mosaik.streams.consumer.gaps metric.
type Gap struct {
	Cause  GapCause
	Missed uint64 // datums known to be missed
	// After is the Seq of the last datum received from this producer before
	// the gap (in the previous run for GapRestart); 0 if none.
	After uint64
}

func (g *Gap) String() string {
	return fmt.Sprintf("%d datums missed (%s) after seq %d", g.Missed, g.Cause, g.After)
}
