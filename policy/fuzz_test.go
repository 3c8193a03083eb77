package policy

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"encoding/hex"
	"strings"
	"testing"
	"time"
)

// The fuzz targets feed arbitrary bytes to the ticket decoders: they must
// never panic, every refusal must wrap a policy sentinel, and what they
// accept must satisfy the validator's promises. Keys are deterministic so
// that the seeds verify in every fuzz worker process.

func fuzzJWTSetup(f *testing.F) (*JWT, testPeer, []JWTSigningKey) {
	f.Helper()
	holder := seededPeer(f, 1)
	hs := mustSigningKey(f)(HS256SigningKey(testSecret[:]))
	scalar, _ := hex.DecodeString(es256VectorPrivate)
	priv, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), scalar)
	if err != nil {
		f.Fatal(err)
	}
	es := mustSigningKey(f)(ES256SigningKey(priv))
	seed := make([]byte, ed25519.SeedSize)
	ed := mustSigningKey(f)(EdDSASigningKey(ed25519.NewKeyFromSeed(seed)))
	v := NewJWT(testNetwork, hs.VerifyingKey(), es.VerifyingKey(), ed.VerifyingKey()).
		AllowNonExpiring().AllowAudience("aud").RequireClaim("role", "admin")
	return v, holder, []JWTSigningKey{hs, es, ed}
}

func FuzzJWTValidate(f *testing.F) {
	v, holder, keys := fuzzJWTSetup(f)
	for _, k := range keys {
		b := NewJWTBuilder(testNetwork, k).Audience("aud").Claim("role", "admin")
		for _, bb := range []*JWTBuilder{
			b,
			b.ExpiresIn(time.Hour, t0),
			b.ExpiresAt(t0.Add(-time.Hour)).NotBefore(t0.Add(time.Hour)),
			b.Issuer(testIssuer).Audience("other").Claim("n", []any{1, 2.5, map[string]any{"x": nil}}),
		} {
			tk, err := bb.Build(holder.id)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(tk.Data)
		}
	}
	f.Add([]byte(rawJWT(f, map[string]string{"alg": "none", "typ": "JWT"}, map[string]any{"sub": holder.subject(f)}, nil)))
	f.Add([]byte(hmacJWT(f, "HS256", testSecret[:], map[string]any{"sub": holder.subject(f), "exp": 1e300, "aud": []any{"aud", 3}})))
	f.Add([]byte(hmacJWT(f, "HS256", testSecret[:], map[string]any{"sub": holder.subject(f), "exp": "x", "role": "admin"})))
	for _, s := range []string{"", ".", "..", "...", "e30.e30.e30", "eyJhbGciOiJIUzI1NiJ9..", strings.Repeat("a", MaxJWTSize+1), "\xff.\xfe.\xfd"} {
		f.Add([]byte(s))
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		exp, err := v.Validate(data, holder.id, t0)
		if err != nil {
			if len(sentinelsOf(err)) == 0 {
				t.Fatalf("refusal wraps no policy sentinel: %v", err)
			}
			if !exp.IsZero() {
				t.Fatalf("refused with an expiry %v", exp)
			}
			return
		}
		if len(data) > MaxJWTSize {
			t.Fatalf("accepted %d bytes", len(data))
		}
		if !exp.Equal(Never) && !exp.After(t0) {
			t.Fatalf("accepted a token expiring at %v, not after now", exp)
		}
		// What validated once validates again (the validator is pure).
		if again, err := v.Validate(data, holder.id, t0); err != nil || !again.Equal(exp) {
			t.Fatalf("second validation: %v, %v", again, err)
		}
	})
}

func FuzzOpenSignedTicket(f *testing.F) {
	issuer, holder := seededPeer(f, 2), seededPeer(f, 1)
	base := NewSignedTicketValidator(testNetwork, issuer.id).AllowNonExpiring().RequireClaim("role", "admin")
	for _, st := range []SignedTicket{
		{Subject: holder.id, Network: testNetwork, Expires: t0.Add(time.Hour), Claims: map[string]string{"role": "admin"}},
		{Subject: holder.id, Network: testNetwork, Claims: map[string]string{"role": "admin", "x": ""}},
		{Subject: holder.id, Network: testNetwork, NotBefore: t0.Add(time.Hour), Expires: t0.Add(2 * time.Hour)},
		{Subject: issuer.id, Class: JWTClass},
	} {
		tk, err := IssueSignedTicket(issuer.key, st)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(tk.Data)
		f.Add(tk.Data[:len(tk.Data)/2])
	}
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0x00})
	f.Add(make([]byte, MaxSignedTicketSize+1))

	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := OpenSignedTicket(data)
		if err != nil {
			if len(sentinelsOf(err)) == 0 {
				t.Fatalf("refusal wraps no policy sentinel: %v", err)
			}
		} else {
			if len(data) > MaxSignedTicketSize {
				t.Fatalf("opened %d bytes", len(data))
			}
			if st.Issuer == "" || st.Subject == "" {
				t.Fatalf("opened a ticket without issuer or subject: %+v", st)
			}
			if err := st.Subject.Validate(); err != nil {
				t.Fatalf("opened an invalid subject: %v", err)
			}
		}
		// A fresh cache per input keeps the target stateless (coverage must
		// not depend on earlier inputs); the second call is answered from
		// the cache and must agree with the first and with no cache at all.
		v := base.WithCacheSize(4)
		exp, err := v.Validate(data, holder.id, t0)
		for _, again := range []*SignedTicketValidator{v, base.WithCacheSize(0)} {
			exp2, err2 := again.Validate(data, holder.id, t0)
			if !exp2.Equal(exp) || (err2 == nil) != (err == nil) || (err != nil && err.Error() != err2.Error()) {
				t.Fatalf("cached and fresh verdicts differ: %v, %v and %v, %v", exp, err, exp2, err2)
			}
		}
		if err != nil {
			if len(sentinelsOf(err)) == 0 {
				t.Fatalf("refusal wraps no policy sentinel: %v", err)
			}
			return
		}
		if st == nil || st.Issuer != issuer.id || st.Subject != holder.id || st.Network != testNetwork {
			t.Fatalf("validated a ticket OpenSignedTicket did not vouch for: %+v", st)
		}
		if !exp.Equal(Never) && !exp.After(t0) {
			t.Fatalf("accepted a ticket expiring at %v", exp)
		}
	})
}
