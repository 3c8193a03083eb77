package collections

// A mutation as it travels in the log (PROTOCOL.md §22), its codec, and
// the checks that every replica can decode it.

import (
	"fmt"

	"github.com/fxamacker/cbor/v2"

	"github.com/mosaik-go/mosaik/groups"
	"github.com/mosaik-go/mosaik/internal/detcbor"
)

// command is one mutation as it travels in the log: an operation code
// and up to three canonical CBOR arguments, whose meaning depends on the
// collection type and the op (PROTOCOL.md §22). N carries integer
// arguments (indexes, lengths). Unknown ops and undecodable arguments are
// no-ops on every replica, and counted.
type command struct {
	_  struct{}        `cbor:",toarray"`
	Op uint8           `cbor:"0,keyasint"`
	A  cbor.RawMessage `cbor:"1,keyasint,omitempty"`
	B  cbor.RawMessage `cbor:"2,keyasint,omitempty"`
	C  cbor.RawMessage `cbor:"3,keyasint,omitempty"`
	N  uint64          `cbor:"4,keyasint,omitempty"`
	M  uint64          `cbor:"5,keyasint,omitempty"`
	// Many holds the arguments of batch ops (extend, remove many).
	Many []cbor.RawMessage `cbor:"6,keyasint,omitempty"`

	// undecodable marks a log entry that is no command at all (never
	// encoded; see commandCodec).
	undecodable bool
}

// commandCodec is the groups CBOR codec (with its limits), except that a
// log entry that does not decode as a command still reaches the machine,
// marked undecodable: it is then counted as rejected and moves the
// version like every other invalid command, where the group would skip
// it unseen.
type commandCodec struct{ groups.CBOR[command] }

func (c commandCodec) Decode(b []byte) (command, error) {
	cmd, ok := decodeCommandFast(b)
	if !ok {
		var err error
		if cmd, err = c.CBOR.Decode(b); err != nil {
			return command{undecodable: true}, nil
		}
	}
	if !cmd.wellformed() {
		return command{undecodable: true}, nil
	}
	return cmd, nil
}

// fitsReplicas refuses a command that every replica would find
// undecodable although each argument alone passed encode: the decoding
// limits (detcbor) apply to the whole command, which adds a level (its
// map) to every argument and another to a batch's (the Many array), and
// holds a batch's arguments in one array. Committed, such a command was
// skipped as rejected on every replica while its caller got a version and
// no error (review probes: an Extend of 2^20+1 bools, a value nested 32
// deep). Only a command with an argument that deep is encoded and decoded
// here as a replica would; the count is checked at once.
func (c *command) fitsReplicas() error {
	if len(c.Many) > detcbor.MaxElements {
		return fmt.Errorf("%w: %d items in one call, at most %d", ErrTooLarge, len(c.Many), detcbor.MaxElements)
	}
	deep := false
	for _, a := range [...]cbor.RawMessage{c.A, c.B, c.C} {
		deep = deep || (nests(a) && detcbor.WellformedInside(a, 1) != nil)
	}
	for _, a := range c.Many {
		deep = deep || (nests(a) && detcbor.WellformedInside(a, 2) != nil)
	}
	if !deep {
		return nil
	}
	b, err := detcbor.Marshal(c)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrEncoding, err)
	}
	if got, _ := (commandCodec{}).Decode(b); got.undecodable {
		return fmt.Errorf("%w: a value nested too deep to replicate (at most %d levels of arrays and maps with the command around it)", ErrEncoding, detcbor.MaxLevels)
	}
	return nil
}

// nests reports whether a is a CBOR array, map or tag: the only items
// deeper than one level. Strings, byte strings and numbers (most keys and
// values) skip fitsReplicas' scan.
func nests(a cbor.RawMessage) bool {
	if len(a) == 0 {
		return false
	}
	major := a[0] >> 5
	return major >= 4 && major <= 6
}

// wellformed reports whether every present argument is one CBOR item the
// deterministic encoder accepts. The decoder keeps arguments as raw bytes,
// indefinite-length strings included, which no replica ever writes and
// the encoder refuses: such an entry is undecodable, not a command.
func (c *command) wellformed() bool {
	for _, a := range [...]cbor.RawMessage{c.A, c.B, c.C} {
		if len(a) > 0 && detcbor.Wellformed(a) != nil {
			return false
		}
	}
	for _, a := range c.Many {
		if detcbor.Wellformed(a) != nil {
			return false
		}
	}
	return true
}
