package catalog

import "fmt"

// refusal is a merge refusal whose message is built only when it is read.
// Copies of versions a node holds are refused by the thousand in a
// heartbeat storm (gossip and syncs bring every entry more than once), and
// a flood's excess updates by the rate limit; they are counted by kind and
// rarely printed, and the message's peer ID costs a base58 encoding.
// Error() reads as fmt.Errorf("%w: "+format) would, and errors.Is matches
// the kind.
type refusal struct {
	kind   error
	format string
	args   []any
}

func refuse(kind error, format string, args ...any) error {
	return &refusal{kind: kind, format: format, args: args}
}

func (r *refusal) Error() string { return r.kind.Error() + ": " + fmt.Sprintf(r.format, r.args...) }

func (r *refusal) Unwrap() error { return r.kind }
