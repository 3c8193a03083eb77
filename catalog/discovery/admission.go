package discovery

import (
	"errors"
	"fmt"
	"time"

	dht "github.com/libp2p/go-libp2p-kad-dht"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/policy"
)

// ErrNotAdmitted is returned by [New] when the network is closed (see
// [WithAdmission]) and the local entry holds no valid admission ticket:
// every peer would reject it. It wraps [catalog.ErrUnadmitted].
var ErrNotAdmitted = fmt.Errorf("discovery: the local entry holds no valid admission ticket: %w", catalog.ErrUnadmitted)

// WithAdmission closes the network's catalog: every remote entry must pass
// a (typically policy.Require over the network's admission ticket
// validators) wherever it arrives. Refused entries are rejected by the
// gossip validator (so gossipsub's peer scoring penalises their sender,
// see [PeerScoreParams]), dropped from syncs, and a sync whose initiator
// is not admitted is refused (both protocol versions) before any of the
// catalog is sent; an entry is purged when its admission ends. The local
// entry must pass a at startup, or New fails with [ErrNotAdmitted]; a
// node whose own admission ends later (its ticket expires) stops
// announcing until UpdateLocal gives it a valid ticket, and logs it at
// Error. The DHT validator is built separately: see [AdmissionDHTOption].
//
// a must refuse something: WithAdmission(nil), and policy.Require() with
// no validator (it admits every entry), are errors, not an open network.
func WithAdmission(a catalog.Admission) Option {
	return func(c *config) error {
		if r, ok := a.(policy.Requirement); a == nil || (ok && len(r) == 0) {
			return errors.New("discovery: WithAdmission without an admission check (nil, or policy.Require() with no validator) would admit every entry; give the network's admission ticket validators")
		}
		c.admission = a
		return nil
	}
}

// checkLocalAdmission closes store with a and checks local against it.
func checkLocalAdmission(store *catalog.Store, a catalog.Admission, local *catalog.SignedEntry, now time.Time) error {
	if a == nil {
		return nil
	}
	store.SetAdmission(a)
	if _, err := a.Check(&local.Entry, now); err != nil {
		return fmt.Errorf("%w: %w", ErrNotAdmitted, err)
	}
	return nil
}

// AdmissionDHTOption registers the DHT record validator of a closed
// network: [Validator] with network's admission check a. Give it after
// [DHTOptions] (it replaces the open validator of the "mosaik" namespace):
// the DHT then refuses to store or return entries of network that a
// refuses. Entries of other networks are judged as by the open validator.
func AdmissionDHTOption(network catalog.NetworkID, a catalog.Admission) dht.Option {
	return dht.NamespacedValidator(DHTNamespace, Validator{Network: network, Admission: a})
}

// ownAdmitted reports whether the local entry se passes the network's
// admission check now (always, in an open network). A closed network's
// node whose admission ended (its ticket expired, or UpdateLocal took it
// away) would have every announcement rejected and be scored down by its
// neighbours until they ignore it altogether: it announces nothing (no
// gossip, no bump) until its entry is admitted again, and says so once at
// Error, and once at Info when it is admitted again. Its peers purge it
// meanwhile, as they purge a silent node.
func (s *Service) ownAdmitted(se *catalog.SignedEntry) bool {
	a := s.store.Admission()
	if a == nil {
		return true
	}
	now := s.now()
	exp, err := a.Check(&se.Entry, now)
	if err == nil && !exp.IsZero() && !exp.After(now) {
		err = fmt.Errorf("admission ended at %v", exp) // a check may report an end rather than fail
	}
	was := s.ownUnadmitted.Swap(err != nil)
	switch {
	case err != nil && !was:
		s.log.Error("the local entry's admission ended: not announcing it until it holds a valid admission ticket", "err", err,
			"hint", "renew the node's admission ticket (discovery UpdateLocal with a new one; mosaik-node: a new --admission-ticket and a restart)")
	case err == nil && was:
		s.log.Info("the local entry is admitted again: announcing it")
	}
	return err == nil
}
