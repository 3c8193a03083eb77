package catalog

import (
	"bytes"
	"crypto/rand"
	"errors"
	mrand "math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/mosaik-go/mosaik/catalog/pb"
)

func TestVersion_Next(t *testing.T) {
	start := NewVersion(t0)
	if start.StartMS != t0.UnixMilli() || start.UpdateMS != t0.UnixMilli() {
		t.Fatalf("NewVersion = %v", start)
	}
	tests := []struct {
		name string
		from Version
		now  time.Time
		want Version
	}{
		{"clock moved on", start, t0.Add(time.Second), Version{start.StartMS, t0.Add(time.Second).UnixMilli() + 1}},
		{"clock stalled", start, t0, Version{start.StartMS, start.UpdateMS + 1}},
		{"clock went back", Version{start.StartMS, start.UpdateMS + 500}, t0.Add(-time.Hour), Version{start.StartMS, start.UpdateMS + 501}},
		{"saturates at the maximum", Version{1, 1<<63 - 1}, t0, Version{1, 1<<63 - 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.from.Next(tt.now); got != tt.want {
				t.Fatalf("Next = %v, want %v", got, tt.want)
			}
		})
	}

	// A run of changes while the clock jumps around stays strictly increasing.
	v := start
	rng := mrand.New(mrand.NewChaCha8([32]byte{2}))
	for i := range 1000 {
		now := t0.Add(time.Duration(rng.IntN(20_000)-10_000) * time.Millisecond)
		next := v.Next(now)
		if next.Compare(v) <= 0 || next.StartMS != v.StartMS {
			t.Fatalf("step %d: %v.Next(%v) = %v is not newer", i, v, now.UnixMilli(), next)
		}
		v = next
	}
}

func TestVersion_Compare(t *testing.T) {
	old := Version{StartMS: 1000, UpdateMS: 900_000} // long-running old run
	tests := []struct {
		name string
		a, b Version
		want int
	}{
		{"equal", old, old, 0},
		{"later update", Version{1000, 1001}, Version{1000, 1000}, 1},
		{"earlier update", Version{1000, 1000}, Version{1000, 1001}, -1},
		{"restart beats old run", Version{2000, 2000}, old, 1},
		{"old run loses to restart", old, Version{2000, 2000}, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.a.Compare(tt.b); got != tt.want {
				t.Fatalf("%v.Compare(%v) = %d, want %d", tt.a, tt.b, got, tt.want)
			}
		})
	}
}

func TestVersion_Times(t *testing.T) {
	v := ver(t0, t0.Add(1500*time.Millisecond))
	if !v.StartedAt().Equal(t0) || !v.UpdatedAt().Equal(t0.Add(1500*time.Millisecond)) {
		t.Fatalf("StartedAt/UpdatedAt = %v/%v", v.StartedAt(), v.UpdatedAt())
	}
	if got, want := v.String(), "1750000000000.1750000001500"; got != want {
		t.Fatalf("String = %q, want %q", got, want)
	}
}

