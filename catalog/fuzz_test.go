package catalog

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/record"
	ma "github.com/multiformats/go-multiaddr"
)

// The fuzz targets feed arbitrary bytes to the decoders of untrusted input.
// They must never panic, every refusal must be a rejection (IsRejected), and
// whatever they accept must satisfy the invariants the rest of the code
// relies on. Checked-in seeds live in testdata/fuzz/<target>/.

// checkOpenedEntry verifies the invariants of an entry OpenEntry accepted
// from data.
func checkOpenedEntry(t *testing.T, data []byte, s *SignedEntry) {
	t.Helper()
	e := &s.Entry
	if !bytes.Equal(s.Bytes(), data) {
		t.Fatal("Bytes() differ from the input")
	}
	env, err := record.UnmarshalEnvelope(data)
	if err != nil {
		t.Fatalf("accepted bytes are not an envelope: %v", err)
	}
	if !e.PeerID.MatchesPublicKey(env.PublicKey) {
		t.Fatal("accepted an entry not signed by its peer")
	}
	if env.PublicKey.Type() != crypto.Ed25519 {
		t.Fatalf("accepted a %v signer", env.PublicKey.Type())
	}
	if !isNormalized(e) {
		t.Fatalf("accepted entry is not normalized: %+v", *e)
	}
	if len(e.Addrs) > MaxAddrs || len(e.Tags) > MaxTags || len(e.Streams) > MaxStreams || len(e.Tickets) > MaxTickets || len(e.Groups) > MaxGroups || len(e.Protocol) > maxProtocolLen {
		t.Fatal("accepted entry exceeds a structural cap")
	}
	if e.Version.StartMS <= 0 || e.Version.UpdateMS < e.Version.StartMS {
		t.Fatalf("accepted an invalid version %v", e.Version)
	}
	for _, a := range e.Addrs {
		if len(a) == 0 {
			t.Fatal("accepted an empty multiaddr")
		}
		if _, err := ma.NewMultiaddrBytes(a.Bytes()); err != nil {
			t.Fatalf("accepted multiaddr does not re-parse: %v", err)
		}
	}
	// Decoding is a fixed point: re-encoding and decoding again gives the
	// same entry (less the skipped addresses, which re-encoding drops).
	again, err := entryFromPB(e.toPB())
	if err != nil {
		t.Fatalf("accepted entry does not re-decode: %v", err)
	}
	want := *e
	want.SkippedAddrs = 0
	if !sameContent(&again, &want) || again.Version != e.Version {
		t.Fatal("decode(encode(entry)) differs from entry")
	}
	// A second open gives the same result.
	s2, err := OpenEntry(data, 0)
	if err != nil || !sameContent(&s2.Entry, e) {
		t.Fatalf("second OpenEntry differs: %v", err)
	}
}

func checkRefusal(t *testing.T, what string, returned bool, err error) {
	t.Helper()
	if !IsRejected(err) {
		t.Fatalf("%s refused input with %v, which is not a rejection", what, err)
	}
	if returned {
		t.Fatalf("%s returned a value together with %v", what, err)
	}
}

// fuzzSeedEntries returns freshly sealed entries for f.Add: a minimal one and
// a full one.
func fuzzSeedEntries(f *testing.F) [][]byte {
	f.Helper()
	p := newTestPeer(f)
	minimal := p.seal(f, testNetwork, NewVersion(t0), nil)
	full := p.seal(f, testNetwork, NewVersion(t0), func(e *Entry) { *e = fullEntry(f, p, e.Version) })
	return [][]byte{minimal.Bytes(), full.Bytes()}
}

func FuzzOpenEntry(f *testing.F) {
	for _, b := range fuzzSeedEntries(f) {
		f.Add(b)
		f.Add(b[:len(b)/2])
		f.Add(b[:len(b)-1])
	}
	f.Add([]byte{})
	f.Add([]byte("\x0a\x24\x08\x01\x12\x20"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := OpenEntry(data, 0)
		if err != nil {
			checkRefusal(t, "OpenEntry", s != nil, err)
			return
		}
		checkOpenedEntry(t, data, s)
	})
}

