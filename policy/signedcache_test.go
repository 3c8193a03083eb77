package policy

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/mosaik-go/mosaik/catalog"
)

func cacheMisses(v *SignedTicketValidator) uint64 {
	v.cache.mu.Lock()
	defer v.cache.mu.Unlock()
	return v.cache.misses
}

// TestSignedTicketValidator_IssuerBeforeSignature: a ticket from an
// untrusted issuer is refused for its issuer even when its signature is
// broken, which shows the signature was never verified; a trusted issuer's
// broken signature is refused as such.
func TestSignedTicketValidator_IssuerBeforeSignature(t *testing.T) {
	issuer, mallory, holder := newTestPeer(t), newTestPeer(t), newTestPeer(t)
	v := NewSignedTicketValidator(testNetwork, issuer.id)
	st := SignedTicket{Subject: holder.id, Network: testNetwork, Expires: t0.Add(time.Hour)}
	breakSig := func(b []byte) []byte { // the signature is the envelope's last field
		b = append([]byte(nil), b...)
		b[len(b)-1] ^= 1
		return b
	}
	_, err := v.Validate(breakSig(issue(t, mallory, st).Data), holder.id, t0)
	checkRejected(t, err, ErrUntrustedIssuer)
	_, err = v.Validate(breakSig(issue(t, issuer, st).Data), holder.id, t0)
	checkRejected(t, err, ErrTicketSignature)
}

// TestSignedTicketValidator_CacheKeepsTimeChecks: a cached "valid" verdict
// still expires, and a cached ticket not yet valid becomes valid.
func TestSignedTicketValidator_CacheKeepsTimeChecks(t *testing.T) {
	issuer, holder := newTestPeer(t), newTestPeer(t)
	v := NewSignedTicketValidator(testNetwork, issuer.id)
	exp := t0.Add(time.Hour)
	tk := issue(t, issuer, SignedTicket{Subject: holder.id, Network: testNetwork, NotBefore: t0, Expires: exp})
	if got, err := v.Validate(tk.Data, holder.id, t0); err != nil || !got.Equal(exp) {
		t.Fatalf("first: %v, %v", got, err)
	}
	if got, err := v.Validate(tk.Data, holder.id, exp.Add(-time.Millisecond)); err != nil || !got.Equal(exp) {
		t.Fatalf("just before expiry: %v, %v", got, err)
	}
	_, err := v.Validate(tk.Data, holder.id, exp)
	checkRejected(t, err, ErrTicketExpired)
	_, err = v.Validate(tk.Data, holder.id, t0.Add(-time.Millisecond))
	checkRejected(t, err, ErrTicketNotYet)
	if m := cacheMisses(v); m != 1 {
		t.Fatalf("%d verdicts computed for one ticket, want 1 (the cache was not used)", m)
	}
}

// TestSignedTicketValidator_CacheFollowsEntry: when a peer's entry changes
// its ticket, the new ticket is judged afresh, and a verdict for one holder
// never answers for another.
func TestSignedTicketValidator_CacheFollowsEntry(t *testing.T) {
	issuer, holder, other := newTestPeer(t), newTestPeer(t), newTestPeer(t)
	v := NewSignedTicketValidator(testNetwork, issuer.id)
	good := issue(t, issuer, SignedTicket{Subject: holder.id, Network: testNetwork, Expires: t0.Add(time.Hour)})
	entry := &catalog.Entry{PeerID: holder.id, Version: catalog.NewVersion(t0), Tickets: []catalog.Ticket{good}}
	if _, err := ValidateTicket(entry, v, t0); err != nil {
		t.Fatalf("version 1: %v", err)
	}
	// Version 2 replaces the ticket with one for another network.
	wrong := issue(t, issuer, SignedTicket{Subject: holder.id, Network: catalog.IDFromString("elsewhere"), Expires: t0.Add(time.Hour)})
	next := *entry
	next.Version = entry.Version.Next(t0.Add(time.Second))
	next.Tickets = []catalog.Ticket{wrong}
	if _, err := ValidateTicket(&next, v, t0); !errors.Is(err, ErrWrongNetwork) {
		t.Fatalf("version 2 with another network's ticket: %v", err)
	}
	// Version 3 drops the ticket altogether.
	next.Tickets = nil
	if _, err := ValidateTicket(&next, v, t0); !errors.Is(err, ErrNoValidTicket) {
		t.Fatalf("version 3 without a ticket: %v", err)
	}
	// The same bytes copied into another peer's entry fail the subject.
	_, err := v.Validate(good.Data, other.id, t0)
	checkRejected(t, err, ErrWrongSubject)
}

