package catalog

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/libp2p/go-libp2p/core/crypto"
	cryptopb "github.com/libp2p/go-libp2p/core/crypto/pb"
	"github.com/libp2p/go-libp2p/core/record"
	recordpb "github.com/libp2p/go-libp2p/core/record/pb"
	ma "github.com/multiformats/go-multiaddr"
	"google.golang.org/protobuf/proto"
)

// OpenEntry verifies and decodes a sealed entry. It checks, in order: the
// size cap (before decoding anything), the envelope structure, key type
// (ed25519 only) and payload type, the entry's structure, that the signer
// is the entry's peer, and last the signature. It does not check the
// network, freshness or version: [Store.Open] and [Store.Merge] do that.
func OpenEntry(data []byte, maxSize int) (*SignedEntry, error) {
	e, env, err := decodeEntry(data, maxSize)
	if err != nil {
		return nil, err
	}
	if err := env.verify(EntryDomain); err != nil {
		return nil, err
	}
	e.compact(false)
	return e, nil
}

// decodeEntry runs every check of OpenEntry except the signature, which is
// by far the most expensive one, and returns the envelope to verify it
// with. Its entry must not be trusted before env.verify succeeds, and its
// sealed bytes are data itself until compact copies or keeps them: a copy
// refused on its version costs no copy.
func decodeEntry(data []byte, maxSize int) (*SignedEntry, *envelope, error) {
	var rec entryRecord
	env, err := decodeEnvelope(data, maxSize, &rec, EntryPayloadType)
	if err != nil {
		return nil, nil, err
	}
	e, err := entryFromPB(rec.m)
	if err != nil {
		return nil, nil, err
	}
	if !e.PeerID.MatchesPublicKey(env.key) {
		return nil, nil, fmt.Errorf("%w: entry of %s", ErrSignerMismatch, e.PeerID)
	}
	return &SignedEntry{Entry: e, raw: data[:len(data):len(data)]}, env, nil
}

// compact shrinks what a decoded entry holds beyond its sealed bytes: a
// catalog keeps one per peer, 10 000 of them and more. Ticket data points
// into the sealed bytes instead of holding a copy, and the components of
// the addresses share one array, with the components repeated between
// addresses (the IP of a TCP and a QUIC address) stored once. Called
// once the entry is verified (a copy refused on its version is not worth
// it) and before it is shared. Unless keep is set (the caller handed its
// buffer over, see [Store.OpenOwned]) the sealed bytes are copied first:
// callers may reuse their read buffers.
func (s *SignedEntry) compact(keep bool) {
	s.ownRaw(keep)
	s.Entry.Addrs = compactAddrs(s.Entry.Addrs)
}

// ownRaw copies the sealed bytes unless keep is set, and points the
// tickets' data into them (see compact).
func (s *SignedEntry) ownRaw(keep bool) {
	if !keep {
		s.raw = bytes.Clone(s.raw)
	}
	for i, t := range s.Entry.Tickets {
		// The payload holds the ticket verbatim; any equal run of bytes
		// serves. Capped, so an append by a careless reader cannot write
		// into the sealed bytes.
		if n := len(t.Data); n > 0 {
			if j := bytes.Index(s.raw, t.Data); j >= 0 {
				s.Entry.Tickets[i].Data = s.raw[j : j+n : j+n]
			}
		}
	}
}

// compactAddrs copies addrs into one backing array of components.
func compactAddrs(addrs []ma.Multiaddr) []ma.Multiaddr {
	n := 0
	for _, a := range addrs {
		n += len(a)
	}
	if len(addrs) == 0 || n == 0 {
		return addrs
	}
	comps := make([]ma.Component, 0, n)
	for i, a := range addrs {
		start := len(comps)
		for _, c := range a {
			// A component repeated from an earlier address shares its
			// bytes (components are immutable values).
			if k := indexComponent(comps[:start], c); k >= 0 {
				c = comps[k]
			}
			comps = append(comps, c)
		}
		addrs[i] = ma.Multiaddr(comps[start:len(comps):len(comps)])
	}
	return addrs
}

func indexComponent(cs []ma.Component, c ma.Component) int {
	for i := range cs {
		if cs[i].Equal(&c) {
			return i
		}
	}
	return -1
}

// envelope is a decoded record envelope whose signature is not verified
// yet. Decoding it once serves the cheap checks and the verification.
type envelope struct {
	key                       crypto.PubKey
	payloadType, payload, sig []byte
}

// decodeEnvelope checks the size cap, the envelope structure, the key type
// and the payload type, and decodes the payload into rec. It does not
// verify the signature: env.verify does.
func decodeEnvelope(data []byte, maxSize int, rec record.Record, payloadType []byte) (*envelope, error) {
	if maxSize <= 0 {
		maxSize = DefaultMaxEntrySize
	}
	if len(data) > maxSize {
		return nil, fmt.Errorf("%w: %d bytes > %d", ErrOversize, len(data), maxSize)
	}
	// What record.UnmarshalEnvelope does, keeping the signature for
	// verify (record.Envelope does not export it).
	var m recordpb.Envelope
	if err := proto.Unmarshal(data, &m); err != nil {
		return nil, malformed("envelope: %v", err)
	}
	key, err := crypto.PublicKeyFromProto(m.GetPublicKey())
	if err != nil {
		return nil, malformed("envelope: %v", err)
	}
	// mosaik peers are ed25519; refusing other key types up front also
	// keeps peers from making us verify costly RSA signatures.
	if key.Type() != cryptopb.KeyType_Ed25519 {
		return nil, fmt.Errorf("%w: signer key type %v is not ed25519", ErrBadSignature, key.Type())
	}
	if !bytes.Equal(m.GetPayloadType(), payloadType) {
		return nil, fmt.Errorf("%w: %q", ErrWrongPayloadType, m.GetPayloadType())
	}
	if err := rec.UnmarshalRecord(m.GetPayload()); err != nil {
		return nil, malformed("payload: %v", err)
	}
	return &envelope{key: key, payloadType: m.GetPayloadType(), payload: m.GetPayload(), sig: m.GetSignature()}, nil
}

// verify checks the envelope's signature over domain, payload type and
// payload, each prefixed with its length as a uvarint: what libp2p's
// record.ConsumeTypedEnvelope checks (PROTOCOL.md, signed envelopes).
func (e *envelope) verify(domain string) error {
	b := make([]byte, 0, 3*binary.MaxVarintLen64+len(domain)+len(e.payloadType)+len(e.payload))
	b = binary.AppendUvarint(b, uint64(len(domain)))
	b = append(b, domain...)
	b = binary.AppendUvarint(b, uint64(len(e.payloadType)))
	b = append(b, e.payloadType...)
	b = binary.AppendUvarint(b, uint64(len(e.payload)))
	b = append(b, e.payload...)
	ok, err := verifySig(e.key, b, e.sig)
	switch {
	case err != nil:
		return fmt.Errorf("%w: %v", ErrBadSignature, err)
	case !ok:
		return fmt.Errorf("%w: %v", ErrBadSignature, record.ErrInvalidSignature)
	}
	return nil
}
