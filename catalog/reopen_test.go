package catalog

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
	"time"
)

// heldStore returns a store holding the full entry of p at version v0
// (PurgeAfter an hour, so that versions near t0 stay fresh).
func heldStore(tb testing.TB, p testPeer, v0 Version) (*Store, *SignedEntry) {
	tb.Helper()
	params := TestParams()
	params.PurgeAfter = time.Hour
	params.MaxClockDrift = time.Hour
	s, _ := newTestStoreWith(tb, params)
	sealed := p.seal(tb, testNetwork, v0, func(e *Entry) { *e = fullEntry(tb, p, e.Version) })
	// Held as received: opened (its tickets point into its sealed bytes).
	held, err := s.Open(sealed.Bytes(), t0)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := s.Merge(held, t0); err != nil {
		tb.Fatal(err)
	}
	return s, held
}

// sameOpen checks that openSame, where it applies, gives what openFull
// gives for data: the same error verdict, or the same entry. It reports
// whether openSame applied.
func sameOpen(t *testing.T, s *Store, data []byte, now time.Time) bool {
	t.Helper()
	fast, applied, ferr := s.openSame(data, now, false)
	if !applied {
		if fast != nil || ferr != nil {
			t.Fatalf("openSame did not apply but returned %v, %v", fast, ferr)
		}
		return false
	}
	full, err := s.openFull(data, now, false)
	switch {
	case (ferr == nil) != (err == nil):
		t.Fatalf("openSame: %v; openFull: %v", ferr, err)
	case err != nil:
		if fast != nil {
			t.Fatalf("openSame returned an entry together with %v", ferr)
		}
		if IsRejected(ferr) != IsRejected(err) || Reason(ferr) != Reason(err) {
			t.Fatalf("openSame refused with %v, openFull with %v", ferr, err)
		}
		return true
	}
	if !reflect.DeepEqual(fast.Entry, full.Entry) {
		t.Fatalf("openSame's entry differs from openFull's:\n%+v\n%+v", fast.Entry, full.Entry)
	}
	if !bytes.Equal(fast.Bytes(), data) {
		t.Fatal("openSame's sealed bytes differ from the input")
	}
	if &fast.Bytes()[0] == &data[0] {
		t.Fatal("openSame (not owned) kept the caller's buffer")
	}
	fh, fok := fast.ContentHash()
	// A fresh entry computes its hash from its own bytes.
	wh, wok := (&SignedEntry{Entry: full.Entry, raw: full.raw}).ContentHash()
	if fh != wh || fok != wok {
		t.Fatalf("openSame's content hash %x (%v), from the bytes %x (%v)", fh, fok, wh, wok)
	}
	// Tickets point into the entry's own sealed bytes, not the held entry's.
	for _, tk := range fast.Entry.Tickets {
		if len(tk.Data) > 0 && !within(fast.Bytes(), tk.Data) {
			t.Fatal("a ticket of openSame's entry points outside its sealed bytes")
		}
	}
	return true
}

