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

// protect brings the protection of sub's connection in line with its
// state: protected while connected and not removed from the set. It reads
// the state under sub.mu and calls s.prot there too, so calls for one
// subscription stay balanced and the last one reflects its latest state,
// whatever goroutines change it.
func (s *subscriptionSet) protect(sub *subscription, removed bool) {
	if s.prot == nil {
		return
	}
	sub.mu.Lock()
	defer sub.mu.Unlock()
	sub.gone = sub.gone || removed
	switch on := sub.state == Connected && !sub.gone; {
	case on && !sub.protected:
		sub.protected = true
		s.prot.Protect(sub.peer)
	case !on && sub.protected:
		sub.protected = false
		s.prot.Unprotect(sub.peer)
	}
}
