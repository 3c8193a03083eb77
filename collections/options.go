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
	noVote  bool
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
// reader) and the command codec by the collection; neither can be
// overridden here.
func WithGroupOptions(opts ...groups.Option) Option {
	return func(c *config) { c.group = append(c.group, opts...) }
}

// WithoutVote opens a writer handle (NewMap, ...) whose replica never
// votes: its group role is groups.RoleReader, a raft learner for good
// that forwards its mutations to the leader like any follower. It never
// bootstraps a cluster of its own, so its mutations fail with ErrOffline
// while no writer replica is reachable, and joining or leaving does not
// change the voter set (the leader adds it as a learner and removes it
// once its bond has been down for the group's RemoveAfter). Meant for
// short-lived writers such as a command-line client. Its mutations still
// return once applied on this replica, which therefore catches up with
// the collection first. A reader constructor ignores it.
func WithoutVote() Option { return func(c *config) { c.noVote = true } }
