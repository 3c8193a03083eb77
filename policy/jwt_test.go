package policy

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mosaik-go/mosaik/catalog"
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

func TestJWT_Validate(t *testing.T) {
	holder := newTestPeer(t)
	other := newTestPeer(t)
	sub := holder.subject(t)
	exp := t0.Add(time.Hour)
	hs256 := mustKey(t)(HS256Key(testSecret[:]))
	base := NewJWT(testNetwork, hs256).AllowIssuer(testIssuer)

	baseClaims := func() map[string]any {
		return map[string]any{
			"iss": testIssuer, "sub": sub, "exp": exp.Unix(), "iat": t0.Add(-time.Minute).Unix(),
			JWTNetworkClaim: testNetwork.String(), JWTClassClaim: JWTClass.String(),
		}
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
		{name: "no issuer check", v: func(*JWT) *JWT { return NewJWT(testNetwork, hs256) }, claims: func(c map[string]any) { delete(c, "iss") }},

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
		{name: "no keys", v: func(*JWT) *JWT { return NewJWT(testNetwork) }, want: ErrTicketAlgorithm},
		{name: "zero key", v: func(*JWT) *JWT { return NewJWT(testNetwork, JWTKey{}) }, want: ErrTicketAlgorithm},
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
		{name: "fractional exp, past", claims: func(c map[string]any) { c["exp"] = float64(t0.Unix()) + 0.5 }, now: t0.Add(700 * time.Millisecond), want: ErrTicketExpired},
		{name: "fractional nbf, not yet", claims: func(c map[string]any) { c["nbf"] = float64(t0.Unix()) + 0.5 }, now: t0.Add(200 * time.Millisecond), want: ErrTicketNotYet},
		{name: "fractional nbf, passed", claims: func(c map[string]any) { c["nbf"] = float64(t0.Unix()) + 0.5 }, now: t0.Add(700 * time.Millisecond)},

		// 5. Lifetime.
		{name: "lifetime too long", v: func(v *JWT) *JWT { return v.MaxLifetime(time.Hour) }, claims: func(c map[string]any) { c["exp"] = t0.Add(time.Hour + time.Second).Unix() }, want: ErrTicketTooLong},
		{name: "lifetime at the maximum", v: func(v *JWT) *JWT { return v.MaxLifetime(time.Hour) }},
		{name: "lifetime ignores non-expiring", v: func(v *JWT) *JWT { return v.MaxLifetime(time.Hour).AllowNonExpiring() }, claims: func(c map[string]any) { delete(c, "exp") }, never: true},
		{name: "lifetime limit removed", v: func(v *JWT) *JWT { return v.MaxLifetime(time.Minute).MaxLifetime(0) }},

		// 6. Age.
		{name: "age: iat missing", v: func(v *JWT) *JWT { return v.MaxAge(time.Hour) }, claims: func(c map[string]any) { delete(c, "iat") }, want: ErrTicketTooOld},
		{name: "age: too old", v: func(v *JWT) *JWT { return v.MaxAge(time.Hour) }, claims: func(c map[string]any) { c["iat"] = t0.Add(-time.Hour - time.Second).Unix() }, want: ErrTicketTooOld},
		// With MaxAge the expiry is when the age runs out (the first whole
		// second past iat + MaxAge), if before exp: streams and the
		// catalog cut the ticket then, not at exp.
		{name: "age: at the maximum", v: func(v *JWT) *JWT { return v.MaxAge(time.Hour) }, claims: func(c map[string]any) { c["iat"] = t0.Add(-time.Hour).Unix() }, exp: t0.Add(time.Second)},
		{name: "age: whole seconds", v: func(v *JWT) *JWT { return v.MaxAge(time.Hour) }, claims: func(c map[string]any) { c["iat"] = t0.Add(-time.Hour).Unix() }, now: t0.Add(999 * time.Millisecond), exp: t0.Add(time.Second)},
		{name: "age: ends after exp", v: func(v *JWT) *JWT { return v.MaxAge(24 * time.Hour) }, claims: func(c map[string]any) { c["iat"] = t0.Unix() }},
		{name: "age: no exp", v: func(v *JWT) *JWT { return v.MaxAge(time.Hour).AllowNonExpiring() }, claims: func(c map[string]any) { c["iat"] = t0.Unix(); delete(c, "exp") }, exp: t0.Add(time.Hour + time.Second)},
		{name: "lifetime: whole seconds", v: func(v *JWT) *JWT { return v.MaxLifetime(time.Hour) }, now: t0.Add(-time.Millisecond), want: ErrTicketTooLong},
		{name: "iat in the future", claims: func(c map[string]any) { c["iat"] = t0.Add(2 * time.Second).Unix() }, want: ErrTicketNotYet},
		// The issuer's clock a little ahead: the whole second it wrote is
		// ahead of the verifier's now (iat's precision).
		{name: "iat a second ahead", claims: func(c map[string]any) { c["iat"] = t0.Add(time.Second).Unix() }, now: t0.Add(50 * time.Millisecond)},
		{name: "iat in the future with MaxAge", v: func(v *JWT) *JWT { return v.MaxAge(time.Hour) }, claims: func(c map[string]any) { c["iat"] = t0.Add(time.Hour).Unix() }, want: ErrTicketNotYet},
		{name: "iat now", claims: func(c map[string]any) { c["iat"] = t0.Unix() }, now: t0.Add(999 * time.Millisecond)},
		{name: "iat ahead within the leeway", v: withLeeway, claims: func(c map[string]any) { c["iat"] = t0.Add(5 * time.Second).Unix() }, exp: exp.Add(5 * time.Second)},
		{name: "iat ahead beyond the leeway", v: withLeeway, claims: func(c map[string]any) { c["iat"] = t0.Add(7 * time.Second).Unix() }, want: ErrTicketNotYet},
		{name: "iat not a date", claims: func(c map[string]any) { c["iat"] = "soon" }, want: ErrTicketMalformed},

		// Binding to the network and the class.
		{name: "other network", claims: func(c map[string]any) { c[JWTNetworkClaim] = catalog.IDFromString("other").String() }, want: ErrWrongNetwork},
		{name: "network by name", v: func(*JWT) *JWT { return NewJWT(catalog.IDFromString("by-name"), hs256).AllowIssuer(testIssuer) }, claims: func(c map[string]any) { c[JWTNetworkClaim] = "by-name" }},
		{name: "network claim missing", claims: func(c map[string]any) { delete(c, JWTNetworkClaim) }, want: ErrWrongNetwork},
		{name: "network claim not a string", claims: func(c map[string]any) { c[JWTNetworkClaim] = 7 }, want: ErrTicketMalformed},
		{name: "network claim empty", claims: func(c map[string]any) { c[JWTNetworkClaim] = "" }, want: ErrTicketMalformed},
		{name: "other class", claims: func(c map[string]any) { c[JWTClassClaim] = catalog.IDFromString("other").String() }, want: ErrWrongClass},
		{name: "validator of another class", v: func(v *JWT) *JWT { return v.WithClass(catalog.IDFromString("other")) }, want: ErrWrongClass},
		{name: "class claim missing", claims: func(c map[string]any) { delete(c, JWTClassClaim) }, want: ErrWrongClass},
		{name: "unbound refused", claims: unbind, want: ErrWrongNetwork},
		{name: "unbound accepted with AcceptUnbound", v: func(v *JWT) *JWT { return v.AcceptUnbound() }, claims: unbind},
		{name: "AcceptUnbound still checks the network", v: func(v *JWT) *JWT { return v.AcceptUnbound() }, claims: func(c map[string]any) {
			unbind(c)
			c[JWTNetworkClaim] = catalog.IDFromString("other").String()
		}, want: ErrWrongNetwork},
		{name: "AcceptUnbound still needs the class beside a network", v: func(v *JWT) *JWT { return v.AcceptUnbound() }, claims: func(c map[string]any) { delete(c, JWTClassClaim) }, want: ErrWrongClass},
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

func unbind(c map[string]any) { delete(c, JWTNetworkClaim); delete(c, JWTClassClaim) }

func withAudiences(v *JWT) *JWT { return v.AllowAudience("aud-a").AllowAudience("aud-b") }
func withClaims(v *JWT) *JWT    { return v.RequireClaim("role", "admin").RequireClaim("level", 3) }
func withLeeway(v *JWT) *JWT    { return v.Leeway(5 * time.Second) }

func TestJWT_OtherHolderRejected(t *testing.T) {
	holder, other := newTestPeer(t), newTestPeer(t)
	sk := mustSigningKey(t)(HS256SigningKey(testSecret[:]))
	tk, err := NewJWTBuilder(testNetwork, sk).ExpiresAt(t0.Add(time.Hour)).Build(holder.id)
	if err != nil {
		t.Fatal(err)
	}
	v := NewJWT(testNetwork, sk.VerifyingKey())
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
	if _, err := NewJWTBuilder(testNetwork, hs).ExpiresAt(t0.Add(time.Hour)).Build(holder.id); err == nil {
		t.Fatal("built a ticket with a default subject for a secp256k1 peer")
	}
	tk, err := NewJWTBuilder(testNetwork, hs).Subject("svc").ExpiresAt(t0.Add(time.Hour)).Build(holder.id)
	if err != nil {
		t.Fatal(err)
	}
	_, err = NewJWT(testNetwork, hs.VerifyingKey()).Validate(tk.Data, holder.id, t0)
	checkRejected(t, err, ErrWrongSubject)
	if _, err := NewJWT(testNetwork, hs.VerifyingKey()).RequireSubject("svc").Validate(tk.Data, holder.id, t0); err != nil {
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

	v := NewJWT(testNetwork, old.VerifyingKey()).AddKey(cur.VerifyingKey()).AddKey(ed.VerifyingKey())
	build := func(k JWTSigningKey) []byte {
		tk, err := NewJWTBuilder(testNetwork, k).ExpiresAt(t0.Add(time.Hour)).Build(holder.id)
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
	single := NewJWT(testNetwork, old.VerifyingKey())
	_ = single.AddKey(cur.VerifyingKey())
	_, err = single.Validate(build(cur), holder.id, t0)
	checkRejected(t, err, ErrTicketSignature)
}

func TestJWT_BuilderMethodsCopy(t *testing.T) {
	holder := newTestPeer(t)
	hs := mustSigningKey(t)(HS256SigningKey(testSecret[:]))
	tk, err := NewJWTBuilder(testNetwork, hs).Issuer(testIssuer).Audience("a").Claim("role", "admin").ExpiresAt(t0.Add(time.Hour)).Build(holder.id)
	if err != nil {
		t.Fatal(err)
	}
	base := NewJWT(testNetwork, hs.VerifyingKey())
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
	NewJWT(testNetwork).RequireClaim("ch", make(chan int))
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
	b := NewJWTBuilder(testNetwork, hs)
	e := &catalog.Entry{PeerID: holder.id, Tickets: []catalog.Ticket{
		build(b.ExpiresAt(t0.Add(time.Hour))),
		build(b.ExpiresAt(t0.Add(3 * time.Hour))),
		build(b.ExpiresAt(t0.Add(-time.Hour))),
		build(b.ExpiresAt(t0.Add(5 * time.Hour)).WithClass(catalog.IDFromString("other"))),
	}}
	got, err := ValidateTicket(e, NewJWT(testNetwork, hs.VerifyingKey()), t0)
	if err != nil || !got.Equal(t0.Add(3*time.Hour)) {
		t.Fatalf("ValidateTicket = %v, %v; want the latest expiry", got, err)
	}
	got, err = ValidateTicket(e, NewJWT(testNetwork, hs.VerifyingKey()), t0.Add(4*time.Hour))
	if !errors.Is(err, ErrNoValidTicket) || !errors.Is(err, ErrTicketExpired) {
		t.Fatalf("all expired: %v, %v", got, err)
	}
}
