package discovery_test

import (
	"context"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/catalog/discovery"
	"github.com/mosaik-go/mosaik/catalog/pb"
	"github.com/mosaik-go/mosaik/internal/testutil"
)

// gossipAttacker is a raw libp2p host with its own gossipsub router joined
// to the catalog topic. It runs no discovery service and publishes whatever
// bytes a test gives it.
type gossipAttacker struct {
	h     host.Host
	topic *pubsub.Topic
}

func newGossipAttacker(t *testing.T, nw catalog.NetworkID) *gossipAttacker {
	t.Helper()
	h := newHost(t)
	ps := newPubSub(t, h)
	topic, err := ps.Join(discovery.TopicName(nw))
	if err != nil {
		t.Fatalf("attacker join: %v", err)
	}
	t.Cleanup(func() { _ = topic.Close() })
	return &gossipAttacker{h: h, topic: topic}
}

func (a *gossipAttacker) publish(t *testing.T, data []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Scale(5*time.Second))
	defer cancel()
	if err := a.topic.Publish(ctx, data); err != nil {
		t.Fatalf("attacker publish: %v", err)
	}
}

// scoreRecorder keeps the latest peer scores a gossipsub router reports.
type scoreRecorder struct {
	mu     sync.Mutex
	scores map[peer.ID]float64
}

func (r *scoreRecorder) inspect(m map[peer.ID]float64) {
	r.mu.Lock()
	r.scores = maps.Clone(m)
	r.mu.Unlock()
}

func (r *scoreRecorder) score(p peer.ID) (float64, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.scores[p]
	return s, ok
}

// scoreOptions enable gossipsub peer scoring that only penalises invalid
// messages on the catalog topic (P4). Every other weight is zero (IP
// colocation in particular: all test peers share 127.0.0.1), and the
// thresholds are so low that the attacker is never graylisted, so every
// attack still reaches the validator.
func scoreOptions(nw catalog.NetworkID, rec *scoreRecorder) []pubsub.Option {
	params := &pubsub.PeerScoreParams{
		AppSpecificScore: func(peer.ID) float64 { return 0 },
		DecayInterval:    time.Second,
		DecayToZero:      0.01,
		RetainScore:      time.Minute,
		Topics: map[string]*pubsub.TopicScoreParams{
			discovery.TopicName(nw): {
				TopicWeight:                    1,
				TimeInMeshQuantum:              time.Second,
				InvalidMessageDeliveriesWeight: -1,
				InvalidMessageDeliveriesDecay:  0.99,
			},
		},
	}
	thresholds := &pubsub.PeerScoreThresholds{
		GossipThreshold:   -1e9,
		PublishThreshold:  -2e9,
		GraylistThreshold: -3e9,
	}
	return []pubsub.Option{
		pubsub.WithPeerScore(params, thresholds),
		pubsub.WithPeerScoreInspect(pubsub.PeerScoreInspectFn(rec.inspect), 50*time.Millisecond),
	}
}

// reasonDelta is the change of each RejectedBy counter between two stats.
func reasonDelta(before, after discovery.Stats) map[string]uint64 {
	d := map[string]uint64{}
	for k, v := range after.RejectedBy {
		if v > before.RejectedBy[k] {
			d[k] = v - before.RejectedBy[k]
		}
	}
	return d
}

// gossipLine starts the line attacker X — A — B of network nw: A and B
// are discovery nodes that gossip but do not sync (so their catalogs and
// counters move only through gossip), X is a raw gossip attacker connected
// only to A. aOpts apply to A. It returns once A and B know each other and
// X sees A on the topic.
func gossipLine(t *testing.T, nw catalog.NetworkID, aOpts ...nodeOpt) (a, b *testNode, x *gossipAttacker) {
	t.Helper()
	params := withParams(func(p *discovery.Params) {
		p.DisableSync = true
		// Room for a slow machine: replayed entries must still be fresh
		// when they arrive, so that they are refused as not newer, not as
		// stale.
		p.Catalog.PurgeAfter = 15 * time.Second
		p.Catalog.MaxClockDrift = 10 * time.Second
	})
	a = newNode(t, nw, append([]nodeOpt{params}, aOpts...)...)
	b = newNode(t, nw, params)
	connect(t, b.h, a.h)
	testutil.Eventually(t, 10*time.Second, func() bool { return knows(a.svc, b.h.ID()) && knows(b.svc, a.h.ID()) },
		"A and B did not learn each other over gossip")

	x = newGossipAttacker(t, nw)
	connect(t, x.h, a.h)
	testutil.Eventually(t, 5*time.Second, func() bool { return slices.Contains(x.topic.ListPeers(), a.h.ID()) },
		"attacker does not see A on the catalog topic")
	if b.h.Network().Connectedness(x.h.ID()) == network.Connected {
		t.Fatal("B must not be connected to the attacker")
	}
	return a, b, x
}

