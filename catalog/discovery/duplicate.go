package discovery

import (
	"errors"
	"time"

	"github.com/mosaik-go/mosaik/catalog"
)

// open opens sealed entry bytes learned from src against the catalog (see
// catalog.Store.Open). Bytes refused as the local peer's own entry are
// checked for a second process using our identity.
//
// The entry keeps data itself (Store.OpenOwned) when nothing writes it
// again: gossipsub's message data (a buffer of its own per message, which
// the router only reads: it forwards it and serves it from its message
// cache) and the entries of a decoded sync message (protobuf copies each).
// Besides a copy per update, this lets the router's message cache and the
// catalog share one copy of every recent entry. A DHT value comes from
// kad-dht's own buffers and is copied.
func (s *Service) open(data []byte, now time.Time, src source) (*catalog.SignedEntry, error) {
	open := s.store.OpenOwned
	if src == fromDHT {
		open = s.store.Open
	}
	e, err := open(data, now)
	if errors.Is(err, catalog.ErrLocal) {
		if ferr := s.checkLocalCopy(data, now, src); ferr != nil {
			return nil, ferr
		}
	}
	return e, err
}

// checkLocalCopy reports a newer entry of the local peer that this run did
// not sign: another process holds our key (see DuplicateIdentity). It
// returns the rejection of a forged one (a bad signature, a version dated
// beyond the clock drift: catalog.Store.CheckLocalCopy), which the caller
// returns instead of ErrLocal, so that gossip penalises its sender.
func (s *Service) checkLocalCopy(data []byte, now time.Time, src source) error {
	if s.dupErr.Load() != nil {
		return nil // reported once; the other process keeps announcing
	}
	err := s.store.CheckLocalCopy(data, now)
	var de *catalog.DuplicateIdentityError
	if !errors.As(err, &de) {
		if catalog.IsRejected(err) {
			return err
		}
		return nil
	}
	if !s.dupErr.CompareAndSwap(nil, de) {
		return nil
	}
	s.log.Error("another process uses this node's identity: the network now ignores this node's entry",
		"peer", de.Peer, "via", src, "their_start", de.Theirs.StartedAt().UTC(), "their_addrs", de.Addrs,
		"our_start", de.Ours.StartedAt().UTC(),
		"hint", "give each process its own key (mosaik-node: --key FILE); stop the other process or give it a new key")
	close(s.dupDone)
	return nil
}

// DuplicateIdentity returns a channel closed when the service finds a
// second process using the local peer's identity: a validly signed entry
// of our peer ID, newer than ours, that this run did not sign, arriving by
// gossip, sync or the DHT. From then on the network's peers keep the other
// process's entry and ignore ours, so this node is cut off from discovery
// (and so from new subscriptions) until one of the two stops. The service
// logs the finding once at Error level and keeps running; what to do (exit,
// alert) is the application's choice. [Service.DuplicateIdentityErr] holds
// the details.
func (s *Service) DuplicateIdentity() <-chan struct{} { return s.dupDone }

// DuplicateIdentityErr returns the *catalog.DuplicateIdentityError found
// (errors.Is(err, catalog.ErrDuplicateIdentity)) once DuplicateIdentity is
// closed, and nil before.
func (s *Service) DuplicateIdentityErr() error {
	if de := s.dupErr.Load(); de != nil {
		return de
	}
	return nil
}
