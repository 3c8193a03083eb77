package catalog

import (
	"bytes"
	"encoding/hex"
	"fmt"

	"lukechampine.com/blake3"
)

// ID is a 32-byte intent-addressed identifier. Networks, streams, tags and
// ticket classes are all IDs, derived from human-readable names by the
// string rule of [IDFromString].
//
// IDs are comparable values and safe to copy and share.
type ID [32]byte

// Aliases name the role an ID plays. They are the same type, so an ID made
// with [IDFromString] can be used for any of them.
type (
	// NetworkID names a mosaik network. Nodes of different networks never
	// share catalog entries.
	NetworkID = ID
	// StreamID names a typed data stream.
	StreamID = ID
	// Tag is a role label attached to a peer ("validator", "region-eu").
	Tag = ID
	// TicketClass names the kind of an authorization ticket.
	TicketClass = ID
)

// IDFromString derives an ID from a string: exactly 64 hexadecimal characters
// (either case) decode directly to the 32 bytes; anything else is the BLAKE3
// hash of the UTF-8 bytes. So "orders" and the hex of blake3("orders") name
// the same ID, and an ID's String() round-trips.
func IDFromString(s string) ID {
	var id ID
	if len(s) == 64 {
		if _, err := hex.Decode(id[:], []byte(s)); err == nil {
			return id
		}
	}
	return HashID([]byte(s))
}

// HashID returns the BLAKE3 hash of b as an ID. Unlike [IDFromString] it
// always hashes.
func HashID(b []byte) ID {
	return ID(blake3.Sum256(b))
}

// IDFromBytes returns the ID held in b, which must be exactly 32 bytes.
func IDFromBytes(b []byte) (ID, error) {
	var id ID
	if len(b) != len(id) {
		return id, fmt.Errorf("catalog: an ID is 32 bytes, got %d", len(b))
	}
	copy(id[:], b)
	return id, nil
}

// Derive returns blake3(id ‖ info): a new ID bound to this one.
func (id ID) Derive(info []byte) ID {
	h := blake3.New(32, nil)
	_, _ = h.Write(id[:])
	_, _ = h.Write(info)
	var out ID
	h.Sum(out[:0])
	return out
}

// String returns the full lowercase hex form (64 characters).
func (id ID) String() string { return hex.EncodeToString(id[:]) }

// Short returns the first 5 bytes in hex (10 characters), for logs and
// metric labels.
func (id ID) Short() string { return hex.EncodeToString(id[:5]) }

// IsZero reports whether the ID is all zeros (unset).
func (id ID) IsZero() bool { return id == ID{} }

// Compare orders IDs by their bytes, returning -1, 0 or +1.
func (id ID) Compare(other ID) int { return bytes.Compare(id[:], other[:]) }

// MarshalText encodes the ID as 64 lowercase hex characters.
func (id ID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText applies the string rule of [IDFromString], so configuration
// files may hold either names or hex IDs.
func (id *ID) UnmarshalText(b []byte) error {
	*id = IDFromString(string(b))
	return nil
}