// fuzzPayloadKey is a fixed ed25519 key for FuzzOpenEntryPayload, so that
// its corpus (payloads whose peer ID is this key's) stays meaningful across
// runs. A fixed key is fine here: nothing is secret in a fuzz test.
func fuzzPayloadKey(tb testing.TB) testPeer {
	tb.Helper()
	sk, _, err := crypto.GenerateEd25519Key(bytes.NewReader(bytes.Repeat([]byte{7}, 32)))
	if err != nil {
		tb.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(sk)
	if err != nil {
		tb.Fatal(err)
	}
	return testPeer{key: sk, id: id}
}

// FuzzOpenEntryPayload fuzzes the entry decoder behind the signature: the
// input is the payload, which the target signs correctly before opening.
// FuzzOpenEntry alone almost never gets past signature verification.
func FuzzOpenEntryPayload(f *testing.F) {
	p := fuzzPayloadKey(f)
	minimal := p.entry(testNetwork, NewVersion(t0))
	full := fullEntry(f, p, NewVersion(t0))
	f.Add(entryPayload(f, &minimal))
	f.Add(entryPayload(f, &full)) // not normalized: decoding must normalize it
	full.Normalize()
	f.Add(entryPayload(f, &full))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, payload []byte) {
		data := sealRaw(t, EntryDomain, EntryPayloadType, payload, p.key)
		s, err := OpenEntry(data, 0)
		if err != nil {
			checkRefusal(t, "OpenEntry", s != nil, err)
			if errors.Is(err, ErrBadSignature) || errors.Is(err, ErrWrongPayloadType) {
				t.Fatalf("a correctly signed entry was refused with %v", err)
			}
			return
		}
		if s.PeerID() != p.id {
			t.Fatalf("accepted an entry of %s signed by %s", s.PeerID(), p.id)
		}
		checkOpenedEntry(t, data, s)
	})
}

func FuzzOpenDeparture(f *testing.F) {
	p := newTestPeer(f)
	valid, err := SealDeparture(Departure{PeerID: p.id, Network: testNetwork, LastVersion: NewVersion(t0), Timestamp: t0}, p.key)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid)
	f.Add(valid[:len(valid)/2])
	f.Add([]byte{})
	f.Add(p.seal(f, testNetwork, NewVersion(t0), nil).Bytes()) // an entry, not a departure
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := OpenDeparture(data)
		if err != nil {
			checkRefusal(t, "OpenDeparture", d != nil, err)
			return
		}
		env, err := record.UnmarshalEnvelope(data)
		if err != nil {
			t.Fatalf("accepted bytes are not an envelope: %v", err)
		}
		if !d.PeerID.MatchesPublicKey(env.PublicKey) || env.PublicKey.Type() != crypto.Ed25519 {
			t.Fatal("accepted a departure not signed by its ed25519 peer")
		}
		if len(data) > MaxDepartureSize {
			t.Fatal("accepted an oversize departure")
		}
	})
}

// TestFuzzCorpus_Valid checks that the checked-in "valid" seeds still open,
// so the corpus keeps exercising the accept path after format changes.
func TestFuzzCorpus_Valid(t *testing.T) {
	open := map[string]func([]byte) error{
		"FuzzOpenEntry": func(b []byte) error {
			s, err := OpenEntry(b, 0)
			if err == nil && !isNormalized(&s.Entry) {
				err = errors.New("not normalized")
			}
			return err
		},
		"FuzzOpenDeparture": func(b []byte) error { _, err := OpenDeparture(b); return err },
	}
	for target, fn := range open {
		files, err := filepath.Glob(filepath.Join("testdata", "fuzz", target, "*"))
		if err != nil {
			t.Fatal(err)
		}
		valid := 0
		for _, name := range files {
			data := readCorpusFile(t, name)
			err := fn(data)
			switch isValid := strings.HasPrefix(filepath.Base(name), "valid"); {
			case isValid && err != nil:
				t.Errorf("%s: %v", name, err)
			case isValid:
				valid++
			case err == nil:
				t.Errorf("%s: a seed not named valid-* was accepted", name)
			}
		}
		if valid == 0 {
			t.Errorf("%s: no valid-* seed in testdata", target)
		}
	}
}

// readCorpusFile decodes a one-value []byte corpus file of `go test -fuzz`.
func readCorpusFile(t *testing.T, name string) []byte {
	t.Helper()
	raw, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	header, rest, ok := strings.Cut(string(raw), "\n")
	if !ok || header != "go test fuzz v1" {
		t.Fatalf("%s: bad header %q", name, header)
	}
	rest = strings.TrimSpace(rest)
	if !strings.HasPrefix(rest, "[]byte(") || !strings.HasSuffix(rest, ")") {
		t.Fatalf("%s: not a []byte value", name)
	}
	s, err := strconv.Unquote(rest[len("[]byte(") : len(rest)-1])
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return []byte(s)
}
