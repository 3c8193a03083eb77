package policy

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/catalog"
)

// The mosaik ES256 test vector (tests/tickets/jwt.rs).
const (
	es256VectorPrivate    = "de01776891476ee7bcd6ee9d9824d1440c7ae0c095ad71ad75d3d11a96647b85"
	es256VectorCompressed = "0298a82ebe69ad57e0f7d5c2809a05188ff58572c5a5009015f26643f91e0d3236"
)

// allSentinels are the errors a validator may wrap.
var allSentinels = []error{
	ErrTicketMalformed, ErrTicketSignature, ErrUntrustedIssuer, ErrWrongSubject, ErrWrongNetwork,
	ErrWrongClass, ErrTicketNotYet, ErrTicketExpired, ErrTicketNoExpiry, ErrTicketTooLong,
	ErrTicketClaim, ErrTicketTooOld, ErrTicketAudience, ErrTicketAlgorithm, ErrTicketIssuerName,
}

// sentinelsOf lists the sentinels err wraps.
func sentinelsOf(err error) []error {
	var out []error
	for _, s := range allSentinels {
		if errors.Is(err, s) {
			out = append(out, s)
		}
	}
	return out
}

// checkRejected asserts that err wraps want and no other sentinel.
func checkRejected(t *testing.T, err, want error) {
	t.Helper()
	if err == nil {
		t.Fatalf("accepted, want %v", want)
	}
	if got := sentinelsOf(err); len(got) != 1 || got[0] != want {
		t.Fatalf("error %q wraps %v, want exactly %v", err, got, want)
	}
}

// compress returns the SEC1 compressed form of an uncompressed point.
func compress(uncompressed []byte) []byte {
	n := (len(uncompressed) - 1) / 2
	out := make([]byte, 1+n)
	out[0] = 2 | uncompressed[len(uncompressed)-1]&1
	copy(out[1:], uncompressed[1:1+n])
	return out
}

func compressECDSA(t *testing.T, pub *ecdsa.PublicKey) []byte {
	t.Helper()
	raw, err := pub.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return compress(raw)
}