// TestSignedTicketValidator_CacheNotShared: a validator derived with a
// stricter configuration does not inherit its parent's verdicts.
func TestSignedTicketValidator_CacheNotShared(t *testing.T) {
	issuer, holder := newTestPeer(t), newTestPeer(t)
	tk := issue(t, issuer, SignedTicket{Subject: holder.id, Network: testNetwork, Expires: t0.Add(time.Hour)})
	base := NewSignedTicketValidator(testNetwork, issuer.id)
	if _, err := base.Validate(tk.Data, holder.id, t0); err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]*SignedTicketValidator{
		"claim":    base.RequireClaim("role", "admin"),
		"class":    base.WithClass(catalog.IDFromString("other")),
		"size":     base.WithCacheSize(8).RequireClaim("role", "admin"),
		"uncached": base.WithCacheSize(0).RequireClaim("role", "admin"),
	} {
		if _, err := v.Validate(tk.Data, holder.id, t0); err == nil {
			t.Errorf("%s: the derived validator accepted with its parent's verdict", name)
		}
	}
}

// TestSignedTicketValidator_CacheBounded: the cache never holds more than
// its size and drops the least recently used verdict first.
func TestSignedTicketValidator_CacheBounded(t *testing.T) {
	issuer := newTestPeer(t)
	v := NewSignedTicketValidator(testNetwork, issuer.id).WithCacheSize(4)
	type held struct {
		data   []byte
		holder testPeer
	}
	var ts []held
	for range 10 {
		h := newTestPeer(t)
		ts = append(ts, held{issue(t, issuer, SignedTicket{Subject: h.id, Network: testNetwork, Expires: t0.Add(time.Hour)}).Data, h})
	}
	for _, x := range ts {
		if _, err := v.Validate(x.data, x.holder.id, t0); err != nil {
			t.Fatal(err)
		}
		if n := v.cache.len(); n > 4 {
			t.Fatalf("cache holds %d verdicts, the size is 4", n)
		}
	}
	before := cacheMisses(v)
	if _, err := v.Validate(ts[9].data, ts[9].holder.id, t0); err != nil || cacheMisses(v) != before {
		t.Fatalf("the newest verdict was not kept (err %v)", err)
	}
	if _, err := v.Validate(ts[0].data, ts[0].holder.id, t0); err != nil || cacheMisses(v) != before+1 {
		t.Fatalf("the oldest verdict was not dropped (err %v)", err)
	}
}

// TestSignedTicketValidator_Concurrent runs validations from several
// goroutines, for the race detector.
func TestSignedTicketValidator_Concurrent(t *testing.T) {
	issuer := newTestPeer(t)
	v := NewSignedTicketValidator(testNetwork, issuer.id).WithCacheSize(3)
	holders := []testPeer{newTestPeer(t), newTestPeer(t), newTestPeer(t), newTestPeer(t)}
	var data [][]byte
	for _, h := range holders {
		data = append(data, issue(t, issuer, SignedTicket{Subject: h.id, Network: testNetwork, Expires: t0.Add(time.Hour)}).Data)
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 50 {
				k := (g + i) % len(holders)
				if _, err := v.Validate(data[k], holders[k].id, t0); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}