func TestRestart_NewRunBeatsOldRun(t *testing.T) {
	// The first run of a node announced many updates; the node restarts a
	// minute after it started. Its new entry must win everywhere.
	p := newTestPeer(t)
	run1, err := NewLocal(p.key, testNetwork, t0, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		if _, err := run1.Refresh(t0.Add(time.Duration(i) * time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	run2, err := NewLocal(p.key, testNetwork, t0.Add(time.Minute), nil)
	if err != nil {
		t.Fatal(err)
	}
	if run2.Current().Entry.Version.Compare(run1.Current().Entry.Version) <= 0 {
		t.Fatalf("restart %v does not beat the old run %v", run2.Current().Entry.Version, run1.Current().Entry.Version)
	}
}

func TestNewLocal_Init(t *testing.T) {
	p, q := newTestPeer(t), newTestPeer(t)
	l, err := NewLocal(p.key, testNetwork, t0, func(e *Entry) {
		e.PeerID = q.id      // ignored
		e.Network = otherNet // ignored
		e.Tags = []Tag{IDFromString("b"), IDFromString("a"), IDFromString("b")}
		e.Streams = []StreamID{IDFromString("orders")}
		e.Addrs = []ma.Multiaddr{mustAddr(t, "/ip4/127.0.0.1/tcp/1")}
	})
	if err != nil {
		t.Fatal(err)
	}
	e := l.Current().Entry
	if e.PeerID != p.id || e.Network != testNetwork || e.Protocol != ProtocolVersion || e.Version != NewVersion(t0) {
		t.Fatalf("local entry header = %v %s %q %v", e.PeerID, e.Network.Short(), e.Protocol, e.Version)
	}
	if len(e.Tags) != 2 || !isNormalized(&e) || !e.Produces(IDFromString("orders")) || len(e.Addrs) != 1 {
		t.Fatalf("local entry content = %+v", e)
	}
	if _, err := OpenEntry(l.Current().Bytes(), 0); err != nil {
		t.Fatalf("the local entry does not open: %v", err)
	}

	nilInit, err := NewLocal(p.key, testNetwork, t0, nil)
	if err != nil || nilInit.Current().Entry.PeerID != p.id {
		t.Fatalf("NewLocal with nil init: %v", err)
	}
}

func TestLocal_Update(t *testing.T) {
	p, q := newTestPeer(t), newTestPeer(t)
	l, err := NewLocal(p.key, testNetwork, t0, func(e *Entry) {
		e.Tags = []Tag{IDFromString("a"), IDFromString("b")}
	})
	if err != nil {
		t.Fatal(err)
	}
	first := l.Current()

	tests := []struct {
		name    string
		f       func(*Entry)
		changed bool
	}{
		{"no-op", func(*Entry) {}, false},
		{"re-add a tag", func(e *Entry) { e.Tags = append(e.Tags, IDFromString("a")) }, false},
		{"reorder tags", func(e *Entry) { slices.Reverse(e.Tags) }, false},
		{"nil vs empty tickets", func(e *Entry) { e.Tickets = []Ticket{} }, false},
		{"identity fields are not content", func(e *Entry) {
			e.PeerID, e.Network, e.Version = q.id, otherNet, Version{StartMS: 1, UpdateMS: 1}
		}, false},
		{"add a tag", func(e *Entry) { e.Tags = append(e.Tags, IDFromString("c")) }, true},
		{"remove a tag", func(e *Entry) { e.Tags = e.Tags[:1] }, true},
		{"add a stream", func(e *Entry) { e.Streams = append(e.Streams, IDFromString("orders")) }, true},
		{"add an address", func(e *Entry) { e.Addrs = append(e.Addrs, mustAddr(t, "/ip4/1.2.3.4/tcp/5")) }, true},
		{"add a ticket", func(e *Entry) { e.Tickets = append(e.Tickets, Ticket{Class: IDFromString("jwt"), Data: []byte("x")}) }, true},
		{"change ticket data", func(e *Entry) { e.Tickets[0].Data = []byte("y") }, true},
		{"change protocol", func(e *Entry) { e.Protocol = "mosaik-go/9" }, true},
	}
	now := t0
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := l.Current()
			now = now.Add(time.Second)
			s, changed, err := l.Update(now, tt.f)
			if err != nil {
				t.Fatal(err)
			}
			if changed != tt.changed {
				t.Fatalf("changed = %v, want %v", changed, tt.changed)
			}
			if !changed {
				if s != before || l.Current() != before {
					t.Fatal("an unchanged update must return the current entry as is")
				}
				return
			}
			if s != l.Current() {
				t.Fatal("Update must install the new entry")
			}
			if want := before.Entry.Version.Next(now); s.Entry.Version != want {
				t.Fatalf("version = %v, want %v", s.Entry.Version, want)
			}
			if s.Entry.PeerID != p.id || s.Entry.Network != testNetwork {
				t.Fatal("Update changed the identity")
			}
			if before.Entry.Version.Compare(first.Entry.Version) < 0 {
				t.Fatal("the previous entry was changed in place")
			}
			if _, err := OpenEntry(s.Bytes(), 0); err != nil {
				t.Fatalf("re-sealed entry does not open: %v", err)
			}
		})
	}
	if len(first.Entry.Tags) != 2 || first.Entry.Version != NewVersion(t0) {
		t.Fatal("Update mutated an earlier SignedEntry")
	}
}

func TestLocal_Refresh(t *testing.T) {
	p := newTestPeer(t)
	l, err := NewLocal(p.key, testNetwork, t0, func(e *Entry) { e.Tags = []Tag{IDFromString("a")} })
	if err != nil {
		t.Fatal(err)
	}
	prev := l.Current()
	// The clock goes forward, stalls and goes back: every Refresh bumps.
	for i, now := range []time.Time{t0.Add(time.Second), t0.Add(time.Second), t0.Add(-time.Hour), t0} {
		s, err := l.Refresh(now)
		if err != nil {
			t.Fatal(err)
		}
		if s.Entry.Version.Compare(prev.Entry.Version) <= 0 {
			t.Fatalf("refresh %d: version %v not newer than %v", i, s.Entry.Version, prev.Entry.Version)
		}
		if !sameContent(&s.Entry, &prev.Entry) {
			t.Fatalf("refresh %d changed the content", i)
		}
		if l.Current() != s {
			t.Fatalf("refresh %d not installed", i)
		}
		if _, err := OpenEntry(s.Bytes(), 0); err != nil {
			t.Fatalf("refresh %d: %v", i, err)
		}
		prev = s
	}
}

