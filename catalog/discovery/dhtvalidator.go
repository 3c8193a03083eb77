package discovery

import (
	"errors"
	"fmt"
	"time"

	dht "github.com/libp2p/go-libp2p-kad-dht"
	record "github.com/libp2p/go-libp2p-record"

	"github.com/mosaik-go/mosaik/catalog"
)

// Validator is the kad-dht record validator for the "mosaik" namespace: a
// value must be a sealed entry (see catalog.OpenEntry) whose network and
// signer match the key; Select prefers the highest version. The zero
// Validator serves open networks. A closed network's DHT sets Network and
// Admission (see [AdmissionDHTOption]): an entry of Network must then also
// pass Admission at the time of the check (libp2p-signed ticket
// validators cache their verdicts per holder and ticket). It is safe for
// concurrent use.
type Validator struct {
	Network   catalog.NetworkID
	Admission catalog.Admission
}

var _ record.Validator = Validator{}

// Validate checks that value is a valid entry for key.
func (v Validator) Validate(key string, value []byte) error {
	nw, p, err := parseDHTKey(key)
	if err != nil {
		return err
	}
	e, err := catalog.OpenEntry(value, catalog.DefaultMaxEntrySize)
	if err != nil {
		return err
	}
	if e.Entry.PeerID != p || e.Entry.Network != nw {
		return fmt.Errorf("discovery: DHT record under %s holds the entry of %s in %s", key, e.Entry.PeerID, e.Entry.Network.Short())
	}
	if v.Admission != nil && nw == v.Network {
		if _, err := v.Admission.Check(&e.Entry, time.Now()); err != nil {
			return fmt.Errorf("discovery: DHT record under %s: %w: %w", key, catalog.ErrUnadmitted, err)
		}
	}
	return nil
}

// Select returns the index of the entry with the highest version.
func (v Validator) Select(key string, values [][]byte) (int, error) {
	best, bestV := -1, catalog.Version{}
	for i, b := range values {
		if v.Validate(key, b) != nil {
			continue
		}
		e, _ := catalog.OpenEntry(b, catalog.DefaultMaxEntrySize)
		if best < 0 || e.Entry.Version.Compare(bestV) > 0 {
			best, bestV = i, e.Entry.Version
		}
	}
	if best < 0 {
		return 0, errors.New("discovery: no valid entry among DHT values")
	}
	return best, nil
}

// DHTOptions are the kad-dht options a mosaik DHT needs: the mosaik protocol
// prefix, the entry validator, and server mode (so that small or loopback
// networks work; AutoNAT never reports them public). In plugin mode, build
// your DHT with at least dht.ProtocolPrefix(DHTProtocolPrefix) and
// dht.NamespacedValidator(DHTNamespace, Validator{}).
//
// They also turn kad-dht's automatic routing-table refresh off: the
// [Service] the DHT is given to ([WithDHT]) refreshes the table itself,
// first once the join settled (Params.SettleDelay), then as kad-dht would
// (see dhtRefreshLoop). kad-dht refreshes as soon as its first peer
// enters the table: a lookup per bucket, each dialing the closest peers
// it finds, and a second round after the first. In a network starting
// together that connected nearly every pair of nodes during the joins,
// two to three times the CPU of the joins without a DHT (BENCHMARKS.md).
// A DHT built with these options and not given to a Service must be
// refreshed by its owner (RefreshRoutingTable).
func DHTOptions() []dht.Option {
	return []dht.Option{
		dht.ProtocolPrefix(DHTProtocolPrefix),
		dht.NamespacedValidator(DHTNamespace, Validator{}),
		dht.Mode(dht.ModeServer),
		dht.DisableAutoRefresh(),
	}
}
