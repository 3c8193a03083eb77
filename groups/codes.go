package groups

import (
	"errors"
	"fmt"
	"maps"
	"sync"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/mosaik-go/mosaik"
)

// Close and refusal codes of bonds (mosaik's numbers, see PROTOCOL.md).
const (
	CodeDifferentNetwork  Code = 101   // the handshake named another network
	CodeCancelled         Code = 102   // the group closed here or there, or the node shuts down
	CodeUnexpectedClose   Code = 103   // the stream ended without a Close frame
	CodeProtocolViolation Code = 400   // a malformed, oversize or unexpected frame
	CodeUnknownPeer       Code = 401   // the responder lacks the initiator's signed entry
	CodeInvalidHandshake  Code = 30400 // an undecodable Hello
	CodeNotAllowed        Code = 30403 // tickets failed at handshake, on an entry update or at expiry
	CodeGroupNotFound     Code = 30404 // the responder is not in that group
	CodeInvalidProof      Code = 30405 // a key proof did not verify
	CodeTimeout           Code = 30408 // no handshake within HandshakeTimeout, or heartbeats missed
	CodeAlreadyBonded     Code = 30429 // a bond to that peer exists and wins the tie-break
	// CodeOther counts, in BondStatus and the metrics, every code this
	// build does not know: a peer picks the codes it sends, and each new
	// one would otherwise be a counter and a metric series more. Never
	// sent; the code itself stays in the CodeError and the log.
	CodeOther Code = 0
)

// bucket is the code counted for c: c when this build knows it, else
// CodeOther.
func (c Code) bucket() Code {
	switch c {
	case CodeDifferentNetwork, CodeCancelled, CodeUnexpectedClose, CodeProtocolViolation, CodeUnknownPeer,
		CodeInvalidHandshake, CodeNotAllowed, CodeGroupNotFound, CodeInvalidProof, CodeTimeout, CodeAlreadyBonded:
		return c
	}
	return CodeOther
}

func (c Code) String() string {
	switch c {
	case CodeDifferentNetwork:
		return "DifferentNetwork"
	case CodeCancelled:
		return "Cancelled"
	case CodeUnexpectedClose:
		return "UnexpectedClose"
	case CodeProtocolViolation:
		return "ProtocolViolation"
	case CodeUnknownPeer:
		return "UnknownPeer"
	case CodeInvalidHandshake:
		return "InvalidHandshake"
	case CodeNotAllowed:
		return "NotAllowed"
	case CodeGroupNotFound:
		return "GroupNotFound"
	case CodeInvalidProof:
		return "InvalidProof"
	case CodeTimeout:
		return "Timeout"
	case CodeAlreadyBonded:
		return "AlreadyBonded"
	case CodeOther:
		return "Other"
	}
	return fmt.Sprintf("Code(%d)", uint32(c))
}

// Errors of the bond layer. They stay unexported: the core turns them into
// its own errors for the API.
var (
	errNetClosed = fmt.Errorf("groups: bond layer: %w", mosaik.ErrClosed)
	// errAttached: a group attached twice to one service's bond layer (the
	// core attaches each group once, however many handles it has).
	errAttached = errors.New("groups: group already attached")
)

// CodeError is the reason a bond was refused or ended. Check it with
// errors.As.
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
		return fmt.Sprintf("groups: %s close %d (%s)", side, uint32(e.Code), e.Code)
	}
	return fmt.Sprintf("groups: %s close %d (%s): %s", side, uint32(e.Code), e.Code, e.Reason)
}

func localErr(c Code, format string, args ...any) *CodeError {
	return &CodeError{Code: c, Reason: fmt.Sprintf(format, args...)}
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

// codeCounts counts bond refusals and ends by code.
type codeCounts struct {
	mu sync.Mutex
	m  map[Code]uint64
}

func (c *codeCounts) add(code Code) {
	c.mu.Lock()
	if c.m == nil {
		c.m = map[Code]uint64{}
	}
	c.m[code]++
	c.mu.Unlock()
}

func (c *codeCounts) snapshot() map[Code]uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.m)
}