// barrier makes A publish a change and waits until B holds it. Gossip from
// A to B is one ordered stream, so once B holds the change, anything A
// forwarded before it has reached B.
func barrier(t *testing.T, a, b *testNode) {
	t.Helper()
	tag := catalog.HashID([]byte(time.Now().String()))
	if _, err := a.svc.UpdateLocal(func(e *catalog.Entry) { e.Tags = append(e.Tags, tag) }); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, func() bool {
		e, ok := b.svc.Catalog().Get(a.h.ID())
		return ok && e.Entry.HasTag(tag)
	}, "B did not get A's change")
}

// TestGossip_HostileAnnouncements runs a line attacker — A — B, where the
// attacker X has its own gossipsub and publishes invalid announcements on
// the catalog topic. A must reject or ignore each one for the right reason,
// keep its catalog intact, never forward them to B, and penalise X's
// gossipsub score.
func TestGossip_HostileAnnouncements(t *testing.T) {
	nw := catalog.IDFromString("discovery-test/hostile-gossip")
	scores := &scoreRecorder{}
	a, b, x := gossipLine(t, nw, withPubSubOpts(scoreOptions(nw, scores)...))

	// B changes its tags; the entry A held before is what X replays later.
	updated := catalog.IDFromString("updated")
	bOld := b.svc.Local()
	bNew, err := b.svc.UpdateLocal(func(e *catalog.Entry) { e.Tags = append(e.Tags, updated) })
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, func() bool {
		e, ok := a.svc.Catalog().Get(b.h.ID())
		return ok && e.Entry.Version.Compare(bNew.Entry.Version) >= 0
	}, "A did not get B's update")

	xKey := hostKey(t, x.h)
	forged := catalog.IDFromString("forged")
	other := catalog.IDFromString("discovery-test/some-other-network")
	// Each message is built just before it is sent, so that its times are
	// fresh however slow the machine.
	now := func() catalog.Version { return catalog.NewVersion(time.Now()) }
	attacks := []struct {
		name   string
		data   func() []byte
		reason string
	}{
		{"entry of B sealed by the attacker", func() []byte {
			return entryAnnouncement(t, seal(t, xKey, catalog.EntryDomain, catalog.EntryPayloadType, entryPB(b.h.ID(), nw, now(), forged)))
		}, "rejected/signer_mismatch"},
		// B's entry with a forged tag and a newer version, under B's
		// original signature: newer, so no cheap check can dismiss it
		// before the signature is verified.
		{"tampered envelope of B", func() []byte {
			return entryAnnouncement(t, tamper(t, b.svc.Local().Bytes(), func(e *pb.Entry) {
				e.Tags = append(e.Tags, forged[:])
				e.Version.UpdateMs += 3000
			}))
		}, "rejected/bad_signature"},
		{"entry of another network", func() []byte {
			return entryAnnouncement(t, sealEntry(t, xKey, other, now()).Bytes())
		}, "rejected/other_network"},
		{"oversize announcement", func() []byte {
			return entryAnnouncement(t, make([]byte, a.svc.Store().Params().MaxEntrySize+1024))
		}, "rejected/oversize"},
		{"garbage bytes", func() []byte { return []byte{0xff, 0xff, 0xff} }, "rejected/malformed"},
		{"empty announcement", func() []byte { return nil }, "rejected/malformed"},
		{"entry that is not an envelope", func() []byte {
			return entryAnnouncement(t, []byte("not an envelope"))
		}, "rejected/malformed"},
		{"entry under the departure payload type", func() []byte {
			return entryAnnouncement(t, seal(t, xKey, catalog.EntryDomain, catalog.DeparturePayloadType, entryPB(x.h.ID(), nw, now())))
		}, "rejected/payload_type"},
		{"departure of B signed by the attacker", func() []byte {
			v := b.svc.Local().Entry.Version
			return departureAnnouncement(t, seal(t, xKey, catalog.DepartureDomain, catalog.DeparturePayloadType, &pb.Departure{
				PeerId: []byte(b.h.ID()), Network: nw[:],
				LastVersion: &pb.Version{StartMs: v.StartMS, UpdateMs: v.UpdateMS + 1000},
				TimestampMs: time.Now().UnixMilli(),
			}))
		}, "rejected/signer_mismatch"},
		// An exact replay of bytes A has already seen is dropped by pubsub's
		// seen-cache (message IDs are content hashes) before any validator
		// runs. A replayer defeats that by re-encoding the same signed
		// entry: here an unknown protobuf field appended to the
		// announcement.
		{"replay of B's older entry", func() []byte {
			replay := entryAnnouncement(t, bOld.Bytes())
			replay = protowire.AppendTag(replay, 15, protowire.VarintType)
			return protowire.AppendVarint(replay, 1)
		}, "ignored/not_newer"},
		// A departure of B's earlier version, as a replay of one would be
		// (signed with B's own key: the test owns B's host).
		{"departure of B for an older version, signed by B", func() []byte {
			dep, err := catalog.SealDeparture(catalog.Departure{
				PeerID: b.h.ID(), Network: nw, LastVersion: bOld.Entry.Version, Timestamp: time.Now(),
			}, hostKey(t, b.h))
			if err != nil {
				t.Fatal(err)
			}
			return departureAnnouncement(t, dep)
		}, "ignored/not_newer"},
		{"attacker's own entry from the future", func() []byte {
			return entryAnnouncement(t, sealEntry(t, xKey, nw, catalog.NewVersion(time.Now().Add(time.Hour))).Bytes())
		}, "rejected/clock_drift"},
		// A relay batch (PROTOCOL.md section 9.6) is refused as a whole
		// when one entry is invalid: the valid entry beside the forged
		// one must not reach A's catalog either.
		{"batch of a valid entry and a forged one", func() []byte {
			sk, _ := newKey(t)
			valid := entryAnnouncement(t, sealEntry(t, sk, nw, now()).Bytes())
			return append(valid, entryAnnouncement(t, seal(t, xKey, catalog.EntryDomain, catalog.EntryPayloadType, entryPB(b.h.ID(), nw, now(), forged)))...)
		}, "rejected/signer_mismatch"},
		{"attacker's own stale entry", func() []byte {
			return entryAnnouncement(t, sealEntry(t, xKey, nw, catalog.NewVersion(time.Now().Add(-time.Hour))).Bytes())
		}, "ignored/stale"},
	}

	baseA, baseB := a.svc.Stats(), b.svc.Stats()
	wantRejected := map[string]uint64{}
	for _, at := range attacks {
		before := a.svc.Stats().RejectedBy[at.reason]
		x.publish(t, at.data())
		testutil.Eventually(t, 5*time.Second, func() bool { return a.svc.Stats().RejectedBy[at.reason] > before },
			"%s: A's counter %q did not move from %d", at.name, at.reason, before)
		if strings.HasPrefix(at.reason, "rejected/") {
			wantRejected[at.reason]++
		}
	}

	// A refused exactly what the attacker sent, each for its reason.
	afterA := a.svc.Stats()
	delta := reasonDelta(baseA, afterA)
	for k, want := range wantRejected {
		if delta[k] != want {
			t.Errorf("A's %q moved by %d, want %d (delta %v)", k, delta[k], want, delta)
		}
	}
	var sum uint64
	for _, n := range wantRejected {
		sum += n
	}
	if got := afterA.Rejected - baseA.Rejected; got != sum {
		t.Errorf("A's Rejected moved by %d, want %d (delta %v)", got, sum, delta)
	}
	if afterA.Departed != 0 || afterA.Added != baseA.Added {
		t.Errorf("A's catalog changed: departed %d, added %d -> %d", afterA.Departed, baseA.Added, afterA.Added)
	}

	// A's catalog is intact: only B, with B's own signed entry.
	checkCatalog := func(name string, svc *discovery.Service, want peer.ID) {
		t.Helper()
		snap := svc.Catalog()
		if snap.Len() != 1 {
			t.Errorf("%s's catalog holds %d peers, want only %s", name, snap.Len(), want)
		}
		e, ok := snap.Get(want)
		if !ok {
			t.Fatalf("%s lost %s from its catalog", name, want)
		}
		if e.Entry.HasTag(forged) {
			t.Errorf("%s holds the forged entry of %s", name, want)
		}
		if _, err := catalog.OpenEntry(e.Bytes(), 0); err != nil {
			t.Errorf("%s holds an entry of %s that does not verify: %v", name, want, err)
		}
		if _, ok := snap.Get(x.h.ID()); ok {
			t.Errorf("%s's catalog holds the attacker", name)
		}
	}
	checkCatalog("A", a.svc, b.h.ID())
	if e, _ := a.svc.Catalog().Get(b.h.ID()); e.Entry.Version.Compare(bNew.Entry.Version) < 0 {
		t.Errorf("A rolled B back to %v, it had %v", e.Entry.Version, bNew.Entry.Version)
	}

	// Nothing was forwarded to B.
	barrier(t, a, b)
	afterB := b.svc.Stats()
	if afterB.Rejected != baseB.Rejected {
		t.Errorf("B rejected %d messages: A forwarded invalid gossip (%v)", afterB.Rejected-baseB.Rejected, reasonDelta(baseB, afterB))
	}
	// The ignored attacks, had A forwarded them, would count at B as
	// ignored/local (the replay of B's entry), ignored/unknown (the
	// departure of B) and ignored/stale.
	d := reasonDelta(baseB, afterB)
	for _, k := range []string{"ignored/local", "ignored/unknown", "ignored/stale"} {
		if d[k] != 0 {
			t.Errorf("A forwarded ignored gossip to B: %s moved by %d", k, d[k])
		}
	}
	checkCatalog("B", b.svc, a.h.ID())

	// gossipsub penalised the attacker at A; B, which sent only valid
	// messages, is not penalised.
	testutil.Eventually(t, 5*time.Second, func() bool { s, ok := scores.score(x.h.ID()); return ok && s < 0 },
		"attacker's gossipsub score at A did not go negative")
	if s, ok := scores.score(b.h.ID()); ok && s < 0 {
		t.Errorf("honest B's score at A is %v", s)
	}
}

