package policy

import (
	"bytes"
	"crypto/rand"
	"errors"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/record"
	"google.golang.org/protobuf/proto"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/policy/pb"
)

// rawRecord lets a test seal an arbitrary payload under any domain and
// payload type, to build envelopes the package itself would never make.
type rawRecord struct {
	domain  string
	codec   []byte
	payload []byte
}

func (r *rawRecord) Domain() string                 { return r.domain }
func (r *rawRecord) Codec() []byte                  { return r.codec }
func (r *rawRecord) MarshalRecord() ([]byte, error) { return r.payload, nil }
func (r *rawRecord) UnmarshalRecord(b []byte) error { r.payload = b; return nil }

func sealRaw(t *testing.T, domain string, codec, payload []byte, sk crypto.PrivKey) []byte {
	t.Helper()
	env, err := record.Seal(&rawRecord{domain: domain, codec: codec, payload: payload}, sk)
	if err != nil {
		t.Fatal(err)
	}
	b, err := env.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func issue(t *testing.T, issuer testPeer, st SignedTicket) catalog.Ticket {
	t.Helper()
	tk, err := IssueSignedTicket(issuer.key, st)
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

func TestSignedTicket_RoundTrip(t *testing.T) {
	issuer, holder := newTestPeer(t), newTestPeer(t)
	st := SignedTicket{
		Subject: holder.id, Network: testNetwork,
		NotBefore: t0.Add(-time.Minute), Expires: t0.Add(time.Hour + 123*time.Millisecond),
		Claims: map[string]string{"role": "admin", "region": "eu"},
	}
	tk := issue(t, issuer, st)
	if tk.Class != SignedTicketClass {
		t.Fatalf("class %v, want SignedTicketClass", tk.Class)
	}
	if SignedTicketClass != catalog.IDFromString("mosaik.tickets.libp2p.v1") {
		t.Fatal("SignedTicketClass changed")
	}
	got, err := OpenSignedTicket(tk.Data)
	if err != nil {
		t.Fatal(err)
	}
	if got.Issuer != issuer.id || got.Subject != holder.id || got.Network != testNetwork || got.Class != SignedTicketClass ||
		!got.NotBefore.Equal(st.NotBefore) || !got.Expires.Equal(st.Expires) || !maps.Equal(got.Claims, st.Claims) {
		t.Fatalf("opened %+v, issued %+v", got, st)
	}
	v := NewSignedTicketValidator(testNetwork, issuer.id).RequireClaim("role", "admin")
	exp, err := v.Validate(tk.Data, holder.id, t0)
	if err != nil || !exp.Equal(st.Expires) {
		t.Fatalf("Validate = %v, %v", exp, err)
	}
	if v.Class() != SignedTicketClass {
		t.Fatal("default validator class")
	}
	// Through the entry, as streams use it.
	e := &catalog.Entry{PeerID: holder.id, Tickets: []catalog.Ticket{tk}}
	if exp, err := Require(v).Check(e, t0); err != nil || !exp.Equal(st.Expires) {
		t.Fatalf("Check = %v, %v", exp, err)
	}
}

func TestSignedTicket_IssuerKeyTypes(t *testing.T) {
	holder := newTestPeer(t)
	gen := map[string]func() (crypto.PrivKey, crypto.PubKey, error){
		"ed25519":   func() (crypto.PrivKey, crypto.PubKey, error) { return crypto.GenerateEd25519Key(rand.Reader) },
		"secp256k1": func() (crypto.PrivKey, crypto.PubKey, error) { return crypto.GenerateSecp256k1Key(rand.Reader) },
		"ecdsa":     func() (crypto.PrivKey, crypto.PubKey, error) { return crypto.GenerateECDSAKeyPair(rand.Reader) },
	}
	for name, g := range gen {
		sk, _, err := g()
		if err != nil {
			t.Fatal(err)
		}
		issuer := peerFromKey(t, sk)
		tk := issue(t, issuer, SignedTicket{Subject: holder.id, Network: testNetwork, Expires: t0.Add(time.Hour)})
		if _, err := NewSignedTicketValidator(testNetwork, issuer.id).Validate(tk.Data, holder.id, t0); err != nil {
			t.Errorf("%s issuer: %v", name, err)
		}
	}
	// RSA issuers are refused (slow verification, large keys).
	sk, _, err := crypto.GenerateRSAKeyPair(2048, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	issuer := peerFromKey(t, sk)
	tk := issue(t, issuer, SignedTicket{Subject: holder.id, Network: testNetwork, Expires: t0.Add(time.Hour)})
	_, err = NewSignedTicketValidator(testNetwork, issuer.id).Validate(tk.Data, holder.id, t0)
	checkRejected(t, err, ErrTicketSignature)
}

func TestSignedTicketValidator_Validate(t *testing.T) {
	issuer, holder, mallory, other := newTestPeer(t), newTestPeer(t), newTestPeer(t), newTestPeer(t)
	otherNetwork := catalog.IDFromString("mosaik-go/another-network")
	customClass := catalog.IDFromString("my.tickets")
	exp := t0.Add(time.Hour)
	base := NewSignedTicketValidator(testNetwork, issuer.id)

	cases := []struct {
		name   string
		v      func(*SignedTicketValidator) *SignedTicketValidator
		issuer testPeer               // zero: issuer
		st     func(*SignedTicket)    // changes the base ticket
		data   func(tk []byte) []byte // changes the sealed bytes
		now    time.Time              // zero: t0
		want   error
		exp    time.Time // zero: exp
		never  bool
	}{
		{name: "valid"},
		{name: "second trusted issuer", v: func(*SignedTicketValidator) *SignedTicketValidator {
			return NewSignedTicketValidator(testNetwork, mallory.id, issuer.id)
		}},
		{name: "forged by an untrusted key", issuer: mallory, want: ErrUntrustedIssuer},
		{name: "no trusted issuers", v: func(*SignedTicketValidator) *SignedTicketValidator { return NewSignedTicketValidator(testNetwork) }, want: ErrUntrustedIssuer},
		{name: "issued to another subject", st: func(s *SignedTicket) { s.Subject = other.id }, want: ErrWrongSubject},
		{name: "issued for another network", st: func(s *SignedTicket) { s.Network = otherNetwork }, want: ErrWrongNetwork},
		{name: "of another class", st: func(s *SignedTicket) { s.Class = customClass }, want: ErrWrongClass},
		{name: "custom class", v: func(v *SignedTicketValidator) *SignedTicketValidator { return v.WithClass(customClass) }, st: func(s *SignedTicket) { s.Class = customClass }},
		{name: "not yet valid", st: func(s *SignedTicket) { s.NotBefore = t0.Add(time.Millisecond) }, want: ErrTicketNotYet},
		{name: "valid from now", st: func(s *SignedTicket) { s.NotBefore = t0 }},
		{name: "expired", st: func(s *SignedTicket) { s.Expires = t0 }, want: ErrTicketExpired},
		{name: "expired long ago", st: func(s *SignedTicket) { s.Expires = t0.Add(-time.Hour) }, want: ErrTicketExpired},
		{name: "expires in a millisecond", st: func(s *SignedTicket) { s.Expires = t0.Add(time.Millisecond) }, exp: t0.Add(time.Millisecond)},
		{name: "non-expiring refused", st: func(s *SignedTicket) { s.Expires = time.Time{} }, want: ErrTicketNoExpiry},
		{name: "non-expiring allowed", v: func(v *SignedTicketValidator) *SignedTicketValidator { return v.AllowNonExpiring() }, st: func(s *SignedTicket) { s.Expires = time.Time{} }, never: true},
		{name: "claim missing", v: func(v *SignedTicketValidator) *SignedTicketValidator { return v.RequireClaim("role", "admin") }, want: ErrTicketClaim},
		{name: "claim different", v: func(v *SignedTicketValidator) *SignedTicketValidator { return v.RequireClaim("role", "admin") }, st: func(s *SignedTicket) { s.Claims = map[string]string{"role": "user"} }, want: ErrTicketClaim},
		{name: "claims present", v: func(v *SignedTicketValidator) *SignedTicketValidator {
			return v.RequireClaim("role", "admin").RequireClaim("region", "")
		}, st: func(s *SignedTicket) { s.Claims = map[string]string{"role": "admin", "region": "", "extra": "x"} }},
		{name: "empty claim value must be present", v: func(v *SignedTicketValidator) *SignedTicketValidator { return v.RequireClaim("region", "") }, want: ErrTicketClaim},
		{name: "leeway: not-before at the edge", v: withSignedLeeway, st: func(s *SignedTicket) { s.NotBefore = t0.Add(5 * time.Second) }, exp: exp.Add(5 * time.Second)},
		{name: "leeway: not-before beyond", v: withSignedLeeway, st: func(s *SignedTicket) { s.NotBefore = t0.Add(5*time.Second + time.Millisecond) }, want: ErrTicketNotYet},
		{name: "leeway: just expired", v: withSignedLeeway, st: func(s *SignedTicket) { s.Expires = t0.Add(-5*time.Second + time.Millisecond) }, exp: t0.Add(time.Millisecond)},
		{name: "leeway: expired at the edge", v: withSignedLeeway, st: func(s *SignedTicket) { s.Expires = t0.Add(-5 * time.Second) }, want: ErrTicketExpired},
		{name: "oversize", data: func([]byte) []byte { return make([]byte, MaxSignedTicketSize+1) }, want: ErrTicketMalformed},
		{name: "garbage", data: func([]byte) []byte { return []byte("not an envelope") }, want: ErrTicketMalformed},
		{name: "empty", data: func([]byte) []byte { return nil }, want: ErrTicketMalformed},
		{name: "truncated", data: func(b []byte) []byte { return b[:len(b)/2] }, want: ErrTicketMalformed},
		{name: "order: issuer before subject and expiry", issuer: mallory, st: func(s *SignedTicket) { s.Subject = other.id; s.Expires = t0 }, want: ErrUntrustedIssuer},
		{name: "order: network before subject", st: func(s *SignedTicket) { s.Network = otherNetwork; s.Subject = other.id }, want: ErrWrongNetwork},
		{name: "order: subject before time", st: func(s *SignedTicket) { s.Subject = other.id; s.Expires = t0 }, want: ErrWrongSubject},
		{name: "order: not-before before expiry", st: func(s *SignedTicket) { s.NotBefore = t0.Add(time.Hour); s.Expires = t0 }, want: ErrTicketNotYet},
		{name: "order: expiry before claims", v: func(v *SignedTicketValidator) *SignedTicketValidator { return v.RequireClaim("a", "b") }, st: func(s *SignedTicket) { s.Expires = t0 }, want: ErrTicketExpired},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := base
			if tc.v != nil {
				v = tc.v(base)
			}
			iss := tc.issuer
			if iss.key == nil {
				iss = issuer
			}
			st := SignedTicket{Subject: holder.id, Network: testNetwork, Expires: exp}
			if tc.st != nil {
				tc.st(&st)
			}
			data := issue(t, iss, st).Data
			if tc.data != nil {
				data = tc.data(data)
			}
			now := tc.now
			if now.IsZero() {
				now = t0
			}
			got, err := v.Validate(data, holder.id, now)
			if tc.want != nil {
				checkRejected(t, err, tc.want)
				return
			}
			if err != nil {
				t.Fatalf("rejected: %v", err)
			}
			want := tc.exp
			switch {
			case tc.never:
				want = Never
			case want.IsZero():
				want = exp
			}
			if !got.Equal(want) {
				t.Errorf("expiry %v, want %v", got, want)
			}
		})
	}
}

func withSignedLeeway(v *SignedTicketValidator) *SignedTicketValidator {
	return v.WithLeeway(5 * time.Second)
}

// TestOpenSignedTicket_Tampered flips every byte of a sealed ticket in
// turn: each change must be refused as a bad signature or as malformed.
func TestOpenSignedTicket_Tampered(t *testing.T) {
	issuer, holder := newTestPeer(t), newTestPeer(t)
	tk := issue(t, issuer, SignedTicket{Subject: holder.id, Network: testNetwork, Expires: t0.Add(time.Hour), Claims: map[string]string{"k": "v"}})
	for i := range tk.Data {
		for _, mask := range []byte{0x01, 0x80, 0xff} {
			data := bytes.Clone(tk.Data)
			data[i] ^= mask
			_, err := OpenSignedTicket(data)
			if err == nil {
				t.Fatalf("byte %d ^ %#x: accepted", i, mask)
			}
			if got := sentinelsOf(err); len(got) != 1 || (got[0] != ErrTicketSignature && got[0] != ErrTicketMalformed) {
				t.Fatalf("byte %d ^ %#x: %v wraps %v", i, mask, err, got)
			}
		}
	}
}

func TestOpenSignedTicket_Refusals(t *testing.T) {
	issuer, holder := newTestPeer(t), newTestPeer(t)
	good := &pb.SignedTicket{Subject: []byte(holder.id), Network: testNetwork[:], Class: SignedTicketClass[:], ExpiresMs: t0.Add(time.Hour).UnixMilli()}
	payload := func(mut func(*pb.SignedTicket)) []byte {
		m := proto.Clone(good).(*pb.SignedTicket)
		if mut != nil {
			mut(m)
		}
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if _, err := OpenSignedTicket(sealRaw(t, SignedTicketDomain, SignedTicketPayloadType, payload(nil), issuer.key)); err != nil {
		t.Fatalf("hand-sealed ticket: %v", err)
	}
	for _, tc := range []struct {
		name string
		data []byte
		want error
	}{
		{"another domain", sealRaw(t, "mosaik-catalog-entry", SignedTicketPayloadType, payload(nil), issuer.key), ErrTicketSignature},
		{"another payload type", sealRaw(t, SignedTicketDomain, []byte("/mosaik/catalog/entry/1"), payload(nil), issuer.key), ErrTicketMalformed},
		{"payload not protobuf", sealRaw(t, SignedTicketDomain, SignedTicketPayloadType, []byte{0xff, 0xff, 0xff}, issuer.key), ErrTicketMalformed},
		{"no subject", sealRaw(t, SignedTicketDomain, SignedTicketPayloadType, payload(func(m *pb.SignedTicket) { m.Subject = nil }), issuer.key), ErrTicketMalformed},
		{"bad subject", sealRaw(t, SignedTicketDomain, SignedTicketPayloadType, payload(func(m *pb.SignedTicket) { m.Subject = []byte("x") }), issuer.key), ErrTicketMalformed},
		{"short network", sealRaw(t, SignedTicketDomain, SignedTicketPayloadType, payload(func(m *pb.SignedTicket) { m.Network = m.Network[:31] }), issuer.key), ErrTicketMalformed},
		{"long class", sealRaw(t, SignedTicketDomain, SignedTicketPayloadType, payload(func(m *pb.SignedTicket) { m.Class = append(m.Class, 0) }), issuer.key), ErrTicketMalformed},
		{"oversize", bytes.Repeat([]byte{0}, MaxSignedTicketSize+1), ErrTicketMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := OpenSignedTicket(tc.data)
			checkRejected(t, err, tc.want)
		})
	}
}

// TestOpenSignedTicket_OversizeBeforeDecoding: a ticket over the cap is
// refused by its length alone, even when it is a perfectly valid envelope.
func TestOpenSignedTicket_OversizeBeforeDecoding(t *testing.T) {
	issuer, holder := newTestPeer(t), newTestPeer(t)
	m := &pb.SignedTicket{
		Subject: []byte(holder.id), Network: testNetwork[:], Class: SignedTicketClass[:],
		ExpiresMs: t0.Add(time.Hour).UnixMilli(), Claims: map[string]string{"pad": strings.Repeat("x", MaxSignedTicketSize)},
	}
	p, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	data := sealRaw(t, SignedTicketDomain, SignedTicketPayloadType, p, issuer.key)
	_, err = OpenSignedTicket(data)
	checkRejected(t, err, ErrTicketMalformed)
	if !strings.Contains(err.Error(), "bytes >") {
		t.Fatalf("refused for another reason: %v", err)
	}
	// Issuing refuses such a ticket too.
	if _, err := IssueSignedTicket(issuer.key, SignedTicket{Subject: holder.id, Network: testNetwork, Claims: m.Claims}); err == nil {
		t.Fatal("issued an oversize ticket")
	}
}

func TestIssueSignedTicket_Errors(t *testing.T) {
	issuer, holder := newTestPeer(t), newTestPeer(t)
	for name, st := range map[string]SignedTicket{
		"no subject": {Network: testNetwork, Expires: t0},
		// 0 ms means "unset" on the wire: these would turn into a ticket
		// valid from issue, or one that never expires.
		"expiry at the epoch":      {Subject: holder.id, Expires: time.UnixMilli(0)},
		"expiry within 1 ms of it": {Subject: holder.id, Expires: time.Unix(0, 999_999)},
		"not-before at the epoch":  {Subject: holder.id, NotBefore: time.Unix(0, 0), Expires: t0},
	} {
		if _, err := IssueSignedTicket(issuer.key, st); err == nil {
			t.Errorf("%s: issued", name)
		}
	}
	// Times before the epoch are fine.
	tk := issue(t, issuer, SignedTicket{Subject: holder.id, Expires: time.UnixMilli(-1)})
	got, err := OpenSignedTicket(tk.Data)
	if err != nil || !got.Expires.Equal(time.UnixMilli(-1)) {
		t.Fatalf("pre-epoch expiry: %v, %v", got, err)
	}
	_, err = NewSignedTicketValidator(catalog.NetworkID{}, issuer.id).Validate(tk.Data, holder.id, t0)
	checkRejected(t, err, ErrTicketExpired)
}

func TestSignedTicketValidator_BuilderCopies(t *testing.T) {
	issuer, holder := newTestPeer(t), newTestPeer(t)
	tk := issue(t, issuer, SignedTicket{Subject: holder.id, Network: testNetwork, Expires: t0.Add(time.Hour), Claims: map[string]string{"a": "1"}})
	base := NewSignedTicketValidator(testNetwork, issuer.id).RequireClaim("a", "1")
	stricter := base.RequireClaim("b", "2")
	if _, err := stricter.Validate(tk.Data, holder.id, t0); !errors.Is(err, ErrTicketClaim) {
		t.Fatalf("stricter: %v", err)
	}
	if _, err := base.Validate(tk.Data, holder.id, t0); err != nil {
		t.Fatalf("RequireClaim changed the original: %v", err)
	}
	// The issuer list is copied.
	trusted := []peer.ID{issuer.id}
	v := NewSignedTicketValidator(testNetwork, trusted...)
	trusted[0] = holder.id
	if _, err := v.Validate(tk.Data, holder.id, t0); err != nil {
		t.Fatalf("changing the caller's issuer slice changed the validator: %v", err)
	}
}
