package catalog

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

// TestBump_HeartbeatIsABump: a heartbeat (Local.Refresh) changes only the
// version, so the new sealed entry keeps the content hash and is rebuilt
// byte for byte from the previous one and its version and signature; a
// change of content (Local.Update) changes the hash.
func TestBump_HeartbeatIsABump(t *testing.T) {
	p := newTestPeer(t)
	l, err := NewLocal(p.key, testNetwork, t0, func(e *Entry) { *e = fullEntry(t, p, e.Version) })
	if err != nil {
		t.Fatal(err)
	}
	first := l.Current()
	h1, ok := first.ContentHash()
	if !ok {
		t.Fatal("a sealed entry is not in canonical form")
	}
	beat, err := l.Refresh(t0.Add(30 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if h2, ok := beat.ContentHash(); !ok || h2 != h1 {
		t.Fatalf("the heartbeat changed the content hash (%x, %v) from %x", h2, ok, h1)
	}
	sig, ok := beat.Signature()
	if !ok || len(sig) != BumpSignatureLen {
		t.Fatalf("Signature() = %d bytes, %v", len(sig), ok)
	}
	rebuilt, err := first.ApplyBump(beat.Entry.Version, sig)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(rebuilt, beat.Bytes()) {
		t.Fatal("the rebuilt entry differs from the one the peer sealed")
	}
	got, err := OpenEntry(rebuilt, 0)
	if err != nil {
		t.Fatalf("the rebuilt entry does not open: %v", err)
	}
	if got.Entry.Version != beat.Entry.Version {
		t.Fatalf("rebuilt version %v, want %v", got.Entry.Version, beat.Entry.Version)
	}
	// A version whose varints are longer (a new run, much later) splices
	// in as well: lengths are re-encoded.
	far := Version{StartMS: 1 << 50, UpdateMS: 1<<50 + 7}
	sealed, err := Seal(func() Entry { e := first.Entry.Clone(); e.Version = far; return e }(), p.key)
	if err != nil {
		t.Fatal(err)
	}
	sig, _ = sealed.Signature()
	if rebuilt, err := first.ApplyBump(far, sig); err != nil || !bytes.Equal(rebuilt, sealed.Bytes()) {
		t.Fatalf("a longer version did not rebuild the sealed entry (%v)", err)
	}

	changed, ok2, err := l.Update(t0.Add(time.Minute), func(e *Entry) { e.Tags = append(e.Tags, IDFromString("new")) })
	if err != nil || !ok2 {
		t.Fatalf("Update: %v, %v", ok2, err)
	}
	if h3, ok := changed.ContentHash(); !ok || h3 == h1 {
		t.Fatalf("a content change kept the hash (%x, %v)", h3, ok)
	}
	// The bump of the changed entry spliced into the first one is a forgery
	// of the first's content: the signature fails.
	sig, _ = changed.Signature()
	forged, err := first.ApplyBump(changed.Entry.Version, sig)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenEntry(forged, 0); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("a bump across a content change opened with %v, want ErrBadSignature", err)
	}
}

// TestBump_NonCanonical: an entry that opens but whose sealed bytes are
// not in canonical form has no content hash and takes no bump.
func TestBump_NonCanonical(t *testing.T) {
	p := newTestPeer(t)
	s := p.seal(t, testNetwork, NewVersion(t0), nil)
	sig, _ := s.Signature()
	cases := map[string][]byte{
		// An unknown envelope field: go-libp2p ignores it, and the
		// signature does not cover it.
		"extra envelope field": protowire.AppendBytes(protowire.AppendTag(bytes.Clone(s.Bytes()), 9, protowire.BytesType), []byte("x")),
	}
	// The payload field's length as a two-byte varint where one would do.
	raw := s.Bytes()
	pk, pkLen := protowire.ConsumeBytes(raw[1:])
	pt, ptLen := protowire.ConsumeBytes(raw[1+pkLen+1:])
	off := 1 + pkLen + 1 + ptLen
	pl, plLen := protowire.ConsumeBytes(raw[off+1:])
	if pk == nil || pt == nil || pl == nil || len(pl) >= 128 {
		t.Fatal("unexpected layout of a minimal entry")
	}
	long := append(bytes.Clone(raw[:off+1]), byte(len(pl))|0x80, 0)
	long = append(append(long, pl...), raw[off+1+plLen:]...)
	cases["non-minimal length"] = long
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			e, err := OpenEntry(data, 0)
			if err != nil {
				t.Fatalf("the variant does not open: %v", err)
			}
			if _, ok := e.ContentHash(); ok {
				t.Fatal("a non-canonical entry has a content hash")
			}
			if _, ok := e.Signature(); ok {
				t.Fatal("a non-canonical entry offers its signature for a bump")
			}
			if _, err := e.ApplyBump(s.Entry.Version, sig); !errors.Is(err, ErrBadBump) {
				t.Fatalf("ApplyBump on a non-canonical entry: %v, want ErrBadBump", err)
			}
		})
	}
	if _, err := s.ApplyBump(s.Entry.Version, sig[:63]); !errors.Is(err, ErrBadBump) {
		t.Fatalf("ApplyBump with a short signature: %v, want ErrBadBump", err)
	}
}

// FuzzApplyBump feeds arbitrary sealed bytes, versions and signatures to
// the bump helpers: they must never panic; an entry that opens and has a
// content hash is rebuilt exactly from its own version and signature;
// whatever a bump rebuilds keeps the content hash when it opens.
func FuzzApplyBump(f *testing.F) {
	for _, b := range fuzzSeedEntries(f) {
		f.Add(b, int64(1), int64(2), bytes.Repeat([]byte{1}, BumpSignatureLen))
	}
	f.Add([]byte{0x0a, 0x00, 0x12, 0x00, 0x1a, 0x02, 0x22, 0x00, 0x2a, 0x00}, int64(0), int64(0), []byte{})
	f.Fuzz(func(t *testing.T, data []byte, start, update int64, sig []byte) {
		_, _ = splitCanonical(data, Version{StartMS: start, UpdateMS: update})
		e, err := OpenEntry(data, 0)
		if err != nil {
			return
		}
		h, ok := e.ContentHash()
		if !ok {
			if _, err := e.ApplyBump(Version{start, update}, sig); !errors.Is(err, ErrBadBump) {
				t.Fatalf("a non-canonical entry took a bump (%v)", err)
			}
			return
		}
		own, _ := e.Signature()
		same, err := e.ApplyBump(e.Entry.Version, own)
		if err != nil || !bytes.Equal(same, data) {
			t.Fatalf("the entry's own bump does not rebuild it (%v)", err)
		}
		out, err := e.ApplyBump(Version{start, update}, sig)
		if err != nil {
			if len(sig) == BumpSignatureLen {
				t.Fatalf("a bump of a canonical entry failed: %v", err)
			}
			return
		}
		if b, err := OpenEntry(out, 0); err == nil {
			if h2, ok := b.ContentHash(); !ok || h2 != h {
				t.Fatal("a rebuilt entry changed its content hash")
			}
		}
	})
}