// Regression (fixed): the gossip validator accepts, and so forwards to every peer, a
// departure whose LastVersion lies in the future, which Store.Depart then
// refuses (catalog/store.go: "claims version ... from the future", counted
// as rejected/clock_drift only after the message was accepted and
// forwarded). The validator had its own copy of the checks, which judged
// the departure's Timestamp against the clock drift but not its
// LastVersion, so it disagreed with the store: the validator must refuse
// what every store refuses, or the message floods the network
// unpenalised. (With the store
// before that check, such a departure removed the peer and left a
// tombstone that kept it out of the catalog until the future version went
// stale.) Only the departing peer's key can sign it, so the sender is that
// peer misbehaving or someone holding its key; the test signs with B's key
// and lets X publish. Fix: the validator calls catalog.Store.CheckDeparture,
// the store's own checks (one copy), which return catalog.ErrClockDrift
// when d.LastVersion.UpdatedAt().After(now.Add(MaxClockDrift)).
func TestGossip_FutureDepartureIsNotForwarded(t *testing.T) {
	nw := catalog.IDFromString("discovery-test/future-departure")
	a, b, x := gossipLine(t, nw)
	future := catalog.NewVersion(time.Now().Add(time.Hour))
	dep, err := catalog.SealDeparture(catalog.Departure{
		PeerID: b.h.ID(), Network: nw, LastVersion: future, Timestamp: time.Now(),
	}, hostKey(t, b.h))
	if err != nil {
		t.Fatal(err)
	}
	baseA, baseB := a.svc.Stats(), b.svc.Stats()
	x.publish(t, departureAnnouncement(t, dep))
	const reason = "rejected/clock_drift"
	testutil.Eventually(t, 5*time.Second, func() bool { return a.svc.Stats().RejectedBy[reason] > baseA.RejectedBy[reason] },
		"A did not refuse the future departure")
	if !knows(a.svc, b.h.ID()) {
		t.Error("a departure dated in the future removed B from A's catalog")
	}
	barrier(t, a, b)
	// B receives a forwarded departure of itself as ignored/unknown.
	if d := reasonDelta(baseB, b.svc.Stats()); d["ignored/unknown"] != 0 {
		t.Errorf("A forwarded the future departure to B (B's counters moved: %v)", d)
	}
}

