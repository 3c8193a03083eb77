package streams

import (
	"errors"
	"fmt"
	"maps"
	"sync"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/mosaik-go/mosaik"
)

// Code is a close or reject reason, as on the wire. The values are
// mosaik's close codes.
type Code uint32

// Close codes (mosaik's table).
const (
	CodeDifferentNetwork  Code = 101   // the peers are in different networks
	CodeCancelled         Code = 102   // the local side cancelled (consumer or producer closed)
	CodeUnexpectedClose   Code = 103   // the stream ended without a Close frame
	CodeGracefulShutdown  Code = 204   // the producer closed
	CodeProtocolViolation Code = 400   // a malformed, oversize or unexpected frame
	CodeUnknownPeer       Code = 401   // the producer's catalog does not hold the consumer
	CodeNotAllowed        Code = 10403 // a require predicate or ticket check failed
	CodeStreamNotFound    Code = 10404 // no producer of that stream here
	CodeTooSlow           Code = 10413 // the consumer fell behind its queue
	CodeCodecMismatch     Code = 10415 // the consumer's codec is not the producer's
	CodeNoCapacity        Code = 10509 // the producer's max consumers is reached
	// CodeOther counts, in HandleInfo.Ends and the disconnect metrics,
	// the ends with a code not in this table: the remote peer picks a
	// Close or Reject code, and a counter per code would let one peer grow
	// the stats and the metric series without bound. Never sent.
	CodeOther Code = 0
)

// codeNames names the codes of the table (and CodeOther).
var codeNames = map[Code]string{
	CodeDifferentNetwork:  "DifferentNetwork",
	CodeCancelled:         "Cancelled",
	CodeUnexpectedClose:   "UnexpectedClose",
	CodeGracefulShutdown:  "GracefulShutdown",
	CodeProtocolViolation: "ProtocolViolation",
	CodeUnknownPeer:       "UnknownPeer",
	CodeNotAllowed:        "NotAllowed",
	CodeStreamNotFound:    "StreamNotFound",
	CodeTooSlow:           "TooSlow",
	CodeCodecMismatch:     "CodecMismatch",
	CodeNoCapacity:        "NoCapacity",
	CodeOther:             "Other",
}

func (c Code) String() string {
	if name, ok := codeNames[c]; ok {
		return name
	}
	return fmt.Sprintf("Code(%d)", uint32(c))
}

// known reports whether c is in the table above (CodeOther aside).
func (c Code) known() bool {
	_, ok := codeNames[c]
	return ok && c != CodeOther
}

// codeCounts counts subscription ends by close code.
type codeCounts struct {
	mu sync.Mutex
	m  map[Code]uint64
}

func (c *codeCounts) add(code Code) {
	if !code.known() {
		code = CodeOther
	}
	c.mu.Lock()
	if c.m == nil {
		c.m = map[Code]uint64{}
	}
	c.m[code]++
	c.mu.Unlock()
}

// snapshot returns a copy (nil when nothing ended).
func (c *codeCounts) snapshot() map[Code]uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.m)
}

// Final reports whether a consumer gives up on a producer that closed or
// rejected it with this code (mosaik's table); other codes are retried with
// backoff. UnknownPeer is retried after a catalog sync.
func (c Code) Final() bool {
	switch c {
	case CodeNotAllowed, CodeGracefulShutdown, CodeStreamNotFound, CodeDifferentNetwork, CodeCodecMismatch:
		return true
	}
	return false
}

// Errors.
var (
	ErrClosed         = fmt.Errorf("streams: %w", mosaik.ErrClosed)
	ErrOffline        = errors.New("streams: producer is offline")
	ErrFull           = errors.New("streams: every consumer queue is full")
	ErrProducerExists = errors.New("streams: a producer of this stream already exists on this node")
	ErrEmpty          = errors.New("streams: no datum available")
	// ErrTooLarge: Send or TrySend was given a datum whose encoding does
	// not fit in a data frame of the service's Params.MaxFrameSize. It is
	// refused before it is numbered: consumers (which read under the same
	// cap by default) never see it, and a replay window never holds it.
	ErrTooLarge = errors.New("streams: datum larger than a frame")
)

// CodeError is the reason a producer rejected or closed a subscription, or
// the local reason a subscription ended. Check it with errors.As.
type CodeError struct {
	Code   Code
	Reason string
	Remote bool // set when the other side sent the code
}

func (e *CodeError) Error() string {
	side := "local"
	if e.Remote {
		side = "remote"
	}
	if e.Reason == "" {
		return fmt.Sprintf("streams: %s close %d (%s)", side, uint32(e.Code), e.Code)
	}
	return fmt.Sprintf("streams: %s close %d (%s): %s", side, uint32(e.Code), e.Code, e.Reason)
}

// codeOf extracts a close code from an error: a *CodeError, or a libp2p
// stream reset that carried one.
func codeOf(err error) (Code, bool) {
	var ce *CodeError
	if errors.As(err, &ce) {
		return ce.Code, true
	}
	var se *network.StreamError
	if errors.As(err, &se) && se.Remote && se.ErrorCode != 0 {
		return Code(se.ErrorCode), true
	}
	return 0, false
}
