package catalog

import (
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/record"
	"google.golang.org/protobuf/proto"

	"github.com/mosaik-go/mosaik/catalog/pb"
)

// MaxDepartureSize caps a sealed departure message.
const MaxDepartureSize = 1 << 10

// Departure is a peer's signed notice that it leaves the network. A
// departure removes the peer's entry only if LastVersion is at least the
// version the receiver knows, so a replayed old departure cannot remove a
// peer that has since come back.
type Departure struct {
	PeerID      peer.ID
	Network     NetworkID
	LastVersion Version
	Timestamp   time.Time
}

type departureRecord struct{ m *pb.Departure }

func (*departureRecord) Domain() string { return DepartureDomain }
func (*departureRecord) Codec() []byte  { return DeparturePayloadType }
func (r *departureRecord) MarshalRecord() ([]byte, error) {
	return proto.MarshalOptions{Deterministic: true}.Marshal(r.m)
}
func (r *departureRecord) UnmarshalRecord(b []byte) error {
	r.m = new(pb.Departure)
	return proto.Unmarshal(b, r.m)
}

// SealDeparture signs d with sk, which must be the key of d.PeerID.
func SealDeparture(d Departure, sk crypto.PrivKey) ([]byte, error) {
	id, err := peer.IDFromPrivateKey(sk)
	if err != nil || id != d.PeerID {
		return nil, fmt.Errorf("catalog: seal departure: key does not belong to %s", d.PeerID)
	}
	env, err := record.Seal(&departureRecord{m: &pb.Departure{
		PeerId:      []byte(d.PeerID),
		Network:     d.Network[:],
		LastVersion: &pb.Version{StartMs: d.LastVersion.StartMS, UpdateMs: d.LastVersion.UpdateMS},
		TimestampMs: d.Timestamp.UnixMilli(),
	}}, sk)
	if err != nil {
		return nil, fmt.Errorf("catalog: seal departure: %w", err)
	}
	return env.Marshal()
}

// OpenDeparture verifies and decodes a sealed departure: size cap, signature
// and domain, structure, and that the signer is the departing peer.
func OpenDeparture(data []byte) (*Departure, error) {
	d, env, err := decodeDeparture(data)
	if err != nil {
		return nil, err
	}
	if err := verifyDeparture(d, env); err != nil {
		return nil, err
	}
	return d, nil
}

// decodeDeparture decodes a sealed departure without verifying it: size
// cap, envelope, payload and field structure.
func decodeDeparture(data []byte) (*Departure, *envelope, error) {
	var rec departureRecord
	env, err := decodeEnvelope(data, MaxDepartureSize, &rec, DeparturePayloadType)
	if err != nil {
		return nil, nil, err
	}
	id, err := peer.IDFromBytes(rec.m.GetPeerId())
	if err != nil {
		return nil, nil, malformed("departure peer id: %v", err)
	}
	nw, err := IDFromBytes(rec.m.GetNetwork())
	if err != nil {
		return nil, nil, malformed("departure network: %v", err)
	}
	v := rec.m.GetLastVersion()
	return &Departure{
		PeerID:      id,
		Network:     nw,
		LastVersion: Version{StartMS: v.GetStartMs(), UpdateMS: v.GetUpdateMs()},
		Timestamp:   time.UnixMilli(rec.m.GetTimestampMs()),
	}, env, nil
}

// verifyDeparture checks a decoded departure's signature and that its
// signer is the departing peer.
func verifyDeparture(d *Departure, env *envelope) error {
	if err := env.verify(DepartureDomain); err != nil {
		return err
	}
	if !d.PeerID.MatchesPublicKey(env.key) {
		return fmt.Errorf("%w: departure of %s", ErrSignerMismatch, d.PeerID)
	}
	return nil
}
