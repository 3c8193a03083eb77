package policy

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/mosaik-go/mosaik/catalog"
)

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

func TestJWTBuilder_Defaults(t *testing.T) {
	holder := newTestPeer(t)
	hs := mustSigningKey(t)(HS256SigningKey(testSecret[:]))
	tk, err := NewJWTBuilder(testNetwork, hs).Build(holder.id)
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
	want := map[string]any{"sub": holder.subject(t), JWTNetworkClaim: testNetwork.String(), JWTClassClaim: JWTClass.String()}
	if !maps.EqualFunc(claims, want, func(a, b any) bool { return a == b }) {
		t.Fatalf("default claims %v, want %v", claims, want)
	}
	// Without an expiry the default validator refuses it; it passes when
	// non-expiring tickets are allowed.
	v := NewJWT(testNetwork, hs.VerifyingKey())
	_, err = v.Validate(tk.Data, holder.id, t0)
	checkRejected(t, err, ErrTicketNoExpiry)
	if got, err := v.AllowNonExpiring().Validate(tk.Data, holder.id, t0); err != nil || !got.Equal(Never) {
		t.Fatalf("non-expiring: %v, %v", got, err)
	}
}

func TestJWTBuilder_Claims(t *testing.T) {
	holder := newTestPeer(t)
	hs := mustSigningKey(t)(HS256SigningKey(testSecret[:]))
	base := NewJWTBuilder(testNetwork, hs).Issuer(testIssuer).Claim("role", "admin")

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
		JWTNetworkClaim: testNetwork.String(), JWTClassClaim: catalog.IDFromString("custom").String(),
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
	if len(c) != 5 || c["iss"] != testIssuer || c["role"] != "admin" || c["sub"] != holder.subject(t) {
		t.Errorf("template changed: %v", c)
	}
	// Required claims compare by JSON value.
	tk, err = base.Claim("level", 3).ExpiresAt(t0.Add(time.Hour)).Build(holder.id)
	if err != nil {
		t.Fatal(err)
	}
	v := NewJWT(testNetwork, hs.VerifyingKey()).RequireClaim("level", 3.0).RequireClaim("role", "admin")
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
	if _, err := NewJWTBuilder(testNetwork, JWTSigningKey{}).Build(holder.id); err == nil {
		t.Error("built with the zero signing key")
	}
	hs := mustSigningKey(t)(HS256SigningKey(testSecret[:]))
	if _, err := NewJWTBuilder(testNetwork, hs).Claim("ch", make(chan int)).Build(holder.id); err == nil {
		t.Error("built with a non-JSON claim")
	}
	if _, err := NewJWTBuilder(testNetwork, hs).Claim("pad", strings.Repeat("x", MaxJWTSize)).Build(holder.id); err == nil {
		t.Error("built an oversize token")
	}
}

// TestJWTBuilder_Binding: a token is valid only in the network and class it
// was built for, and the refusal names the mismatch.
func TestJWTBuilder_Binding(t *testing.T) {
	holder := newTestPeer(t)
	hs := mustSigningKey(t)(HS256SigningKey(testSecret[:]))
	custom := catalog.IDFromString("custom-class")
	tk, err := NewJWTBuilder(testNetwork, hs).WithClass(custom).ExpiresIn(time.Hour, t0).Build(holder.id)
	if err != nil {
		t.Fatal(err)
	}
	v := NewJWT(testNetwork, hs.VerifyingKey()).WithClass(custom)
	if _, err := v.Validate(tk.Data, holder.id, t0); err != nil {
		t.Fatalf("own network and class: %v", err)
	}
	other := catalog.IDFromString("another-network")
	_, err = NewJWT(other, hs.VerifyingKey()).WithClass(custom).Validate(tk.Data, holder.id, t0)
	checkRejected(t, err, ErrWrongNetwork)
	if !strings.Contains(err.Error(), JWTNetworkClaim) || !strings.Contains(err.Error(), testNetwork.Short()) || !strings.Contains(err.Error(), other.Short()) {
		t.Errorf("the refusal does not name both networks: %v", err)
	}
	_, err = NewJWT(testNetwork, hs.VerifyingKey()).Validate(tk.Data, holder.id, t0)
	checkRejected(t, err, ErrWrongClass)
	if !strings.Contains(err.Error(), JWTClassClaim) {
		t.Errorf("the refusal does not name the class claim: %v", err)
	}
	// A ticket carried under another class in the entry is never offered to
	// the validator, and one moved under the validator's class still fails
	// on its claim.
	entry := &catalog.Entry{PeerID: holder.id, Tickets: []catalog.Ticket{{Class: JWTClass, Data: tk.Data}}}
	_, err = ValidateTicket(entry, NewJWT(testNetwork, hs.VerifyingKey()), t0)
	if !errors.Is(err, ErrNoValidTicket) || !errors.Is(err, ErrWrongClass) {
		t.Errorf("moved ticket: %v", err)
	}
	// A Claim cannot forge the binding: the builder's own values win.
	tk, err = NewJWTBuilder(testNetwork, hs).Claim(JWTNetworkClaim, other.String()).ExpiresIn(time.Hour, t0).Build(holder.id)
	if err != nil {
		t.Fatal(err)
	}
	if c := decodeClaims(t, tk.Data); c[JWTNetworkClaim] != testNetwork.String() {
		t.Errorf("network claim %v", c[JWTNetworkClaim])
	}
}
