package catalog

import (
	"errors"
	"fmt"
	"time"
)

// Params tunes the catalog store. Start from [DefaultParams] or
// [TestParams]; the zero value is not valid.
type Params struct {
	// PurgeAfter is how long an entry stays without an update before it is
	// stale: stale entries are refused on merge and removed by Purge. Peers
	// refresh their entry every announce interval, so PurgeAfter must be
	// several announce intervals. Default 300 s (as in mosaik).
	PurgeAfter time.Duration
	// MaxClockDrift bounds how far in the future an entry's update time, and
	// how far from now a departure's timestamp, may be. Default 50 s.
	MaxClockDrift time.Duration
	// MaxEntrySize caps a sealed entry in bytes. Default 64 KiB.
	MaxEntrySize int
	// MaxPeers caps the remote peers the catalog holds; entries of new peers
	// beyond it are refused (ignored, not rejected), so no input can grow
	// the catalog without bound. Default 10 000.
	MaxPeers int
	// EventBuffer is the per-subscription event buffer. When a subscriber
	// falls further behind, the oldest events are dropped and the
	// subscriber is told how many (see [LagError]). Default 256.
	EventBuffer int
}

// DefaultParams returns the production defaults.
func DefaultParams() Params {
	return Params{
		PurgeAfter:    300 * time.Second,
		MaxClockDrift: 50 * time.Second,
		MaxEntrySize:  DefaultMaxEntrySize,
		MaxPeers:      10_000,
		EventBuffer:   256,
	}
}

// TestParams returns a fast profile for tests: entries go stale after 3 s.
func TestParams() Params {
	p := DefaultParams()
	p.PurgeAfter = 3 * time.Second
	p.MaxClockDrift = 5 * time.Second
	return p
}

// Validate reports every invalid field. It does not modify p.
func (p Params) Validate() error {
	var errs []error
	if p.PurgeAfter <= 0 {
		errs = append(errs, fmt.Errorf("PurgeAfter must be > 0, got %v", p.PurgeAfter))
	}
	if p.MaxClockDrift <= 0 {
		errs = append(errs, fmt.Errorf("MaxClockDrift must be > 0, got %v", p.MaxClockDrift))
	}
	if p.MaxEntrySize < 512 || p.MaxEntrySize > 4<<20 {
		errs = append(errs, fmt.Errorf("MaxEntrySize must be within [512, 4 MiB], got %d", p.MaxEntrySize))
	}
	if p.MaxPeers < 1 {
		errs = append(errs, fmt.Errorf("MaxPeers must be >= 1, got %d", p.MaxPeers))
	}
	if p.EventBuffer < 1 {
		errs = append(errs, fmt.Errorf("EventBuffer must be >= 1, got %d", p.EventBuffer))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("catalog: invalid params: %w", err)
	}
	return nil
}
