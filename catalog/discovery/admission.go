package discovery

import (
	"fmt"
	"time"

	dht "github.com/libp2p/go-libp2p-kad-dht"

	"github.com/mosaik-go/mosaik/catalog"
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
// entry must pass a at startup, or New fails with [ErrNotAdmitted]. The
// DHT validator is built separately: see [AdmissionDHTOption].
func WithAdmission(a catalog.Admission) Option {
	return func(c *config) error { c.admission = a; return nil }
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
