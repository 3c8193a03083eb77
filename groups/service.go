package groups

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/mosaik-go/mosaik/catalog"
)

// Discovery is the view of the catalog that the bond layer needs. The
// node's discovery service (catalog/discovery) implements it.
type Discovery interface {
	Network() catalog.NetworkID
	// Catalog is the current snapshot; its Changed channel drives bonding.
	Catalog() *catalog.Snapshot
	// Store merges entries that arrive on bonds (PeerEntryUpdate,
	// BondFormed), faster than gossip.
	Store() *catalog.Store
	// UpdateLocal adds and removes the local entry's group memberships.
	UpdateLocal(func(*catalog.Entry)) (*catalog.SignedEntry, error)
	// SyncWith runs a catalog sync with a peer that refused a bond for not
	// knowing us (UnknownPeer).
	SyncWith(ctx context.Context, pi peer.AddrInfo) error
}

// BondParams time and size the bond layer. The heartbeat numbers are per
// group (they are part of the group id), not here.
type BondParams struct {
	// HandshakeTimeout bounds each side's wait for the other's handshake
	// frames (mosaik: 2 s).
	HandshakeTimeout time.Duration
	// SendQueue is the number of frames queued per bond; a full queue
	// drops the frame and Send returns false. Raft's priority frames
	// (heartbeats, votes, responses) have a queue of their own, a quarter
	// of this size.
	SendQueue int
	// MaxFrameSize caps every frame read on a bond (type byte and body).
	// It also bounds what one Feed or Execute call may send
	// (Group.MaxBatchBytes), so every member of a group must use the
	// same value: a member with a larger one accepts calls its peers
	// cannot read.
	MaxFrameSize int
	// DialBackoff and MaxDialBackoff bound the wait before bonding again
	// with a peer after a failed attempt or an ended bond; it doubles per
	// failure and resets on success.
	DialBackoff    time.Duration
	MaxDialBackoff time.Duration
	// DialGrace is how long the peer with the higher ID waits, once it
	// may bond with a member of lower ID, before it dials: the stream the
	// lower ID opens wins the tie-break (PROTOCOL.md §19.4), so its dial
	// usually comes first and the two do not both dial, one to be refused
	// (or a formed bond replaced, losing the frames queued on it). The
	// lower ID dials at once. The grace starts again when a backoff ends
	// (the lower ID's runs out at about the same time). 0: both dial at
	// once.
	DialGrace time.Duration
	// UnknownPeerRetries is how many times a dial refused with UnknownPeer
	// syncs catalogs with the responder and tries again at once, before
	// the attempt counts as failed.
	UnknownPeerRetries int
	// CloseTimeout bounds the writing of a final Close or Departure frame
	// and the wait for the peer's end of the stream.
	CloseTimeout time.Duration
}

// DefaultBondParams are the production defaults.
func DefaultBondParams() BondParams {
	return BondParams{
		HandshakeTimeout:   2 * time.Second,
		SendQueue:          1024,
		MaxFrameSize:       4 << 20,
		DialBackoff:        250 * time.Millisecond,
		MaxDialBackoff:     30 * time.Second,
		DialGrace:          200 * time.Millisecond,
		UnknownPeerRetries: 3,
		CloseTimeout:       time.Second,
	}
}

// TestBondParams are for many nodes on one machine: short backoffs, so
// tests that provoke refusals converge in seconds.
func TestBondParams() BondParams {
	p := DefaultBondParams()
	p.DialBackoff = 50 * time.Millisecond
	p.MaxDialBackoff = time.Second
	p.DialGrace = 50 * time.Millisecond
	p.CloseTimeout = 500 * time.Millisecond
	return p
}

// Validate reports every invalid field. It does not modify p.
func (p BondParams) Validate() error {
	var errs []error
	pos := func(name string, d time.Duration) {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("%s must be > 0, got %v", name, d))
		}
	}
	pos("HandshakeTimeout", p.HandshakeTimeout)
	pos("DialBackoff", p.DialBackoff)
	pos("CloseTimeout", p.CloseTimeout)
	if p.MaxDialBackoff < p.DialBackoff {
		errs = append(errs, fmt.Errorf("MaxDialBackoff %v < DialBackoff %v", p.MaxDialBackoff, p.DialBackoff))
	}
	if p.SendQueue < 1 {
		errs = append(errs, fmt.Errorf("SendQueue must be >= 1, got %d", p.SendQueue))
	}
	if p.MaxFrameSize < 64<<10 {
		errs = append(errs, fmt.Errorf("MaxFrameSize must be >= 64 KiB, got %d", p.MaxFrameSize))
	}
	if p.DialGrace < 0 {
		errs = append(errs, fmt.Errorf("DialGrace must be >= 0, got %v", p.DialGrace))
	}
	if p.UnknownPeerRetries < 0 {
		errs = append(errs, fmt.Errorf("UnknownPeerRetries must be >= 0, got %d", p.UnknownPeerRetries))
	}
	if len(errs) > 0 {
		return fmt.Errorf("groups: invalid bond params: %w", errors.Join(errs...))
	}
	return nil
}