func TestDeparture_RoundTrip(t *testing.T) {
	p := newTestPeer(t)
	d := Departure{PeerID: p.id, Network: testNetwork, LastVersion: Version{1000, 2000}, Timestamp: t0.Add(1234 * time.Millisecond)}
	b, err := SealDeparture(d, p.key)
	if err != nil {
		t.Fatal(err)
	}
	got, err := OpenDeparture(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.PeerID != d.PeerID || got.Network != d.Network || got.LastVersion != d.LastVersion || !got.Timestamp.Equal(d.Timestamp) {
		t.Fatalf("round trip: got %+v, want %+v", *got, d)
	}
	if len(b) > MaxDepartureSize {
		t.Fatalf("a departure is %d bytes, above its own cap", len(b))
	}
}

func TestLocal_Departure(t *testing.T) {
	p := newTestPeer(t)
	l, err := NewLocal(p.key, testNetwork, t0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Refresh(t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	b, err := l.Departure(t0.Add(2 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	d, err := OpenDeparture(b)
	if err != nil {
		t.Fatal(err)
	}
	if d.PeerID != p.id || d.Network != testNetwork || d.LastVersion != l.Current().Entry.Version || !d.Timestamp.Equal(t0.Add(2*time.Second)) {
		t.Fatalf("departure = %+v", *d)
	}
}

func TestOpenDeparture_Rejections(t *testing.T) {
	p, q := newTestPeer(t), newTestPeer(t)
	payload := func(id peer.ID, nw []byte) []byte {
		b, err := (&departureRecord{m: &pb.Departure{
			PeerId:      []byte(id),
			Network:     nw,
			LastVersion: &pb.Version{StartMs: 1, UpdateMs: 2},
			TimestampMs: t0.UnixMilli(),
		}}).MarshalRecord()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	valid, err := SealDeparture(Departure{PeerID: p.id, Network: testNetwork, LastVersion: NewVersion(t0), Timestamp: t0}, p.key)
	if err != nil {
		t.Fatal(err)
	}
	tampered := bytes.Clone(valid)
	tampered[len(tampered)-1] ^= 1
	secpKey, _, err := crypto.GenerateSecp256k1Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	secpID, err := peer.IDFromPrivateKey(secpKey)
	if err != nil {
		t.Fatal(err)
	}
	entry := p.seal(t, testNetwork, NewVersion(t0), nil)

	tests := []struct {
		name string
		data []byte
		want error
	}{
		{"signed by another key", sealRaw(t, DepartureDomain, DeparturePayloadType, payload(p.id, testNetwork[:]), q.key), ErrSignerMismatch},
		{"tampered", tampered, ErrBadSignature},
		{"entry domain", sealRaw(t, EntryDomain, DeparturePayloadType, payload(p.id, testNetwork[:]), p.key), ErrBadSignature},
		{"an entry is not a departure", entry.Bytes(), ErrWrongPayloadType},
		{"secp256k1 signer", sealRaw(t, DepartureDomain, DeparturePayloadType, payload(secpID, testNetwork[:]), secpKey), ErrBadSignature},
		{"oversize", bytes.Repeat([]byte{0x0a}, MaxDepartureSize+1), ErrOversize},
		{"garbage", []byte("garbage"), ErrMalformed},
		{"empty", nil, ErrMalformed},
		{"bad peer id", sealRaw(t, DepartureDomain, DeparturePayloadType, payload("nope", testNetwork[:]), p.key), ErrMalformed},
		{"bad network", sealRaw(t, DepartureDomain, DeparturePayloadType, payload(p.id, testNetwork[:3]), p.key), ErrMalformed},
		{"bad payload", sealRaw(t, DepartureDomain, DeparturePayloadType, []byte{0xff}, p.key), ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := OpenDeparture(tt.data)
			if !errors.Is(err, tt.want) || d != nil {
				t.Fatalf("OpenDeparture = %v, %v; want nil, %v", d, err, tt.want)
			}
			if !IsRejected(err) {
				t.Fatalf("IsRejected(%v) = false", err)
			}
		})
	}
}

func TestSealDeparture_WrongKey(t *testing.T) {
	p, q := newTestPeer(t), newTestPeer(t)
	if _, err := SealDeparture(Departure{PeerID: p.id, Network: testNetwork, Timestamp: t0}, q.key); err == nil {
		t.Fatal("SealDeparture with another peer's key must fail")
	}
}
