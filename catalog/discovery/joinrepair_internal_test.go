package discovery

import (
	"fmt"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// TestJoinGaps_Rules: the bookkeeping of joinrepair.go without a network.
// A sync served before the initiator's subscription is repaired when the
// subscription comes (once), or at once when it came while we served,
// provided the catalog changed after the snapshot served; a gap older
// than the TTL is not; the table is bounded; a connect sync's
// wait ends with the subscription.
func TestJoinGaps_Rules(t *testing.T) {
	const a, b, c peer.ID = "a", "b", "c"
	t0 := time.Unix(1000, 0)
	ttl := 10 * time.Second
	g := newJoinGaps()
	changed := make(chan struct{}) // the catalog changed after the snapshot served
	close(changed)
	unchanged := make(chan struct{})

	if g.subscribed(a) {
		t.Fatal("a reported subscribed before any event")
	}
	if g.served(a, t0, changed, ttl) {
		t.Fatal("served a (not subscribed) asked for a repair at once")
	}
	if !g.joined(a, t0.Add(time.Second), ttl) {
		t.Fatal("a's subscription after a gap did not ask for a repair")
	}
	if g.joined(a, t0.Add(2*time.Second), ttl) {
		t.Fatal("a second subscription event repaired again")
	}
	if !g.subscribed(a) {
		t.Fatal("a not subscribed after its event")
	}
	// Subscribed while we served: repair at once.
	if !g.served(a, t0, changed, ttl) {
		t.Fatal("served a, whose subscription came meanwhile: no repair")
	}
	g.left(a)
	if g.subscribed(a) {
		t.Fatal("a still subscribed after leaving")
	}

	// Nothing to repair when the catalog did not change after the
	// snapshot served.
	g.served(b, t0, unchanged, ttl)
	if g.joined(b, t0.Add(time.Second), ttl) {
		t.Fatal("repair of a gap in which the catalog did not change")
	}
	g.left(b)
	if g.left(a); g.served(a, t0, unchanged, ttl) || g.joined(a, t0, ttl) {
		t.Fatal("repair after an unchanged catalog")
	}
	g.left(a)

	// A gap past the TTL is dropped.
	g.served(b, t0, changed, ttl)
	if g.joined(b, t0.Add(ttl+time.Second), ttl) {
		t.Fatal("a gap older than the TTL was repaired")
	}

	// Bounded: at maxJoinGaps fresh gaps, a new one is not recorded;
	// expired ones make room.
	for i := range maxJoinGaps {
		g.served(peer.ID(fmt.Sprint("p", i)), t0, changed, ttl)
	}
	g.served(c, t0, changed, ttl)
	if g.joined(c, t0, ttl) {
		t.Fatal("a gap was recorded beyond maxJoinGaps")
	}
	g.left(c)
	g.served(c, t0.Add(ttl+time.Second), changed, ttl)
	if !g.joined(c, t0.Add(ttl+time.Second), ttl) {
		t.Fatal("expired gaps did not make room for a new one")
	}
	if len(g.gaps) > maxJoinGaps {
		t.Fatalf("%d gaps held, bound %d", len(g.gaps), maxJoinGaps)
	}

	// Connect syncs wait for the subscription.
	g2 := newJoinGaps()
	w := g2.wait(a)
	if w == nil {
		t.Fatal("no wait for an unsubscribed peer")
	}
	if g2.wait(a) != w {
		t.Fatal("a second wait for a did not share the first")
	}
	g2.joined(a, t0, ttl)
	select {
	case <-w:
	default:
		t.Fatal("a's subscription did not end the wait")
	}
	if g2.wait(a) != nil {
		t.Fatal("a wait for a subscribed peer")
	}
	_ = g2.wait(b)
	g2.unwait(b)
	if len(g2.await) != 0 {
		t.Fatal("unwait left the wait")
	}
	for i := range maxJoinGaps {
		g2.wait(peer.ID(fmt.Sprint("w", i)))
	}
	if g2.wait(c) != nil {
		t.Fatal("a wait beyond maxJoinGaps")
	}
}

// TestSource_IsSync: every kind of sync the debug log tells apart acts as
// a sync (pulled bumps go on, see Service.merged), and no other source
// does.
func TestSource_IsSync(t *testing.T) {
	for src, want := range map[source]bool{
		fromSync: true, fromJoinSync: true, fromSettleSync: true, fromJoinRepair: true, fromServed: true,
		fromGossip: false, fromDHT: false, fromCaller: false, fromPush: false,
	} {
		if got := src.isSync(); got != want {
			t.Errorf("%q.isSync() = %v, want %v", src, got, want)
		}
	}
}

// TestSource_CascadesAt: before the join settles, new peers from a join
// sync and from a sync this node served wait for settle's dials; peers
// from any other source are dialed at once; after it, all are.
func TestSource_CascadesAt(t *testing.T) {
	for _, src := range []source{fromSync, fromJoinSync, fromSettleSync, fromJoinRepair, fromServed, fromGossip, fromDHT, fromCaller, fromPush} {
		if !src.cascadesAt(true) {
			t.Errorf("%q: not dialed after the join settled", src)
		}
		want := src != fromJoinSync && src != fromServed
		if got := src.cascadesAt(false); got != want {
			t.Errorf("%q.cascadesAt(unsettled) = %v, want %v", src, got, want)
		}
	}
}