func TestJWT_Validate(t *testing.T) {
	holder := newTestPeer(t)
	other := newTestPeer(t)
	sub := holder.subject(t)
	exp := t0.Add(time.Hour)
	hs256 := mustKey(t)(HS256Key(testSecret[:]))
	base := NewJWT(hs256).AllowIssuer(testIssuer)

	baseClaims := func() map[string]any {
		return map[string]any{"iss": testIssuer, "sub": sub, "exp": exp.Unix(), "iat": t0.Add(-time.Minute).Unix()}
	}
	secret384 := bytes.Repeat([]byte{7}, 48)

	cases := []struct {
		name   string
		v      func(*JWT) *JWT      // changes the base validator (nil: base)
		claims func(map[string]any) // changes the base claims, signed HS256 with testSecret
		token  func() string        // the whole token, instead of claims
		now    time.Time            // zero: t0
		want   error                // nil: accepted
		exp    time.Time            // the expiry when accepted (zero: exp)
		never  bool                 // accepted as non-expiring
	}{
		{name: "valid"},
		{name: "second allowed issuer", v: func(v *JWT) *JWT { return v.AllowIssuer("other") }, claims: func(c map[string]any) { c["iss"] = "other" }},
		{name: "no issuer check", v: func(*JWT) *JWT { return NewJWT(hs256) }, claims: func(c map[string]any) { delete(c, "iss") }},

		// Signature and algorithm.
		{name: "wrong algorithm", token: func() string { return hmacJWT(t, "HS384", secret384, baseClaims()) }, want: ErrTicketAlgorithm},
		{name: "wrong algorithm, same secret bytes as HS512", token: func() string {
			return hmacJWT(t, "HS512", append(testSecret[:], testSecret[:]...), baseClaims())
		}, want: ErrTicketAlgorithm},
		{name: "wrong key", token: func() string { return hmacJWT(t, "HS256", otherSecret[:], baseClaims()) }, want: ErrTicketSignature},
		{name: "alg none", token: func() string { return rawJWT(t, map[string]string{"alg": "none", "typ": "JWT"}, baseClaims(), nil) }, want: ErrTicketAlgorithm},
		{name: "alg none with a signature", token: func() string {
			return rawJWT(t, map[string]string{"alg": "none"}, baseClaims(), []byte("sig"))
		}, want: ErrTicketAlgorithm},
		{name: "alg None", token: func() string { return rawJWT(t, map[string]string{"alg": "None"}, baseClaims(), nil) }, want: ErrTicketAlgorithm},
		{name: "alg missing", token: func() string { return rawJWT(t, map[string]string{"typ": "JWT"}, baseClaims(), []byte("sig")) }, want: ErrTicketAlgorithm},
		{name: "alg not a string", token: func() string { return rawJWT(t, map[string]any{"alg": 256}, baseClaims(), []byte("sig")) }, want: ErrTicketAlgorithm},
		{name: "alg unknown", token: func() string { return rawJWT(t, map[string]string{"alg": "XS256"}, baseClaims(), []byte("sig")) }, want: ErrTicketAlgorithm},
		{name: "no keys", v: func(*JWT) *JWT { return NewJWT() }, want: ErrTicketAlgorithm},
		{name: "zero key", v: func(*JWT) *JWT { return NewJWT(JWTKey{}) }, want: ErrTicketAlgorithm},
		{name: "tampered claims", token: func() string {
			good := hmacJWT(t, "HS256", testSecret[:], baseClaims())
			parts := strings.Split(good, ".")
			c := baseClaims()
			c["exp"] = exp.Add(time.Hour).Unix()
			return parts[0] + "." + b64(mustJSON(t, c)) + "." + parts[2]
		}, want: ErrTicketSignature},
		{name: "signature truncated", token: func() string {
			parts := strings.Split(hmacJWT(t, "HS256", testSecret[:], baseClaims()), ".")
			sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
			return parts[0] + "." + parts[1] + "." + b64(sig[:len(sig)-1])
		}, want: ErrTicketSignature},
		{name: "signature not base64", token: func() string {
			return hmacJWT(t, "HS256", testSecret[:], baseClaims()) + "!"
		}, want: ErrTicketMalformed},

		// Malformed.
		{name: "empty", token: func() string { return "" }, want: ErrTicketMalformed},
		{name: "two segments", token: func() string { return "a.b" }, want: ErrTicketMalformed},
		{name: "four segments", token: func() string { return hmacJWT(t, "HS256", testSecret[:], baseClaims()) + ".x" }, want: ErrTicketMalformed},
		{name: "header not base64", token: func() string { return "!!.e30.e30" }, want: ErrTicketMalformed},
		{name: "header not JSON", token: func() string { return b64([]byte("alg")) + ".e30.e30" }, want: ErrTicketMalformed},
		{name: "padded base64", token: func() string {
			return base64.URLEncoding.EncodeToString([]byte(`{"alg":"HS256"} `)) + ".e30.e30"
		}, want: ErrTicketMalformed},
		{name: "not UTF-8", token: func() string { return "\xff\xfe.e30.e30" }, want: ErrTicketMalformed},
		{name: "oversize", token: func() string {
			c := baseClaims()
			c["pad"] = strings.Repeat("x", MaxJWTSize)
			return hmacJWT(t, "HS256", testSecret[:], c)
		}, want: ErrTicketMalformed},
		{name: "iss not a string", claims: func(c map[string]any) { c["iss"] = 1 }, want: ErrTicketMalformed},
		{name: "sub not a string", claims: func(c map[string]any) { c["sub"] = []string{sub} }, want: ErrTicketMalformed},
		{name: "exp a string", claims: func(c map[string]any) { c["exp"] = "tomorrow" }, want: ErrTicketMalformed},
		{name: "exp out of range", claims: func(c map[string]any) { c["exp"] = 1e300 }, want: ErrTicketMalformed},
		{name: "nbf null", claims: func(c map[string]any) { c["nbf"] = nil }, want: ErrTicketMalformed},
		{name: "aud a number", claims: func(c map[string]any) { c["aud"] = 5 }, want: ErrTicketMalformed},
		{name: "aud array of numbers", claims: func(c map[string]any) { c["aud"] = []int{5} }, want: ErrTicketMalformed},

		// 1. Issuer.
		{name: "issuer not allowed", claims: func(c map[string]any) { c["iss"] = "mallory" }, want: ErrTicketIssuerName},
		{name: "issuer missing", claims: func(c map[string]any) { delete(c, "iss") }, want: ErrTicketIssuerName},
		{name: "issuer differs in case", claims: func(c map[string]any) { c["iss"] = strings.ToUpper(testIssuer) }, want: ErrTicketIssuerName},

		// 2. Subject.
		{name: "subject of another peer", claims: func(c map[string]any) { c["sub"] = other.subject(t) }, want: ErrWrongSubject},
		{name: "subject missing", claims: func(c map[string]any) { delete(c, "sub") }, want: ErrWrongSubject},
		{name: "subject as base58 peer ID", claims: func(c map[string]any) { c["sub"] = holder.id.String() }, want: ErrWrongSubject},
		{name: "subject in upper case hex", claims: func(c map[string]any) { c["sub"] = strings.ToUpper(sub) }, want: ErrWrongSubject},
		{name: "required subject", v: func(v *JWT) *JWT { return v.RequireSubject("group:ops") }, claims: func(c map[string]any) { c["sub"] = "group:ops" }},
		{name: "required subject replaces the holder's", v: func(v *JWT) *JWT { return v.RequireSubject("group:ops") }, want: ErrWrongSubject},

		// 3. Not before.
		{name: "nbf in the future", claims: func(c map[string]any) { c["nbf"] = t0.Add(time.Second).Unix() }, want: ErrTicketNotYet},
		{name: "nbf now", claims: func(c map[string]any) { c["nbf"] = t0.Unix() }},
		{name: "nbf past", claims: func(c map[string]any) { c["nbf"] = t0.Add(-time.Hour).Unix() }},

		// 4. Expiry.
		{name: "exp missing", claims: func(c map[string]any) { delete(c, "exp") }, want: ErrTicketNoExpiry},
		{name: "exp missing, non-expiring allowed", v: func(v *JWT) *JWT { return v.AllowNonExpiring() }, claims: func(c map[string]any) { delete(c, "exp") }, never: true},
		{name: "exp now", claims: func(c map[string]any) { c["exp"] = t0.Unix() }, want: ErrTicketExpired},
		{name: "exp past", claims: func(c map[string]any) { c["exp"] = t0.Add(-time.Second).Unix() }, want: ErrTicketExpired},
		{name: "exp past, non-expiring allowed", v: func(v *JWT) *JWT { return v.AllowNonExpiring() }, claims: func(c map[string]any) { c["exp"] = t0.Unix() }, want: ErrTicketExpired},
		{name: "exp next second", claims: func(c map[string]any) { c["exp"] = t0.Add(time.Second).Unix() }, exp: t0.Add(time.Second)},
		{name: "whole seconds: now rounds down", claims: func(c map[string]any) { c["exp"] = t0.Add(time.Second).Unix() }, now: t0.Add(999 * time.Millisecond), exp: t0.Add(time.Second)},
		{name: "whole seconds: the next second", claims: func(c map[string]any) { c["exp"] = t0.Add(time.Second).Unix() }, now: t0.Add(time.Second), want: ErrTicketExpired},
		{name: "fractional exp", claims: func(c map[string]any) { c["exp"] = float64(t0.Unix()) + 0.5 }, exp: t0.Add(500 * time.Millisecond)},
		{name: "fractional exp against whole seconds", claims: func(c map[string]any) { c["exp"] = float64(t0.Unix()) + 0.5 }, now: t0.Add(700 * time.Millisecond), exp: t0.Add(500 * time.Millisecond)},

		// 5. Lifetime.
		{name: "lifetime too long", v: func(v *JWT) *JWT { return v.MaxLifetime(time.Hour) }, claims: func(c map[string]any) { c["exp"] = t0.Add(time.Hour + time.Second).Unix() }, want: ErrTicketTooLong},
		{name: "lifetime at the maximum", v: func(v *JWT) *JWT { return v.MaxLifetime(time.Hour) }},
		{name: "lifetime ignores non-expiring", v: func(v *JWT) *JWT { return v.MaxLifetime(time.Hour).AllowNonExpiring() }, claims: func(c map[string]any) { delete(c, "exp") }, never: true},
		{name: "lifetime limit removed", v: func(v *JWT) *JWT { return v.MaxLifetime(time.Minute).MaxLifetime(0) }},

		// 6. Age.
		{name: "age: iat missing", v: func(v *JWT) *JWT { return v.MaxAge(time.Hour) }, claims: func(c map[string]any) { delete(c, "iat") }, want: ErrTicketTooOld},
		{name: "age: too old", v: func(v *JWT) *JWT { return v.MaxAge(time.Hour) }, claims: func(c map[string]any) { c["iat"] = t0.Add(-time.Hour - time.Second).Unix() }, want: ErrTicketTooOld},
		{name: "age: at the maximum", v: func(v *JWT) *JWT { return v.MaxAge(time.Hour) }, claims: func(c map[string]any) { c["iat"] = t0.Add(-time.Hour).Unix() }},
		{name: "age: whole seconds", v: func(v *JWT) *JWT { return v.MaxAge(time.Hour) }, claims: func(c map[string]any) { c["iat"] = t0.Add(-time.Hour).Unix() }, now: t0.Add(999 * time.Millisecond)},
		{name: "lifetime: whole seconds", v: func(v *JWT) *JWT { return v.MaxLifetime(time.Hour) }, now: t0.Add(-time.Millisecond), want: ErrTicketTooLong},
		{name: "age: iat in the future", v: func(v *JWT) *JWT { return v.MaxAge(time.Hour) }, claims: func(c map[string]any) { c["iat"] = t0.Add(time.Hour).Unix() }},
		{name: "age unchecked without MaxAge", claims: func(c map[string]any) { delete(c, "iat") }},

		// 7. Audience.
		{name: "audience missing", v: withAudiences, want: ErrTicketAudience},
		{name: "audience not allowed", v: withAudiences, claims: func(c map[string]any) { c["aud"] = "aud-c" }, want: ErrTicketAudience},
		{name: "audience allowed", v: withAudiences, claims: func(c map[string]any) { c["aud"] = "aud-b" }},
		{name: "audience array with an allowed one", v: withAudiences, claims: func(c map[string]any) { c["aud"] = []string{"aud-c", "aud-a"} }},
		{name: "audience array without", v: withAudiences, claims: func(c map[string]any) { c["aud"] = []string{"aud-c", "aud-d"} }, want: ErrTicketAudience},
		{name: "audience empty array", v: withAudiences, claims: func(c map[string]any) { c["aud"] = []string{} }, want: ErrTicketAudience},
		{name: "audience unchecked when none allowed", claims: func(c map[string]any) { c["aud"] = "anything" }},

		// 8. Required claims.
		{name: "claim missing", v: withClaims, want: ErrTicketClaim},
		{name: "claim different", v: withClaims, claims: func(c map[string]any) { c["role"] = "user"; c["level"] = 3 }, want: ErrTicketClaim},
		{name: "claim different type", v: withClaims, claims: func(c map[string]any) { c["role"] = "admin"; c["level"] = "3" }, want: ErrTicketClaim},
		{name: "one of two claims missing", v: withClaims, claims: func(c map[string]any) { c["role"] = "admin" }, want: ErrTicketClaim},
		{name: "claims present", v: withClaims, claims: func(c map[string]any) { c["role"] = "admin"; c["level"] = 3 }},
		{name: "claims: numbers by value", v: withClaims, claims: func(c map[string]any) { c["role"] = "admin"; c["level"] = 3.0 }},
		{name: "claim object", v: func(v *JWT) *JWT {
			return v.RequireClaim("scope", map[string]any{"streams": []string{"a", "b"}, "rw": false})
		}, claims: func(c map[string]any) { c["scope"] = map[string]any{"rw": false, "streams": []string{"a", "b"}} }},
		{name: "claim object differs", v: func(v *JWT) *JWT {
			return v.RequireClaim("scope", map[string]any{"streams": []string{"a", "b"}})
		}, claims: func(c map[string]any) { c["scope"] = map[string]any{"streams": []string{"b", "a"}} }, want: ErrTicketClaim},
		{name: "claim null", v: func(v *JWT) *JWT { return v.RequireClaim("x", nil) }, claims: func(c map[string]any) { c["x"] = nil }},
		{name: "claim null missing", v: func(v *JWT) *JWT { return v.RequireClaim("x", nil) }, want: ErrTicketClaim},
		{name: "registered claim required", v: func(v *JWT) *JWT { return v.RequireClaim("jti", "t-1") }, claims: func(c map[string]any) { c["jti"] = "t-1" }},
		{name: "claim replaced by a later call", v: func(v *JWT) *JWT { return v.RequireClaim("role", "user").RequireClaim("role", "admin") }, claims: func(c map[string]any) { c["role"] = "admin" }},

		// Leeway: nbf and exp only.
		{name: "leeway: nbf at the edge", v: withLeeway, claims: func(c map[string]any) { c["nbf"] = t0.Add(5 * time.Second).Unix() }, exp: exp.Add(5 * time.Second)},
		{name: "leeway: nbf beyond", v: withLeeway, claims: func(c map[string]any) { c["nbf"] = t0.Add(6 * time.Second).Unix() }, want: ErrTicketNotYet},
		{name: "leeway: exp just past", v: withLeeway, claims: func(c map[string]any) { c["exp"] = t0.Add(-4 * time.Second).Unix() }, exp: t0.Add(time.Second)},
		{name: "leeway: exp at the edge", v: withLeeway, claims: func(c map[string]any) { c["exp"] = t0.Add(-5 * time.Second).Unix() }, want: ErrTicketExpired},
		{name: "leeway: not on lifetime", v: func(v *JWT) *JWT { return withLeeway(v).MaxLifetime(time.Hour) }, claims: func(c map[string]any) { c["exp"] = t0.Add(time.Hour + time.Second).Unix() }, want: ErrTicketTooLong},
		{name: "leeway: not on age", v: func(v *JWT) *JWT { return withLeeway(v).MaxAge(time.Hour) }, claims: func(c map[string]any) { c["iat"] = t0.Add(-time.Hour - time.Second).Unix() }, want: ErrTicketTooOld},

		// Order: the first failing check is reported.
		{name: "order: signature before issuer", token: func() string {
			c := baseClaims()
			c["iss"] = "mallory"
			return hmacJWT(t, "HS256", otherSecret[:], c)
		}, want: ErrTicketSignature},
		{name: "order: issuer before expiry", claims: func(c map[string]any) { c["iss"] = "mallory"; c["exp"] = t0.Add(-time.Hour).Unix() }, want: ErrTicketIssuerName},
		{name: "order: issuer before subject", claims: func(c map[string]any) { c["iss"] = "mallory"; c["sub"] = "x" }, want: ErrTicketIssuerName},
		{name: "order: subject before nbf", claims: func(c map[string]any) { c["sub"] = "x"; c["nbf"] = t0.Add(time.Hour).Unix() }, want: ErrWrongSubject},
		{name: "order: nbf before exp missing", claims: func(c map[string]any) { c["nbf"] = t0.Add(time.Minute).Unix(); delete(c, "exp") }, want: ErrTicketNotYet},
		{name: "order: nbf before expired", claims: func(c map[string]any) { c["nbf"] = t0.Add(time.Minute).Unix(); c["exp"] = t0.Unix() }, want: ErrTicketNotYet},
		{name: "order: expiry before age", v: func(v *JWT) *JWT { return v.MaxAge(time.Minute) }, claims: func(c map[string]any) { delete(c, "exp"); delete(c, "iat") }, want: ErrTicketNoExpiry},
		{name: "order: lifetime before age", v: func(v *JWT) *JWT { return v.MaxLifetime(time.Minute).MaxAge(time.Minute) }, claims: func(c map[string]any) { delete(c, "iat") }, want: ErrTicketTooLong},
		{name: "order: age before audience", v: func(v *JWT) *JWT { return withAudiences(v).MaxAge(time.Minute) }, claims: func(c map[string]any) { c["iat"] = t0.Add(-time.Hour).Unix() }, want: ErrTicketTooOld},
		{name: "order: audience before claims", v: func(v *JWT) *JWT { return withClaims(withAudiences(v)) }, want: ErrTicketAudience},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := base
			if tc.v != nil {
				v = tc.v(base)
			}
			var token string
			if tc.token != nil {
				token = tc.token()
			} else {
				c := baseClaims()
				if tc.claims != nil {
					tc.claims(c)
				}
				token = hmacJWT(t, "HS256", testSecret[:], c)
			}
			now := tc.now
			if now.IsZero() {
				now = t0
			}
			got, err := v.Validate([]byte(token), holder.id, now)
			if tc.want != nil {
				checkRejected(t, err, tc.want)
				if !got.IsZero() {
					t.Errorf("rejected with expiry %v, want the zero time", got)
				}
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

func withAudiences(v *JWT) *JWT { return v.AllowAudience("aud-a").AllowAudience("aud-b") }
func withClaims(v *JWT) *JWT    { return v.RequireClaim("role", "admin").RequireClaim("level", 3) }
func withLeeway(v *JWT) *JWT    { return v.Leeway(5 * time.Second) }

func TestJWT_OtherHolderRejected(t *testing.T) {
	holder, other := newTestPeer(t), newTestPeer(t)
	sk := mustSigningKey(t)(HS256SigningKey(testSecret[:]))
	tk, err := NewJWTBuilder(sk).ExpiresAt(t0.Add(time.Hour)).Build(holder.id)
	if err != nil {
		t.Fatal(err)
	}
	v := NewJWT(sk.VerifyingKey())
	if _, err := v.Validate(tk.Data, holder.id, t0); err != nil {
		t.Fatalf("holder: %v", err)
	}
	_, err = v.Validate(tk.Data, other.id, t0)
	checkRejected(t, err, ErrWrongSubject)
}

func TestJWT_HolderWithoutEd25519Key(t *testing.T) {
	sk, _, err := crypto.GenerateSecp256k1Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	holder := peerFromKey(t, sk)
	if _, err := Subject(holder.id); err == nil {
		t.Fatal("Subject of a secp256k1 peer succeeded")
	}
	hs := mustSigningKey(t)(HS256SigningKey(testSecret[:]))
	if _, err := NewJWTBuilder(hs).ExpiresAt(t0.Add(time.Hour)).Build(holder.id); err == nil {
		t.Fatal("built a ticket with a default subject for a secp256k1 peer")
	}
	tk, err := NewJWTBuilder(hs).Subject("svc").ExpiresAt(t0.Add(time.Hour)).Build(holder.id)
	if err != nil {
		t.Fatal(err)
	}
	_, err = NewJWT(hs.VerifyingKey()).Validate(tk.Data, holder.id, t0)
	checkRejected(t, err, ErrWrongSubject)
	if _, err := NewJWT(hs.VerifyingKey()).RequireSubject("svc").Validate(tk.Data, holder.id, t0); err != nil {
		t.Fatalf("with a required subject: %v", err)
	}
}

func TestSubject(t *testing.T) {
	p := newTestPeer(t)
	s, err := Subject(p.id)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := p.key.GetPublic().Raw()
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) != 32 || s != hex.EncodeToString(raw) || s != strings.ToLower(s) || len(s) != 64 {
		t.Fatalf("Subject = %q, want the lowercase hex of %x", s, raw)
	}
	if _, err := Subject(""); err == nil {
		t.Fatal("Subject of the empty ID succeeded")
	}
	// A hashed (non-identity) peer ID embeds no key.
	hashed, err := peer.Decode("QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Subject(hashed); err == nil {
		t.Fatal("Subject of a hashed peer ID succeeded")
	}
}

func TestJWT_KeyRotation(t *testing.T) {
	holder := newTestPeer(t)
	old := mustSigningKey(t)(HS256SigningKey(testSecret[:]))
	cur := mustSigningKey(t)(HS256SigningKey(otherSecret[:]))
	retiredSecret := catalog.HashID([]byte("retired"))
	retired := mustSigningKey(t)(HS256SigningKey(retiredSecret[:]))
	_, edPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ed := mustSigningKey(t)(EdDSASigningKey(edPriv))

	v := NewJWT(old.VerifyingKey()).AddKey(cur.VerifyingKey()).AddKey(ed.VerifyingKey())
	build := func(k JWTSigningKey) []byte {
		tk, err := NewJWTBuilder(k).ExpiresAt(t0.Add(time.Hour)).Build(holder.id)
		if err != nil {
			t.Fatal(err)
		}
		return tk.Data
	}
	for name, k := range map[string]JWTSigningKey{"old": old, "current": cur, "eddsa": ed} {
		if _, err := v.Validate(build(k), holder.id, t0); err != nil {
			t.Errorf("%s key: %v", name, err)
		}
	}
	_, err = v.Validate(build(retired), holder.id, t0)
	checkRejected(t, err, ErrTicketSignature)

	// AddKey returns a copy: the original validator still has one key.
	single := NewJWT(old.VerifyingKey())
	_ = single.AddKey(cur.VerifyingKey())
	_, err = single.Validate(build(cur), holder.id, t0)
	checkRejected(t, err, ErrTicketSignature)
}

func TestJWT_BuilderMethodsCopy(t *testing.T) {
	holder := newTestPeer(t)
	hs := mustSigningKey(t)(HS256SigningKey(testSecret[:]))
	tk, err := NewJWTBuilder(hs).Issuer(testIssuer).Audience("a").Claim("role", "admin").ExpiresAt(t0.Add(time.Hour)).Build(holder.id)
	if err != nil {
		t.Fatal(err)
	}
	base := NewJWT(hs.VerifyingKey())
	derived := []*JWT{
		base.AllowIssuer("someone-else"),
		base.AllowAudience("b"),
		base.RequireSubject("x"),
		base.RequireClaim("role", "user"),
		base.MaxLifetime(time.Minute),
		base.MaxAge(time.Nanosecond),
		base.WithClass(catalog.IDFromString("other")),
	}
	for i, d := range derived {
		if _, err := d.Validate(tk.Data, holder.id, t0); err == nil && i < len(derived)-1 {
			t.Errorf("derived validator %d accepted", i)
		}
	}
	if _, err := base.Validate(tk.Data, holder.id, t0); err != nil {
		t.Fatalf("the base validator changed: %v", err)
	}
	if base.Class() != JWTClass || derived[len(derived)-1].Class() != catalog.IDFromString("other") {
		t.Fatal("WithClass")
	}
	// Appending to a derived validator must not leak into a sibling.
	a := base.AllowIssuer("a")
	b := a.AllowIssuer("b")
	c := a.AllowIssuer("c")
	if len(b.issuers) != 2 || b.issuers[1] != "b" || c.issuers[1] != "c" {
		t.Fatalf("siblings share state: %q %q", b.issuers, c.issuers)
	}
	r1 := base.RequireClaim("m", 1).RequireClaim("z", 1)
	r2 := r1.RequireClaim("m", 2)
	if !jsonEqual(r1.claims[0].value, json.Number("1")) || !jsonEqual(r2.claims[0].value, json.Number("2")) {
		t.Fatalf("RequireClaim replaced a shared claim: %v %v", r1.claims, r2.claims)
	}
}

func TestJWT_RequireClaimPanicsOnNonJSON(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("no panic")
		}
	}()
	NewJWT().RequireClaim("ch", make(chan int))
}