// A heartbeat of a held entry (a new version, the same content) is opened
// from the held entry, with the same result as a full decode; everything
// else takes the full path.
func TestStore_OpenSame(t *testing.T) {
	p := newTestPeer(t)
	v0 := NewVersion(t0)
	s, held := heldStore(t, p, v0)
	now := t0.Add(time.Second)
	beat := func(v Version, mut func(*Entry)) []byte {
		e := held.Entry.Clone()
		e.Version = v
		if mut != nil {
			mut(&e)
		}
		sealed, err := Seal(e, p.key)
		if err != nil {
			t.Fatal(err)
		}
		return sealed.Bytes()
	}
	v1 := v0.Next(t0.Add(500 * time.Millisecond))
	hb := beat(v1, nil)
	if !sameOpen(t, s, hb, now) {
		t.Fatal("a heartbeat took the full path")
	}
	e, err := s.Open(hb, now)
	if err != nil || e.Entry.Version != v1 {
		t.Fatalf("Open(heartbeat) = %v, %v", e, err)
	}
	// The held entry is left as it was: its tickets still point into its
	// own sealed bytes.
	for _, tk := range held.Entry.Tickets {
		if !within(held.Bytes(), tk.Data) {
			t.Fatal("opening a heartbeat moved the held entry's tickets")
		}
	}
	owned := bytes.Clone(hb)
	if e, err := s.OpenOwned(owned, now); err != nil || &e.Bytes()[0] != &owned[0] {
		t.Fatalf("OpenOwned(heartbeat) copied the buffer or failed: %v", err)
	}
	// A version with longer varints (a new run) splices in as well.
	far := Version{StartMS: t0.Add(time.Minute).UnixMilli(), UpdateMS: t0.Add(time.Minute).UnixMilli() + 1<<20}
	if !sameOpen(t, s, beat(far, nil), t0.Add(time.Minute)) {
		t.Fatal("a new run's heartbeat took the full path")
	}

	// Refusals on the fast path are the full path's.
	for name, data := range map[string][]byte{
		"same version":  held.Bytes(),
		"older version": beat(Version{StartMS: v0.StartMS - 10, UpdateMS: v0.StartMS - 10}, nil),
		"far future":    beat(Version{StartMS: v0.StartMS, UpdateMS: t0.Add(2 * time.Hour).UnixMilli()}, nil),
		"forged": func() []byte {
			b := bytes.Clone(hb)
			b[len(b)-1] ^= 1 // the signature is last
			return b
		}(),
	} {
		if !sameOpen(t, s, data, now) {
			t.Fatalf("%s: took the full path", name)
		}
		if _, err := s.Open(data, now); err == nil {
			t.Fatalf("%s: opened", name)
		}
	}
	if _, err := s.Open(beat(v1, nil)[:len(hb)-1], now); err == nil {
		t.Fatal("a truncated heartbeat opened")
	}
	f := bytes.Clone(hb)
	f[len(f)-1] ^= 1
	if _, err := s.Open(f, now); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("a forged heartbeat: %v, want ErrBadSignature", err)
	}

	// Not a heartbeat of a held entry: the full path.
	for name, data := range map[string][]byte{
		"changed content": beat(v1, func(e *Entry) { e.Tags = append(e.Tags, IDFromString("new-tag")); e.Normalize() }),
		"unknown peer":    newTestPeer(t).seal(t, testNetwork, v1, nil).Bytes(),
		"non-canonical version": func() []byte {
			e := held.Entry.Clone()
			e.Version = v1
			pl := appendVersionField(nil, v1)
			payload := entryPayload(t, &e)
			i := bytes.Index(payload, pl)
			// Re-encode update_ms with a redundant continuation byte.
			odd := []byte{byte(entryVersion<<3 | 2), 0}
			inner := pl[2:]
			inner = append(inner[:len(inner)-1:len(inner)-1], inner[len(inner)-1]|0x80, 0x00)
			odd[1] = byte(len(inner))
			odd = append(odd, inner...)
			payload = append(append(append([]byte(nil), payload[:i]...), odd...), payload[i+len(pl):]...)
			return sealRaw(t, EntryDomain, EntryPayloadType, payload, p.key)
		}(),
	} {
		if _, applied, _ := s.openSame(data, now, false); applied {
			t.Fatalf("%s: openSame applied", name)
		}
		if name == "non-canonical version" {
			if e, err := s.Open(data, now); err != nil || e.Entry.Version != v1 {
				t.Fatalf("the full path refused an entry with a non-canonical version field: %v", err)
			}
		}
	}
}

// FuzzOpenSame: for a correctly signed payload of a held peer (the seeds
// are heartbeats of its entry), openSame, wherever it applies, gives what
// the full decode gives (sameOpen).
func FuzzOpenSame(f *testing.F) {
	p := fuzzPayloadKey(f)
	v0 := NewVersion(t0)
	held := fullEntry(f, p, v0)
	held.Normalize()
	for _, v := range []Version{v0.Next(t0.Add(time.Second)), {StartMS: v0.StartMS + 1, UpdateMS: v0.StartMS + 1<<30}, v0} {
		e := held.Clone()
		e.Version = v
		f.Add(entryPayload(f, &e), false)
		f.Add(entryPayload(f, &e), true)
	}
	f.Fuzz(func(t *testing.T, payload []byte, forge bool) {
		s, _ := heldStore(t, p, v0)
		data := sealRaw(t, EntryDomain, EntryPayloadType, payload, p.key)
		if forge && len(data) > 0 {
			data[len(data)-1] ^= 1
		}
		sameOpen(t, s, data, t0.Add(time.Second))
	})
}
