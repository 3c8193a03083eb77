package groups

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"log/slog"
	"time"

	"lukechampine.com/blake3"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/policy"
)

// Key is a group's shared secret, held as blake3(secret). It is never
// printed whole (String, %v, %x and slog show "ab****cd") and never
// leaves the node: bond proofs derive from it.
//
// Key is a comparable value, safe to copy.
type Key struct{ h [32]byte }

// KeyFromSecret derives a key from a secret string (blake3 of its UTF-8
// bytes).
func KeyFromSecret(secret string) Key { return Key{h: blake3.Sum256([]byte(secret))} }

// KeyFromBytes derives a key from secret bytes (blake3 of them).
func KeyFromBytes(secret []byte) Key { return Key{h: blake3.Sum256(secret)} }

// String shows the first and last byte only.
func (k Key) String() string {
	return hex.EncodeToString(k.h[:1]) + "****" + hex.EncodeToString(k.h[31:])
}

// GoString is String, so %#v does not print the key either.
func (k Key) GoString() string { return "groups.Key(" + k.String() + ")" }

// Format prints String for every verb.
func (k Key) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(k.String())) }

// LogValue is String.
func (k Key) LogValue() slog.Value { return slog.StringValue(k.String()) }

// Fingerprinter is what a ticket validator must also implement to be part
// of a group id: a stable digest of its class and configuration (never of
// secrets it holds in the clear). policy.Fingerprinter, when it lands, has
// the same method.
type Fingerprinter interface {
	Fingerprint() [32]byte
}

// Tags of the group id's fields (see DeriveID).
const (
	idTagHeartbeat byte = 0x01
	idTagJitter    byte = 0x02
	idTagMissed    byte = 0x03
	idTagSignature byte = 0x04
	idTagTicket    byte = 0x05
	idTagTickets   byte = 0x06
)

const idDomain = "mosaik groups id v1"

// DeriveID computes a group id. Exact layout (PROTOCOL.md copies it):
//
//	id = blake3-256 keyed with blake3(secret) (32 bytes) over
//	  "mosaik groups id v1"                     (19 ASCII bytes)
//	  0x01 ‖ u64be(Heartbeat in ms)
//	  0x02 ‖ u64be(HeartbeatJitter in ms)
//	  0x03 ‖ u64be(MissedHeartbeats)
//	  0x04 ‖ signature (32 bytes, StateMachine.Signature)
//	  for each ticket validator i, in option order:
//	    0x05 ‖ u32be(i) ‖ fingerprint (32 bytes)
//	  0x06 ‖ u32be(number of validators)
//
// Every field has a fixed length, so the tags alone make the encoding
// unambiguous. A validator without Fingerprint() [32]byte is an error.
func DeriveID(key Key, p Params, signature catalog.ID, tickets []policy.TicketValidator) (catalog.ID, error) {
	h := blake3.New(32, key.h[:])
	_, _ = h.Write([]byte(idDomain))
	var b [8]byte
	u64 := func(tag byte, v uint64) {
		binary.BigEndian.PutUint64(b[:], v)
		_, _ = h.Write([]byte{tag})
		_, _ = h.Write(b[:])
	}
	u64(idTagHeartbeat, uint64(p.Heartbeat/time.Millisecond))
	u64(idTagJitter, uint64(p.HeartbeatJitter/time.Millisecond))
	u64(idTagMissed, uint64(p.MissedHeartbeats))
	_, _ = h.Write([]byte{idTagSignature})
	_, _ = h.Write(signature[:])
	var n [4]byte
	for i, v := range tickets {
		fp, ok := v.(Fingerprinter)
		if !ok {
			return catalog.ID{}, fmt.Errorf("groups: ticket validator %d (%T) has no Fingerprint() [32]byte", i, v)
		}
		f := fp.Fingerprint()
		binary.BigEndian.PutUint32(n[:], uint32(i))
		_, _ = h.Write([]byte{idTagTicket})
		_, _ = h.Write(n[:])
		_, _ = h.Write(f[:])
	}
	binary.BigEndian.PutUint32(n[:], uint32(len(tickets)))
	_, _ = h.Write([]byte{idTagTickets})
	_, _ = h.Write(n[:])
	var id catalog.ID
	h.Sum(id[:0])
	return id, nil
}
