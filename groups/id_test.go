package groups

import (
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/policy"
)

type fpValidator struct{ fp [32]byte }

func (fpValidator) Class() catalog.TicketClass { return catalog.IDFromString("test-class") }
func (fpValidator) Validate([]byte, peer.ID, time.Time) (time.Time, error) {
	return time.Time{}, nil
}
func (v fpValidator) Fingerprint() [32]byte { return v.fp }

type plainValidator struct{ fpValidator }

func (plainValidator) Fingerprint() {}

// Port of mosaik's builder test group_id_derived_from_config: equal inputs
// give equal ids, and every input changes the id.
func TestDeriveID_FromConfig(t *testing.T) {
	key := KeyFromSecret("group1secret")
	p := DefaultParams()
	sig := (&counter{}).Signature()
	v1, v2 := fpValidator{[32]byte{1}}, fpValidator{[32]byte{2}}
	base, err := DeriveID(key, p, sig, []policy.TicketValidator{v1, v2})
	if err != nil {
		t.Fatal(err)
	}
	same, _ := DeriveID(KeyFromSecret("group1secret"), DefaultParams(), sig, []policy.TicketValidator{v1, v2})
	if same != base {
		t.Fatal("equal inputs gave different ids")
	}
	// Timings outside the id do not change it.
	p2 := p
	p2.ElectionTimeout, p2.BootstrapDelay, p2.ForwardTimeout = time.Minute, time.Minute, time.Minute
	if id, _ := DeriveID(key, p2, sig, []policy.TicketValidator{v1, v2}); id != base {
		t.Fatal("a timing outside the id changed it")
	}
	variants := map[string]func() (catalog.ID, error){
		"key": func() (catalog.ID, error) {
			return DeriveID(KeyFromSecret("other"), p, sig, []policy.TicketValidator{v1, v2})
		},
		"heartbeat": func() (catalog.ID, error) {
			q := p
			q.Heartbeat += time.Millisecond
			return DeriveID(key, q, sig, []policy.TicketValidator{v1, v2})
		},
		"jitter": func() (catalog.ID, error) {
			q := p
			q.HeartbeatJitter += time.Millisecond
			return DeriveID(key, q, sig, []policy.TicketValidator{v1, v2})
		},
		"missed": func() (catalog.ID, error) {
			q := p
			q.MissedHeartbeats++
			return DeriveID(key, q, sig, []policy.TicketValidator{v1, v2})
		},
		"signature (NoOp)": func() (catalog.ID, error) {
			return DeriveID(key, p, NoOp{}.Signature(), []policy.TicketValidator{v1, v2})
		},
		"ticket order": func() (catalog.ID, error) {
			return DeriveID(key, p, sig, []policy.TicketValidator{v2, v1})
		},
		"ticket dropped": func() (catalog.ID, error) {
			return DeriveID(key, p, sig, []policy.TicketValidator{v1})
		},
		"no tickets": func() (catalog.ID, error) {
			return DeriveID(key, p, sig, nil)
		},
	}
	seen := map[catalog.ID]string{base: "base"}
	for name, f := range variants {
		id, err := f()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if prev, dup := seen[id]; dup {
			t.Fatalf("%s gives the same id as %s", name, prev)
		}
		seen[id] = name
	}
	if _, err := DeriveID(key, p, sig, []policy.TicketValidator{plainValidator{}}); err == nil {
		t.Fatal("a validator without a fingerprint was accepted")
	}
}

func TestKey_NeverPrintedWhole(t *testing.T) {
	k := KeyFromSecret("s")
	for _, s := range append([]string{k.String()}, strings.Fields(fmtAll(k))...) {
		if s != "3d****bf" && s != "groups.Key(3d****bf)" {
			t.Fatalf("key printed too long: %q", s)
		}
	}
}