// TestGossip_BatchSpreadsEveryEntry: a relay batch (PROTOCOL.md section
// 9.6) from a raw gossip peer brings A every valid entry it carries, leaves
// out the stale one (counted as ignored), and A forwards the message, so B,
// which is not connected to the sender, learns them too.
func TestGossip_BatchSpreadsEveryEntry(t *testing.T) {
	nw := catalog.IDFromString("discovery-test/gossip-batch")
	a, b, x := gossipLine(t, nw)
	var fresh []peer.ID
	var batch []byte
	for range 3 {
		sk, id := newKey(t)
		fresh = append(fresh, id)
		batch = append(batch, entryAnnouncement(t, sealEntry(t, sk, nw, catalog.NewVersion(time.Now())).Bytes())...)
	}
	staleKey, staleID := newKey(t)
	batch = append(batch, entryAnnouncement(t, sealEntry(t, staleKey, nw, catalog.NewVersion(time.Now().Add(-time.Hour))).Bytes())...)
	before := a.svc.Stats()
	x.publish(t, batch)
	for _, n := range []*testNode{a, b} {
		testutil.Eventually(t, 5*time.Second, func() bool {
			for _, id := range fresh {
				if !knows(n.svc, id) {
					return false
				}
			}
			return true
		}, "a node did not learn every entry of the batch")
		if knows(n.svc, staleID) {
			t.Error("a node took the batch's stale entry")
		}
	}
	after := a.svc.Stats()
	if d := reasonDelta(before, after); d["ignored/stale"] != 1 || after.Rejected != before.Rejected {
		t.Errorf("A's refusals moved by %v, want one ignored/stale", d)
	}
}
