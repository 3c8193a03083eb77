package streams

import "github.com/libp2p/go-libp2p/core/peer"

// ConnProtector keeps the connection to a peer open while the service has
// a live subscription with it (either direction), so that the host's
// connection manager never trims it. Calls for one peer are balanced:
// every Protect is followed by one Unprotect, and a peer with several
// subscriptions is protected several times. Package node passes its own
// (Node.Protect, Node.Unprotect); the methods are called with a
// subscription's lock held, so they must be fast, must not block and must
// not call into the streams service.
type ConnProtector interface {
	Protect(p peer.ID)
	Unprotect(p peer.ID)
}

// WithConnProtector protects the connections of live subscriptions with
// cp (default: none, and the connection manager may trim them).
func WithConnProtector(cp ConnProtector) ServiceOption {
	return func(s *Service) error { s.protect = cp; return nil }
}

// protect brings the protection of c's connection in line with its
// state: protected while connected and not removed from the hub. It reads
// the state under c.mu and calls h.prot there too, so calls for one
// channel stay balanced and the last one reflects its latest state,
// whatever goroutines change it.
func (h *hub) protect(c *channel, removed bool) {
	if h.prot == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gone = c.gone || removed
	switch on := c.state == Connected && !c.gone; {
	case on && !c.protected:
		c.protected = true
		h.prot.Protect(c.peer)
	case !on && c.protected:
		c.protected = false
		h.prot.Unprotect(c.peer)
	}
}
