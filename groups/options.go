package groups

import (
	"time"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/policy"
)

// Option configures Join.
type Option func(*config)

type config struct {
	role      Role
	reluctant bool
	anyRole   bool // WithRunningRole
	params    Params
	snapshot  SnapshotParams
	tickets   []policy.TicketValidator
	codec     any // Codec[C] for the group's command type, checked in Join
	tick      <-chan time.Time
	// openStore opens the group's log store; fresh asks for an empty one
	// (discarding what the store held, after a lost merge). nil: memory.
	// The data dir option (storage layer) sets it.
	openStore func(group catalog.ID, fresh bool) (logStore, error)
	// maxBatch is the most bytes a batch of commands may take
	// (batchLimit of the Service's bond frame limit), set by Join.
	maxBatch int
}

func defaultConfig() config {
	return config{role: RoleWriter, params: DefaultParams(), snapshot: DefaultSnapshotParams()}
}

// WithRole sets this node's role: RoleWriter (default) may vote and lead;
// RoleReader replicates as a raft learner and never votes or campaigns.
func WithRole(r Role) Option { return func(c *config) { c.role = r } }

// WithRunningRole makes a Join of a group already joined on this node in
// another role (or reluctance) return a handle to it in the role it runs
// in, instead of failing; a group not joined yet is joined in WithRole's
// role. The group keeps that role until its last handle closes. Package
// collections opens a reader of a collection the node writes this way.
func WithRunningRole() Option { return func(c *config) { c.anyRole = true } }

// WithReluctant multiplies this node's election timeout and bootstrap delay by
// Params.ReluctantFactor, so other writers usually lead. Not part of the id.
func WithReluctant() Option { return func(c *config) { c.reluctant = true } }

// WithParams sets the consensus timings (see Params; three of them are
// part of the group id).
func WithParams(p Params) Option { return func(c *config) { c.params = p } }

// WithRequireTicket makes every bonded peer hold a ticket that v accepts.
// Repeatable: all validators must pass, and their fingerprints, in order,
// are part of the group id, so v must implement Fingerprint() [32]byte.
func WithRequireTicket(v policy.TicketValidator) Option {
	return func(c *config) { c.tickets = append(c.tickets, v) }
}

// WithCodec replaces the deterministic CBOR codec of the group's commands.
// Its type must match the command type given to Join, or Join fails.
// Commands are the only values that cross the wire: queries and results
// stay on the node that asks.
func WithCodec[C any](codec Codec[C]) Option { return func(c *config) { c.codec = codec } }

// withLogStore sets the log store opener (tests; the data dir option).
func withLogStore(open func(group catalog.ID, fresh bool) (logStore, error)) Option {
	return func(c *config) { c.openStore = open }
}

// withTicker drives the group's raft clock from ch instead of a
// time.Ticker (tests).
func withTicker(ch <-chan time.Time) Option { return func(c *config) { c.tick = ch } }
