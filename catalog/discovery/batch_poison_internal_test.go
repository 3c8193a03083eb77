package discovery

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pubsubpb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/mosaik-go/mosaik/catalog"
)

// A relay batch that carries a new entry and a forged one that this node
// ignores without verifying it (a tampered copy of its own entry, of a
// known version, ...) is rejected here. Accepted, the router forwarded it
// whole, every node downstream rejected the forged entry, and this honest
// node took the penalty: a few such batches got it graylisted by its mesh.
// An honest batch of a new entry and exact copies of held entries (the
// usual relay) still passes.
func TestGossip_BatchWithAForgedIgnoredEntryIsRejected(t *testing.T) {
	nw := catalog.IDFromString("discovery-test/batch-poison")
	s, ctx := loneService(t, nw)

	now := time.Now()
	fresh := func() *catalog.SignedEntry {
		sk, _, err := crypto.GenerateEd25519Key(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		id, _ := peer.IDFromPrivateKey(sk)
		se, err := catalog.Seal(catalog.Entry{PeerID: id, Network: nw, Protocol: catalog.ProtocolVersion, Version: catalog.NewVersion(now)}, sk)
		if err != nil {
			t.Fatal(err)
		}
		return se
	}
	held := fresh()
	if _, err := s.Merge(held); err != nil {
		t.Fatal(err)
	}
	validate := func(data []byte) pubsub.ValidationResult {
		return validateFrom(ctx, s, fresh().Entry.PeerID, data) // any gossip peer
	}

	// Forged copies that openEntry ignores unverified: our own entry and
	// the held peer's, each with its signature's last byte flipped.
	for name, e := range map[string]*catalog.SignedEntry{"local": s.Local(), "held": held} {
		forged := bytes.Clone(e.Bytes())
		forged[len(forged)-1] ^= 1
		if got := validate(encodeBatch(fresh().Bytes(), forged)); got != pubsub.ValidationReject {
			t.Errorf("a batch of a new entry and a forged copy of the %s entry: %v, want rejected", name, got)
		}
	}
	if got := validate(encodeBatch(fresh().Bytes(), held.Bytes(), s.Local().Bytes())); got != pubsub.ValidationAccept {
		t.Errorf("an honest batch of a new entry and copies of held entries: %v, want accepted", got)
	}

	// A new entry and more than maxBatchVerifies older, validly signed
	// versions of held peers (ignored as not newer, not held copies): the
	// batch is ignored whole, without verifying them, so that it cannot
	// make every hop verify dozens of signatures.
	bodies := [][]byte{fresh().Bytes()}
	for range maxBatchVerifies + 1 {
		sk, _, err := crypto.GenerateEd25519Key(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		id, _ := peer.IDFromPrivateKey(sk)
		old, err := catalog.Seal(catalog.Entry{PeerID: id, Network: nw, Protocol: catalog.ProtocolVersion, Version: catalog.NewVersion(now.Add(-time.Second))}, sk)
		if err != nil {
			t.Fatal(err)
		}
		cur, err := catalog.Seal(catalog.Entry{PeerID: id, Network: nw, Protocol: catalog.ProtocolVersion, Version: catalog.NewVersion(now)}, sk)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Merge(cur); err != nil {
			t.Fatal(err)
		}
		bodies = append(bodies, old.Bytes())
	}
	before, st0 := s.store.SignatureChecks(), s.Stats().RejectedBy
	if got := validate(encodeBatch(bodies...)); got != pubsub.ValidationIgnore {
		t.Errorf("a batch of a new entry and %d older versions: %v, want ignored", len(bodies)-1, got)
	}
	if n := s.store.SignatureChecks() - before; n > 1 {
		t.Errorf("%d signatures verified for it, want only the new entry's", n)
	}
	// Counted under its own label, and its ignored entries under theirs
	// (it was counted as rate_limited, which none of them was).
	wantRefusals(t, st0, s.Stats().RejectedBy, map[string]uint64{"ignored/costly_batch": 1, "ignored/not_newer": maxBatchVerifies + 1, "ignored/rate_limited": 0})
}

// A batch names each peer at most once (PROTOCOL.md section 9.6). Copies
// of one new entry were each verified against the same catalog, and
// forged newer copies of the local entry each cost a check for a second
// process; both then passed as ignored, unpenalised. Such a batch is
// malformed, rejected before any signature is checked; a forged newer copy
// of the local entry alone is rejected too (it was ignored, so its sender
// could repeat it at no cost).
func TestGossip_BatchNamingAPeerTwiceIsRejected(t *testing.T) {
	nw := catalog.IDFromString("discovery-test/batch-dup")
	s, ctx := loneService(t, nw)
	now := time.Now()
	sk, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := peer.IDFromPrivateKey(sk)
	e, err := catalog.Seal(catalog.Entry{PeerID: id, Network: nw, Protocol: catalog.ProtocolVersion, Version: catalog.NewVersion(now)}, sk)
	if err != nil {
		t.Fatal(err)
	}
	// A newer entry of the local peer, its signature tampered with: dated
	// 2 s ahead (within the clock drift), so that the service's own
	// heartbeats meanwhile stay older.
	v := s.Local().Entry.Version
	v.UpdateMS = now.Add(2 * time.Second).UnixMilli()
	newer, err := catalog.Seal(catalog.Entry{PeerID: s.h.ID(), Network: nw, Protocol: catalog.ProtocolVersion, Version: v}, s.h.Peerstore().PrivKey(s.h.ID()))
	if err != nil {
		t.Fatal(err)
	}
	forged := bytes.Clone(newer.Bytes())
	forged[len(forged)-1] ^= 1
	validate := func(data []byte) pubsub.ValidationResult { return validateFrom(ctx, s, id, data) }
	for _, tt := range []struct {
		name   string
		data   []byte
		want   pubsub.ValidationResult
		checks uint64
	}{
		{"one entry twice", encodeBatch(e.Bytes(), e.Bytes()), pubsub.ValidationReject, 0},
		{"forged newer local copies", encodeBatch(forged, forged, forged), pubsub.ValidationReject, 0},
		{"a forged newer local copy", encodeBatch(forged), pubsub.ValidationReject, 1},
		{"the entry once", encodeBatch(e.Bytes()), pubsub.ValidationAccept, 1},
	} {
		before := s.store.SignatureChecks()
		if got := validate(tt.data); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
		if n := s.store.SignatureChecks() - before; n != tt.checks {
			t.Errorf("%s: %d signatures verified, want %d", tt.name, n, tt.checks)
		}
	}
	select {
	case <-s.DuplicateIdentity():
		t.Error("a forged copy of the local entry was taken for a second process")
	default:
	}
}

// windowAdmission admits every entry but late's, whose ticket ended at end.
type windowAdmission struct {
	late peer.ID
	end  time.Time
}

func (a windowAdmission) Check(e *catalog.Entry, at time.Time) (time.Time, error) {
	if e.PeerID == a.late && !at.Before(a.end) {
		return time.Time{}, errors.New("ticket expired")
	}
	return time.Time{}, nil
}

// A relay batch holding an entry whose admission ended within the clock
// drift (ignored here, not rejected: the relay's clock may differ) is not
// forwarded, since the next hop might reject it, but its other new entries
// are merged: the batch was ignored whole, its good entries lost at this
// hop.
func TestGossip_BatchWithAnEntryInTheAdmissionWindow(t *testing.T) {
	nw := catalog.IDFromString("discovery-test/batch-window")
	s, ctx := loneService(t, nw)
	now := time.Now()
	mk := func() (*catalog.SignedEntry, peer.ID) {
		sk := newTestKey(t)
		id, _ := peer.IDFromPrivateKey(sk)
		se, err := catalog.Seal(catalog.Entry{PeerID: id, Network: nw, Protocol: catalog.ProtocolVersion, Version: catalog.NewVersion(now.Add(-3 * time.Second))}, sk)
		if err != nil {
			t.Fatal(err)
		}
		return se, id
	}
	a, aid := mk()
	b, bid := mk()
	s.store.SetAdmission(windowAdmission{late: bid, end: now.Add(-time.Second)})
	fid, _ := peer.IDFromPrivateKey(newTestKey(t))
	before := s.Stats().RejectedBy
	if got := validateFrom(ctx, s, fid, encodeBatch(a.Bytes(), b.Bytes())); got != pubsub.ValidationIgnore {
		t.Fatalf("the batch: %v, want ignored (not forwarded)", got)
	}
	if _, ok := s.Catalog().Get(aid); !ok {
		t.Error("the batch's admitted new entry was not merged")
	}
	if _, ok := s.Catalog().Get(bid); ok {
		t.Error("the entry whose admission ended was merged")
	}
	wantRefusals(t, before, s.Stats().RejectedBy, map[string]uint64{"ignored/unvouched_batch": 1, "ignored/admission_window": 1})
}

// A gossip departure is judged against the catalog before its signature:
// one of a peer this node does not hold is ignored unverified (any key can
// sign a departure of its own made-up identity, and each cost a check), so
// a forged one of an unknown peer is ignored rather than rejected, while a
// forged one of a held peer is still rejected and a valid one accepted.
func TestGossip_DepartureJudgedBeforeItsSignature(t *testing.T) {
	nw := catalog.IDFromString("discovery-test/depart-cheap-first")
	s, ctx := loneService(t, nw)
	now := time.Now()
	held, stranger := newTestKey(t), newTestKey(t)
	hid, _ := peer.IDFromPrivateKey(held)
	sid, _ := peer.IDFromPrivateKey(stranger)
	e, err := catalog.Seal(catalog.Entry{PeerID: hid, Network: nw, Protocol: catalog.ProtocolVersion, Version: catalog.NewVersion(now)}, held)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Merge(e); err != nil {
		t.Fatal(err)
	}
	departure := func(sk crypto.PrivKey, id peer.ID, forge bool) []byte {
		b, err := catalog.SealDeparture(catalog.Departure{PeerID: id, Network: nw, LastVersion: e.Entry.Version, Timestamp: now}, sk)
		if err != nil {
			t.Fatal(err)
		}
		if forge {
			b[len(b)-1] ^= 1
		}
		var m []byte
		m = protowire.AppendTag(m, announceDeparture, protowire.BytesType)
		return protowire.AppendBytes(m, b)
	}
	validate := func(data []byte) pubsub.ValidationResult { return validateFrom(ctx, s, sid, data) }
	for _, tt := range []struct {
		name string
		data []byte
		want pubsub.ValidationResult
	}{
		{"a forged departure of an unknown peer", departure(stranger, sid, true), pubsub.ValidationIgnore},
		{"a forged departure of a held peer", departure(held, hid, true), pubsub.ValidationReject},
		{"a valid departure of a held peer", departure(held, hid, false), pubsub.ValidationAccept},
	} {
		if got := validate(tt.data); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}

func newTestKey(t *testing.T) crypto.PrivKey {
	t.Helper()
	sk, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return sk
}

// validateFrom runs s's gossip validator on data received from peer from.
func validateFrom(ctx context.Context, s *Service, from peer.ID, data []byte) pubsub.ValidationResult {
	topic := TopicName(s.network)
	msg := &pubsub.Message{Message: &pubsubpb.Message{Data: data, Topic: &topic}, ReceivedFrom: from}
	return s.validate(ctx, from, msg)
}

// wantRefusals checks that each label of want was counted (Stats
// RejectedBy) that many times between before and after.
func wantRefusals(t *testing.T, before, after, want map[string]uint64) {
	t.Helper()
	for label, n := range want {
		if got := after[label] - before[label]; got != n {
			t.Errorf("%s counted %d times, want %d", label, got, n)
		}
	}
}

// encodeBatch encodes an announcement carrying bodies as entries (a relay
// batch, PROTOCOL.md section 9.6, when there are several).
func encodeBatch(bodies ...[]byte) []byte {
	var b []byte
	for _, body := range bodies {
		b = protowire.AppendTag(b, announceEntry, protowire.BytesType)
		b = protowire.AppendBytes(b, body)
	}
	return b
}
