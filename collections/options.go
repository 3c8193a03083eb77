package collections

import (
	"github.com/mosaik-go/mosaik/groups"
	"github.com/mosaik-go/mosaik/policy"
)

// Option configures a collection when it is opened.
type Option func(*config)

type config struct {
	tickets []policy.TicketValidator
	group   []groups.Option
	sync    *SyncConfig // WithSync; nil keeps the group's own
}

// WithRequireTicket makes every replica of the collection (writers and
// readers) hold a ticket that v accepts: replicas without one are refused
// at the bond, so a reader without a valid ticket receives nothing.
// Repeatable (all must pass). The validators' fingerprints, in order, are
// part of the group id, so every replica must require the same ones.
func WithRequireTicket(v policy.TicketValidator) Option {
	return func(c *config) { c.tickets = append(c.tickets, v) }
}

// WithGroupOptions passes options to the collection's group: for example
// groups.WithDataDir(dir) to keep the collection on disk, groups.WithParams
// for the consensus timings (three of them are part of the group id) or
// groups.WithReluctant. The role is set by the constructor (writer or
// reader) and cannot be overridden here.
func WithGroupOptions(opts ...groups.Option) Option {
	return func(c *config) { c.group = append(c.group, opts...) }
}
