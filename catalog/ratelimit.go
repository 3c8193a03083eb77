package catalog

// gcra is the per-peer update rate limit: the generic cell rate algorithm,
// a token bucket of burst tokens refilled one per interval, kept as one
// number per peer, its theoretical arrival time (tat). Time is the
// entries' own update timestamps in ms, so the limit is a property of the
// sequence of versions: a receiver that sees only some of a peer's
// versions (the others overtaken in transit) is never stricter than one
// that sees them all, and a sender that runs the same limit over its own
// versions ([Local]) knows every receiver takes them.
type gcra struct {
	interval int64 // ms; 0 disables the limit
	burst    int64
}

// next returns the peer's tat after an update at t, given its tat before
// (known false: the peer is new, with a full bucket), and whether the
// update is within the limit. When it is not, it returns the earliest
// update time that would be.
func (g gcra) next(tat int64, known bool, t int64) (int64, bool) {
	if g.interval <= 0 {
		return 0, true
	}
	if !known || tat < t {
		tat = t
	}
	if slack := (g.burst - 1) * g.interval; tat-t > slack {
		return tat - slack, false
	}
	return tat + g.interval, true
}