// FaultAction is what a FaultHook does with a frame.
type FaultAction uint8

const (
	// FaultDeliver sends the frame as usual.
	FaultDeliver FaultAction = iota
	// FaultDrop discards the frame (Send still reports it queued).
	FaultDrop
	// FaultDelay queues the frame after Fault.Delay.
	FaultDelay
)

// Fault is a FaultHook's verdict on one frame.
type Fault struct {
	Action FaultAction
	Delay  time.Duration
}

// FaultHook decides the fate of every frame a bond is about to send after
// the handshake (heartbeats and core frames alike), for tests that need
// lost, delayed or partitioned links over real bonds. It must be fast and
// must not block; it is called from Send and from bond goroutines.
type FaultHook func(from, to peer.ID, group catalog.ID, kind byte) Fault

// ServiceOption configures NewService.
type ServiceOption func(*serviceConfig) error

type serviceConfig struct {
	log    *slog.Logger
	meter  metric.MeterProvider
	params BondParams
	fault  FaultHook
	join   []Option
}

// WithLogger sets the service's logger (default slog.Default()).
func WithLogger(l *slog.Logger) ServiceOption {
	return func(c *serviceConfig) error {
		if l == nil {
			return errors.New("groups: nil logger")
		}
		c.log = l
		return nil
	}
}

// WithMeterProvider sets the OpenTelemetry meter provider (default: the
// global one, a no-op unless the application installs one).
func WithMeterProvider(mp metric.MeterProvider) ServiceOption {
	return func(c *serviceConfig) error {
		c.meter = mp
		return nil
	}
}

// WithBondParams replaces the bond parameters (default DefaultBondParams).
func WithBondParams(p BondParams) ServiceOption {
	return func(c *serviceConfig) error {
		if err := p.Validate(); err != nil {
			return err
		}
		c.params = p
		return nil
	}
}

// WithFaultHook installs a fault-injection hook on every bond (tests only).
func WithFaultHook(f FaultHook) ServiceOption {
	return func(c *serviceConfig) error {
		c.fault = f
		return nil
	}
}

// WithJoinDefaults sets options that every Join on the service applies
// before its own, so a Join's options override them: for example
// WithJoinDefaults(WithDataDir(dir)) keeps every group on disk unless a
// Join says WithDataDir(""). Repeatable; the options accumulate.
func WithJoinDefaults(opts ...Option) ServiceOption {
	return func(c *serviceConfig) error {
		c.join = append(c.join, opts...)
		return nil
	}
}

// NewService starts the groups service of host h for d's network: it
// serves the bond and snapshot transfer protocols of that network on h. Groups are joined on it
// (see Join). Close it before d and h.
func NewService(h host.Host, d Discovery, opts ...ServiceOption) (*Service, error) {
	cfg := serviceConfig{log: slog.Default(), params: DefaultBondParams()}
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	if cfg.meter == nil {
		cfg.meter = otel.GetMeterProvider()
	}
	nw := d.Network()
	log := cfg.log.With("component", "groups", "network", nw.Short())
	n, err := newBondNet(h, d, cfg.params, log, cfg.meter, cfg.fault)
	if err != nil {
		return nil, err
	}
	s := &Service{network: nw, self: h.ID(), log: log, meter: cfg.meter, net: n, joinDefaults: cfg.join}
	// Snapshot transfer (PROTOCOL.md §20) serves the groups' snapshot
	// caches to bonded members; the bond layer removes it at close.
	n.serveSnapshots(s.serveSnapshotReply)
	return s, nil
}

// MeterProvider returns the service's OpenTelemetry meter provider (a
// no-op one when none is set), so that layers built on groups, such as
// collections, record their metrics beside the groups'.
func (s *Service) MeterProvider() metric.MeterProvider {
	if s.meter == nil {
		return noop.NewMeterProvider()
	}
	return s.meter
}

// BondStatus is what the bond layer exposes for status pages: every bond
// of every attached group, and refusal and end counts by code.
type BondStatus struct {
	Groups []GroupBonds
	// Refusals counts handshakes that failed, on either side, by code.
	Refusals map[Code]uint64
	// Ends counts bonds that ended after the handshake, by code.
	Ends map[Code]uint64
}

// GroupBonds lists the bonds of one group.
type GroupBonds struct {
	Group catalog.ID
	Role  Role
	Bonds []BondInfo
}

// BondInfo describes one bond.
type BondInfo struct {
	Peer      peer.ID
	Role      Role // the peer's role
	Initiator bool // this node opened the bond's stream
	Since     time.Time
	// Counters since the bond formed.
	FramesSent, FramesReceived uint64
	BytesSent, BytesReceived   uint64
	Dropped                    uint64 // frames dropped on a full queue
	Queued                     int    // frames waiting now (both queues)
}

// BondStatus returns a snapshot of the bond layer (empty for a service
// whose bond layer is not libp2p, as in the core's tests).
func (s *Service) BondStatus() BondStatus {
	if n, ok := s.net.(*bondNet); ok {
		return n.status()
	}
	return BondStatus{}
}
