// Package dialer connects libp2p hosts to peers, recovering from the one
// failure go-libp2p v0.51 does not: a TCP simultaneous open.
//
// go-libp2p's TCP transport dials from its listening port (SO_REUSEPORT).
// When two peers dial each other at the same moment, their SYNs cross and
// the kernel makes one TCP connection of the two dials, on which both ends
// act as the dialer: each sends the first message of the security
// handshake and reads the other's as the answer, and both fail ("failed to
// negotiate security protocol: error reading handshake message: noise:
// message is too short"; go-libp2p issue #2925, fix proposed in #2950).
// The swarm then puts each peer's address in its dial backoff (5 s and
// more), so neither end can dial the other again for a while, whatever
// asks. On loopback one crossed pair of dials in about twenty fails so.
// mosaik's nodes dial each other at once by design: both members of a
// group bond when they learn of each other, and two nodes that lose their
// only common peer both top up their connections.
//
// Connect retries such a failure after a short random pause, with the
// peer's dial backoff cleared; the other end, if it runs mosaik, does the
// same, and whichever dial lands first makes the connection both use.
package dialer

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/sec"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	ma "github.com/multiformats/go-multiaddr"
)

// retries is how many times Connect dials again after a crossed dial.
const retries = 3

// pause is the base of the random pause before a retry: attempt n waits
// n·[pause, 10·pause), so the two ends' next SYNs are unlikely to cross
// again (crossing needs them within about a round trip of each other).
const pause = 10 * time.Millisecond

// Connect is h.Connect(ctx, pi), except that a dial which failed only
// because it crossed the peer's own dial to us (see the package doc) is
// tried again, up to three times, after a random pause of at most a few
// hundred milliseconds; it returns nil as soon as a connection exists,
// whichever end made it. Any other error is returned at once.
func Connect(ctx context.Context, h host.Host, pi peer.AddrInfo) error {
	err := h.Connect(ctx, pi)
	for attempt := 1; err != nil && attempt <= retries && Crossed(err); attempt++ {
		d := time.Duration(attempt) * (pause + rand.N(9*pause))
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(d): // the pause between two dials, not a synchronisation
		}
		if h.Network().Connectedness(pi.ID) == network.Connected {
			return nil // the peer's dial made it
		}
		ClearBackoff(h, pi.ID)
		err = h.Connect(ctx, pi)
	}
	return err
}

// Crossed reports whether err is a dial error in which some TCP address
// failed in the security handshake itself: what both ends of a TCP
// simultaneous open see (each reads the other's first handshake message
// as the answer to its own). Failures that a crossed dial does not cause
// are left out, so that a peer that refuses, resets, times out or speaks
// no common security protocol is not dialed again at once: a wrong peer
// ID, a timeout, the connection closed or reset, no protocol in common.
func Crossed(err error) bool {
	var de *swarm.DialError
	if !errors.As(err, &de) {
		return false
	}
	for _, te := range de.DialErrors {
		if te.Cause == nil || !isTCP(te.Address) {
			continue
		}
		// The upgrader's wording (p2p/net/upgrader, unchanged since 2019):
		// the failure has no error type of its own.
		msg := te.Cause.Error()
		if !strings.Contains(msg, "failed to negotiate security protocol") || notCrossed(te.Cause, msg) {
			continue
		}
		return true
	}
	return false
}

func notCrossed(cause error, msg string) bool {
	var mismatch sec.ErrPeerIDMismatch
	return errors.As(cause, &mismatch) || os.IsTimeout(cause) ||
		errors.Is(cause, context.DeadlineExceeded) || errors.Is(cause, context.Canceled) ||
		errors.Is(cause, io.EOF) || errors.Is(cause, io.ErrUnexpectedEOF) ||
		errors.Is(cause, syscall.ECONNRESET) || errors.Is(cause, syscall.EPIPE) ||
		strings.Contains(msg, "protocols not supported")
}

func isTCP(a ma.Multiaddr) bool {
	if a == nil {
		return false
	}
	_, err := a.ValueForProtocol(ma.P_TCP)
	return err == nil
}

// ClearBackoff forgets the swarm's dial backoff for p, so the next dial
// is tried at once rather than refused with "dial backoff". A host whose
// network is not a swarm has none.
func ClearBackoff(h host.Host, p peer.ID) {
	if sw, ok := h.Network().(interface{ Backoff() *swarm.DialBackoff }); ok {
		sw.Backoff().Clear(p)
	}
}