func TestJWT_HMACKeyLengths(t *testing.T) {
	for _, tc := range []struct {
		name   string
		size   int
		verify func([]byte) (JWTKey, error)
		sign   func([]byte) (JWTSigningKey, error)
	}{
		{"HS256", 32, HS256Key, HS256SigningKey},
		{"HS384", 48, HS384Key, HS384SigningKey},
		{"HS512", 64, HS512Key, HS512SigningKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, n := range []int{0, 16, tc.size - 1, tc.size + 1, 2 * tc.size} {
				if _, err := tc.verify(make([]byte, n)); err == nil {
					t.Errorf("verifying key of %d bytes accepted", n)
				}
				if _, err := tc.sign(make([]byte, n)); err == nil {
					t.Errorf("signing key of %d bytes accepted", n)
				}
			}
			secret := bytes.Repeat([]byte{0x5a}, tc.size)
			k, err := tc.verify(secret)
			if err != nil || k.Algorithm() != tc.name {
				t.Fatalf("%d bytes: %v, alg %q", tc.size, err, k.Algorithm())
			}
			sk, err := tc.sign(secret)
			if err != nil || sk.Algorithm() != tc.name {
				t.Fatalf("signing key of %d bytes: %v", tc.size, err)
			}
			holder := newTestPeer(t)
			tk, err := NewJWTBuilder(sk).ExpiresAt(t0.Add(time.Minute)).Build(holder.id)
			if err != nil {
				t.Fatal(err)
			}
			// The keys copied the secret: changing the caller's slice
			// changes nothing.
			for i := range secret {
				secret[i] = 0
			}
			if _, err := NewJWT(k).Validate(tk.Data, holder.id, t0); err != nil {
				t.Fatalf("round trip: %v", err)
			}
			hdr := decodeHeader(t, tk.Data)
			if hdr != `{"alg":"`+tc.name+`","typ":"JWT"}` {
				t.Errorf("header %s", hdr)
			}
		})
	}
}

