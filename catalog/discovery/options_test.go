package discovery_test

import (
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/mosaik-go/mosaik/catalog/discovery"
)

func TestParams_ProfilesValidate(t *testing.T) {
	for name, p := range map[string]discovery.Params{"DefaultParams": discovery.DefaultParams(), "TestParams": discovery.TestParams()} {
		if err := p.Validate(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	// Profiles are fresh values: changing one never changes the next.
	p := discovery.DefaultParams()
	p.SyncBurst = 99
	p.Catalog.PurgeAfter = time.Hour
	if !reflect.DeepEqual(discovery.DefaultParams(), discovery.DefaultParams()) || discovery.DefaultParams().SyncBurst == 99 ||
		discovery.DefaultParams().Catalog.PurgeAfter == time.Hour {
		t.Error("DefaultParams returns shared mutable state")
	}
}

func TestParams_ValidateRejectsBadValues(t *testing.T) {
	cases := []struct {
		name string
		edit func(*discovery.Params)
	}{
		{"zero value", func(p *discovery.Params) { *p = discovery.Params{} }},
		{"invalid catalog params", func(p *discovery.Params) { p.Catalog.PurgeAfter = 0 }},
		{"catalog max entry size too small", func(p *discovery.Params) { p.Catalog.MaxEntrySize = 10 }},
		{"zero AnnounceInterval", func(p *discovery.Params) { p.AnnounceInterval = 0 }},
		{"negative AnnounceInterval", func(p *discovery.Params) { p.AnnounceInterval = -time.Second }},
		{"AnnounceInterval not below PurgeAfter", func(p *discovery.Params) { p.AnnounceInterval = p.Catalog.PurgeAfter }},
		{"negative AnnounceJitter", func(p *discovery.Params) { p.AnnounceJitter = -0.1 }},
		{"AnnounceJitter of 1", func(p *discovery.Params) { p.AnnounceJitter = 1 }},
		{"zero JoinAnnounceDelay", func(p *discovery.Params) { p.JoinAnnounceDelay = 0 }},
		{"negative DepartureGrace", func(p *discovery.Params) { p.DepartureGrace = -time.Millisecond }},
		{"zero SyncTimeout", func(p *discovery.Params) { p.SyncTimeout = 0 }},
		{"zero SyncMinInterval", func(p *discovery.Params) { p.SyncMinInterval = 0 }},
		{"zero SyncBurst", func(p *discovery.Params) { p.SyncBurst = 0 }},
		{"zero MaxConcurrentSyncs", func(p *discovery.Params) { p.MaxConcurrentSyncs = 0 }},
		{"negative CascadeBelow", func(p *discovery.Params) { p.CascadeBelow = -1 }},
		{"negative AntiEntropyInterval", func(p *discovery.Params) { p.AntiEntropyInterval = -time.Second }},
		{"MaxSyncMessage below MaxEntrySize", func(p *discovery.Params) { p.MaxSyncMessage = p.Catalog.MaxEntrySize - 1 }},
		{"zero RTTProbeInterval", func(p *discovery.Params) { p.RTTProbeInterval = 0 }},
		{"zero PingTimeout", func(p *discovery.Params) { p.PingTimeout = 0 }},
		{"zero DHTRepublishInterval", func(p *discovery.Params) { p.DHTRepublishInterval = 0 }},
		{"zero DHTTimeout", func(p *discovery.Params) { p.DHTTimeout = 0 }},
	}
	for _, tc := range cases {
		for profile, base := range map[string]func() discovery.Params{"default": discovery.DefaultParams, "test": discovery.TestParams} {
			t.Run(tc.name+"/"+profile, func(t *testing.T) {
				p := base()
				tc.edit(&p)
				before := p
				if err := p.Validate(); err == nil {
					t.Fatalf("Validate accepted %+v", p)
				}
				if !reflect.DeepEqual(p, before) {
					t.Error("Validate modified the params")
				}
				// New refuses them too, through WithParams.
				if _, err := discovery.New(nil, nil, dhtNet, discovery.WithParams(p)); err == nil {
					t.Error("New accepted invalid params")
				}
			})
		}
	}
}

func TestParams_ValidateAcceptsEdgeValues(t *testing.T) {
	cases := []struct {
		name string
		edit func(*discovery.Params)
	}{
		{"zero DepartureGrace", func(p *discovery.Params) { p.DepartureGrace = 0 }},
		{"zero AnnounceJitter", func(p *discovery.Params) { p.AnnounceJitter = 0 }},
		{"zero CascadeBelow", func(p *discovery.Params) { p.CascadeBelow = 0 }},
		{"zero AntiEntropyInterval", func(p *discovery.Params) { p.AntiEntropyInterval = 0 }},
		{"gossip and sync disabled", func(p *discovery.Params) { p.DisableGossip, p.DisableSync = true, true }},
		{"MaxSyncMessage equal to MaxEntrySize", func(p *discovery.Params) { p.MaxSyncMessage = p.Catalog.MaxEntrySize }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := discovery.TestParams()
			tc.edit(&p)
			if err := p.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
		})
	}
}

// Regression (fixed): Params.Validate (options.go:141) computes the longest heartbeat
// interval as AnnounceInterval*(1+time.Duration(AnnounceJitter)). The conversion
// truncates the fraction (time.Duration(0.5) == 0), so the check is only
// AnnounceInterval >= PurgeAfter and the jitter is ignored. Params whose
// jittered heartbeats are up to 4.35 s apart pass with PurgeAfter 3 s, and
// live peers are then purged between two heartbeats. Fix: compare in
// floating point, e.g.
// time.Duration(float64(p.AnnounceInterval)*(1+p.AnnounceJitter)) >= p.Catalog.PurgeAfter.
func TestParams_ValidateRejectsJitteredHeartbeatBeyondPurge(t *testing.T) {
	p := discovery.TestParams() // PurgeAfter 3 s
	p.AnnounceInterval = 2900 * time.Millisecond
	p.AnnounceJitter = 0.5 // heartbeats up to 4.35 s apart
	if err := p.Validate(); err == nil {
		t.Errorf("Validate accepted heartbeats up to %v apart with PurgeAfter %v",
			time.Duration(float64(p.AnnounceInterval)*(1+p.AnnounceJitter)), p.Catalog.PurgeAfter)
	}
}

// Regression (fixed): Params.Validate (options.go:138) checks AnnounceJitter with
// `p.AnnounceJitter < 0 || p.AnnounceJitter >= 1`, which is false for NaN,
// so NaN passes. jitter() (service.go:556) then converts NaN to a
// time.Duration, which is implementation-defined (on amd64 the minimum
// int64: a negative timer that fires at once, so the announce loop spins
// and floods gossip). Fix: test `!(p.AnnounceJitter >= 0 && p.AnnounceJitter < 1)`.
func TestParams_ValidateRejectsNaNJitter(t *testing.T) {
	p := discovery.TestParams()
	p.AnnounceJitter = math.NaN()
	if err := p.Validate(); err == nil {
		t.Error("Validate accepted AnnounceJitter NaN")
	}
}