func decodeHeader(t *testing.T, token []byte) string {
	t.Helper()
	h, err := base64.RawURLEncoding.DecodeString(strings.Split(string(token), ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

func decodeClaims(t *testing.T, token []byte) map[string]any {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(strings.Split(string(token), ".")[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestJWT_ES256Vector checks key handling against mosaik's fixed P-256
// vector: the private scalar gives the compressed public key, and a ticket
// signed with the private key validates with the compressed key.
func TestJWT_ES256Vector(t *testing.T) {
	scalar, _ := hex.DecodeString(es256VectorPrivate)
	wantPub, _ := hex.DecodeString(es256VectorCompressed)

	// Derived independently with crypto/ecdh …
	ek, err := ecdh.P256().NewPrivateKey(scalar)
	if err != nil {
		t.Fatal(err)
	}
	if got := compress(ek.PublicKey().Bytes()); !bytes.Equal(got, wantPub) {
		t.Fatalf("ecdh: compressed public key %x, want %x", got, wantPub)
	}
	// … and with crypto/ecdsa, the path a signer takes.
	priv, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), scalar)
	if err != nil {
		t.Fatal(err)
	}
	if got := compressECDSA(t, &priv.PublicKey); !bytes.Equal(got, wantPub) {
		t.Fatalf("ecdsa: compressed public key %x, want %x", got, wantPub)
	}
	x, y := elliptic.UnmarshalCompressed(elliptic.P256(), wantPub)
	if x == nil || !bytes.Equal(elliptic.MarshalCompressed(elliptic.P256(), x, y), wantPub) {
		t.Fatal("the vector does not round-trip through crypto/elliptic")
	}

	sk := mustSigningKey(t)(ES256SigningKey(priv))
	if sk.Algorithm() != "ES256" {
		t.Fatalf("algorithm %q", sk.Algorithm())
	}
	holder := newTestPeer(t)
	network := catalog.IDFromString("mosaik.test.es256.stream.network")
	tk, err := NewJWTBuilder(sk).Issuer(testIssuer).Audience(network.String()).ExpiresAt(t0.Add(time.Hour)).Build(holder.id)
	if err != nil {
		t.Fatal(err)
	}
	if tk.Class != JWTClass {
		t.Fatalf("class %v", tk.Class)
	}
	if hdr := decodeHeader(t, tk.Data); hdr != `{"alg":"ES256","typ":"JWT"}` {
		t.Fatalf("header %s", hdr)
	}
	sig, err := base64.RawURLEncoding.DecodeString(strings.Split(string(tk.Data), ".")[2])
	if err != nil || len(sig) != 64 {
		t.Fatalf("signature is %d bytes (%v), want raw r‖s of 64", len(sig), err)
	}

	pub := mustKey(t)(ES256KeyFromCompressed(wantPub))
	v := NewJWT(pub).AllowIssuer(testIssuer).AllowAudience(network.String())
	got, err := v.Validate(tk.Data, holder.id, t0)
	if err != nil {
		t.Fatalf("validate with the compressed key: %v", err)
	}
	if !got.Equal(t0.Add(time.Hour)) {
		t.Fatalf("expiry %v", got)
	}
	if _, err := NewJWT(mustKey(t)(ES256Key(&priv.PublicKey))).Validate(tk.Data, holder.id, t0); err != nil {
		t.Fatalf("validate with the ecdsa key: %v", err)
	}
	// VerifyingKey is the same public key.
	if _, err := NewJWT(sk.VerifyingKey()).Validate(tk.Data, holder.id, t0); err != nil {
		t.Fatalf("validate with VerifyingKey: %v", err)
	}
	// Another P-256 key does not verify it.
	otherPriv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, err = NewJWT(mustKey(t)(ES256Key(&otherPriv.PublicKey))).Validate(tk.Data, holder.id, t0)
	checkRejected(t, err, ErrTicketSignature)
	// An HS256-only validator refuses the ES256 token by algorithm.
	_, err = NewJWT(mustKey(t)(HS256Key(testSecret[:]))).Validate(tk.Data, holder.id, t0)
	checkRejected(t, err, ErrTicketAlgorithm)
}

func TestJWT_ECDSAKeyErrors(t *testing.T) {
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	c256 := compressECDSA(t, &p256.PublicKey)
	c384 := compressECDSA(t, &p384.PublicKey)

	notOnCurve := bytes.Clone(c256)
	notOnCurve[0] = 0x05
	badX := append([]byte{0x02}, bytes.Repeat([]byte{0xff}, 32)...) // x ≥ p
	for name, f := range map[string]func() (JWTKey, error){
		"ES256 nil":                func() (JWTKey, error) { return ES256Key(nil) },
		"ES256 of a P-384 key":     func() (JWTKey, error) { return ES256Key(&p384.PublicKey) },
		"ES384 of a P-256 key":     func() (JWTKey, error) { return ES384Key(&p256.PublicKey) },
		"ES384 of a P-521 key":     func() (JWTKey, error) { return ES384Key(&p521.PublicKey) },
		"ES256 compressed 32":      func() (JWTKey, error) { return ES256KeyFromCompressed(c256[1:]) },
		"ES256 uncompressed":       func() (JWTKey, error) { raw, _ := p256.PublicKey.Bytes(); return ES256KeyFromCompressed(raw) },
		"ES256 from P-384 bytes":   func() (JWTKey, error) { return ES256KeyFromCompressed(c384) },
		"ES384 from P-256 bytes":   func() (JWTKey, error) { return ES384KeyFromCompressed(c256) },
		"ES256 bad prefix":         func() (JWTKey, error) { return ES256KeyFromCompressed(notOnCurve) },
		"ES256 x out of field":     func() (JWTKey, error) { return ES256KeyFromCompressed(badX) },
		"ES256 empty":              func() (JWTKey, error) { return ES256KeyFromCompressed(nil) },
		"EdDSA short":              func() (JWTKey, error) { return EdDSAKey(make([]byte, 31)) },
		"EdDSA of a private key":   func() (JWTKey, error) { return EdDSAKey(make([]byte, 64)) },
		"ES384 compressed 49 of 0": func() (JWTKey, error) { return ES384KeyFromCompressed(make([]byte, 49)) },
	} {
		if k, err := f(); err == nil {
			t.Errorf("%s: accepted (%s)", name, k.Algorithm())
		}
	}
	for name, f := range map[string]func() (JWTSigningKey, error){
		"ES256 nil":            func() (JWTSigningKey, error) { return ES256SigningKey(nil) },
		"ES256 of P-384":       func() (JWTSigningKey, error) { return ES256SigningKey(p384) },
		"ES384 of P-256":       func() (JWTSigningKey, error) { return ES384SigningKey(p256) },
		"EdDSA short":          func() (JWTSigningKey, error) { return EdDSASigningKey(make([]byte, 32)) },
		"EdDSA mismatched key": func() (JWTSigningKey, error) { return EdDSASigningKey(make([]byte, 64)) },
	} {
		if _, err := f(); err == nil {
			t.Errorf("signing key %s: accepted", name)
		}
	}
}

func TestJWT_ES384RoundTrip(t *testing.T) {
	priv, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sk := mustSigningKey(t)(ES384SigningKey(priv))
	holder := newTestPeer(t)
	tk, err := NewJWTBuilder(sk).ExpiresAt(t0.Add(time.Hour)).Build(holder.id)
	if err != nil {
		t.Fatal(err)
	}
	if hdr := decodeHeader(t, tk.Data); hdr != `{"alg":"ES384","typ":"JWT"}` {
		t.Fatalf("header %s", hdr)
	}
	c := compressECDSA(t, &priv.PublicKey)
	if len(c) != 49 {
		t.Fatalf("compressed P-384 key is %d bytes", len(c))
	}
	for name, k := range map[string]JWTKey{
		"ecdsa":      mustKey(t)(ES384Key(&priv.PublicKey)),
		"compressed": mustKey(t)(ES384KeyFromCompressed(c)),
		"verifying":  sk.VerifyingKey(),
	} {
		if k.Algorithm() != "ES384" {
			t.Errorf("%s: algorithm %q", name, k.Algorithm())
		}
		if got, err := NewJWT(k).Validate(tk.Data, holder.id, t0); err != nil || !got.Equal(t0.Add(time.Hour)) {
			t.Errorf("%s: %v, %v", name, got, err)
		}
	}
	// An ES256-only validator refuses it by algorithm.
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, err = NewJWT(mustKey(t)(ES256Key(&p256.PublicKey))).Validate(tk.Data, holder.id, t0)
	checkRejected(t, err, ErrTicketAlgorithm)
}

func TestJWT_EdDSARoundTrip(t *testing.T) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sk := mustSigningKey(t)(EdDSASigningKey(priv))
	holder := newTestPeer(t)
	tk, err := NewJWTBuilder(sk).Issuer(testIssuer).ExpiresIn(time.Hour, t0).Build(holder.id)
	if err != nil {
		t.Fatal(err)
	}
	if hdr := decodeHeader(t, tk.Data); hdr != `{"alg":"EdDSA","typ":"JWT"}` {
		t.Fatalf("header %s", hdr)
	}
	k := mustKey(t)(EdDSAKey(pub))
	if k.Algorithm() != "EdDSA" {
		t.Fatalf("algorithm %q", k.Algorithm())
	}
	v := NewJWT(k).AllowIssuer(testIssuer).MaxAge(time.Minute)
	if got, err := v.Validate(tk.Data, holder.id, t0.Add(30*time.Second)); err != nil || !got.Equal(t0.Add(time.Hour)) {
		t.Fatalf("validate: %v, %v", got, err)
	}
	_, err = v.Validate(tk.Data, holder.id, t0.Add(2*time.Minute))
	checkRejected(t, err, ErrTicketTooOld)
	otherPub, _, _ := ed25519.GenerateKey(rand.Reader)
	_, err = NewJWT(mustKey(t)(EdDSAKey(otherPub))).Validate(tk.Data, holder.id, t0)
	checkRejected(t, err, ErrTicketSignature)
}

func TestJWTBuilder_Defaults(t *testing.T) {
	holder := newTestPeer(t)
	hs := mustSigningKey(t)(HS256SigningKey(testSecret[:]))
	tk, err := NewJWTBuilder(hs).Build(holder.id)
	if err != nil {
		t.Fatal(err)
	}
	if tk.Class != JWTClass {
		t.Fatalf("class %v, want JWTClass", tk.Class)
	}
	if JWTClass != catalog.HashID([]byte("mosaik.tickets.jwt.v1")) {
		t.Fatal("JWTClass is not blake3(mosaik.tickets.jwt.v1)")
	}
	if hdr := decodeHeader(t, tk.Data); hdr != `{"alg":"HS256","typ":"JWT"}` {
		t.Fatalf("header %s", hdr)
	}
	claims := decodeClaims(t, tk.Data)
	if want := map[string]any{"sub": holder.subject(t)}; !maps.EqualFunc(claims, want, func(a, b any) bool { return a == b }) {
		t.Fatalf("default claims %v, want %v", claims, want)
	}
	// Without an expiry the default validator refuses it; it passes when
	// non-expiring tickets are allowed.
	v := NewJWT(hs.VerifyingKey())
	_, err = v.Validate(tk.Data, holder.id, t0)
	checkRejected(t, err, ErrTicketNoExpiry)
	if got, err := v.AllowNonExpiring().Validate(tk.Data, holder.id, t0); err != nil || !got.Equal(Never) {
		t.Fatalf("non-expiring: %v, %v", got, err)
	}
}

func TestJWTBuilder_Claims(t *testing.T) {
	holder := newTestPeer(t)
	hs := mustSigningKey(t)(HS256SigningKey(testSecret[:]))
	base := NewJWTBuilder(hs).Issuer(testIssuer).Claim("role", "admin")

	tk, err := base.Audience("a").Audience("b").
		ExpiresIn(time.Hour, t0.Add(500*time.Millisecond)).
		NotBefore(t0.Add(-time.Minute)).ID("t-1").
		Claim("level", 3).Claim("exp", "ignored").Claim("sub", "ignored").
		Subject("explicit").
		WithClass(catalog.IDFromString("custom")).
		Build(holder.id)
	if err != nil {
		t.Fatal(err)
	}
	if tk.Class != catalog.IDFromString("custom") {
		t.Fatal("WithClass ignored")
	}
	c := decodeClaims(t, tk.Data)
	want := map[string]string{
		"iss": testIssuer, "sub": "explicit", "role": "admin", "level": "3", "jti": "t-1",
		"exp": "1750003600", "iat": "1750000000", "nbf": "1749999940", // whole seconds
	}
	for k, w := range want {
		if got := c[k]; got == nil || toString(got) != w {
			t.Errorf("claim %s = %v, want %s", k, got, w)
		}
	}
	if aud, ok := c["aud"].([]any); !ok || len(aud) != 2 || aud[0] != "a" || aud[1] != "b" {
		t.Errorf("aud = %v, want [a b]", c["aud"])
	}
	if len(c) != len(want)+1 {
		t.Errorf("claims %v", c)
	}

	// One audience is a string; IssuedAt wins over ExpiresIn's default.
	tk, err = base.IssuedAt(t0.Add(-time.Hour)).ExpiresIn(time.Hour, t0).Audience("only").Build(holder.id)
	if err != nil {
		t.Fatal(err)
	}
	c = decodeClaims(t, tk.Data)
	if c["aud"] != "only" || toString(c["iat"]) != "1749996400" {
		t.Errorf("aud %v iat %v", c["aud"], c["iat"])
	}
	// A "sub" given with Claim is kept when Subject is not called.
	tk, err = base.Claim("sub", "from-claim").Build(holder.id)
	if err != nil {
		t.Fatal(err)
	}
	if c := decodeClaims(t, tk.Data); c["sub"] != "from-claim" {
		t.Errorf("sub %v", c["sub"])
	}
	// The template itself is unchanged.
	tk, err = base.Build(holder.id)
	if err != nil {
		t.Fatal(err)
	}
	c = decodeClaims(t, tk.Data)
	if len(c) != 3 || c["iss"] != testIssuer || c["role"] != "admin" || c["sub"] != holder.subject(t) {
		t.Errorf("template changed: %v", c)
	}
	// Required claims compare by JSON value.
	tk, err = base.Claim("level", 3).ExpiresAt(t0.Add(time.Hour)).Build(holder.id)
	if err != nil {
		t.Fatal(err)
	}
	v := NewJWT(hs.VerifyingKey()).RequireClaim("level", 3.0).RequireClaim("role", "admin")
	if _, err := v.Validate(tk.Data, holder.id, t0); err != nil {
		t.Fatalf("required claims: %v", err)
	}
}

func toString(v any) string {
	switch x := v.(type) {
	case json.Number:
		return x.String()
	case string:
		return x
	}
	return "?"
}

func TestJWTBuilder_Errors(t *testing.T) {
	holder := newTestPeer(t)
	if _, err := NewJWTBuilder(JWTSigningKey{}).Build(holder.id); err == nil {
		t.Error("built with the zero signing key")
	}
	hs := mustSigningKey(t)(HS256SigningKey(testSecret[:]))
	if _, err := NewJWTBuilder(hs).Claim("ch", make(chan int)).Build(holder.id); err == nil {
		t.Error("built with a non-JSON claim")
	}
	if _, err := NewJWTBuilder(hs).Claim("pad", strings.Repeat("x", MaxJWTSize)).Build(holder.id); err == nil {
		t.Error("built an oversize token")
	}
}

func TestJWT_WithValidateTicket(t *testing.T) {
	holder := newTestPeer(t)
	hs := mustSigningKey(t)(HS256SigningKey(testSecret[:]))
	build := func(b *JWTBuilder) catalog.Ticket {
		tk, err := b.Build(holder.id)
		if err != nil {
			t.Fatal(err)
		}
		return tk
	}
	b := NewJWTBuilder(hs)
	e := &catalog.Entry{PeerID: holder.id, Tickets: []catalog.Ticket{
		build(b.ExpiresAt(t0.Add(time.Hour))),
		build(b.ExpiresAt(t0.Add(3 * time.Hour))),
		build(b.ExpiresAt(t0.Add(-time.Hour))),
		build(b.ExpiresAt(t0.Add(5 * time.Hour)).WithClass(catalog.IDFromString("other"))),
	}}
	got, err := ValidateTicket(e, NewJWT(hs.VerifyingKey()), t0)
	if err != nil || !got.Equal(t0.Add(3*time.Hour)) {
		t.Fatalf("ValidateTicket = %v, %v; want the latest expiry", got, err)
	}
	got, err = ValidateTicket(e, NewJWT(hs.VerifyingKey()), t0.Add(4*time.Hour))
	if !errors.Is(err, ErrNoValidTicket) || !errors.Is(err, ErrTicketExpired) {
		t.Fatalf("all expired: %v, %v", got, err)
	}
}
