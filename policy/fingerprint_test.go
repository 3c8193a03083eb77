package policy

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"

	"github.com/mosaik-go/mosaik/catalog"
)

// distinctFingerprints fails when two of the named fingerprints are equal.
func distinctFingerprints(t *testing.T, fps map[string][32]byte) {
	t.Helper()
	seen := map[[32]byte]string{}
	for name, fp := range fps {
		if prev, ok := seen[fp]; ok {
			t.Errorf("%q and %q have the same fingerprint", prev, name)
		}
		seen[fp] = name
	}
}

func TestJWT_Fingerprint(t *testing.T) {
	hs := mustKey(t)(HS256Key(testSecret[:]))
	hsOther := mustKey(t)(HS256Key(otherSecret[:]))
	p256 := mustKey(t)(ES256Key(&mustECDSA(t, elliptic.P256()).PublicKey))
	ed := mustKey(t)(EdDSAKey(ed25519.NewKeyFromSeed(make([]byte, 32)).Public().(ed25519.PublicKey)))
	base := func() *JWT {
		return NewJWT(testNetwork, hs, p256).AllowIssuer("a").AllowIssuer("b").AllowAudience("x").RequireClaim("role", "admin")
	}

	// Equal configurations, however reached, are equal.
	same := map[string]*JWT{
		"again":                 base(),
		"keys in another order": NewJWT(testNetwork, p256).AddKey(hs).AllowIssuer("b").AllowIssuer("a").AllowAudience("x").RequireClaim("role", "admin"),
		"issuer twice":          base().AllowIssuer("a"),
		"claim replaced":        base().RequireClaim("role", "user").RequireClaim("role", "admin"),
		"negative leeway is 0":  base().Leeway(-time.Second),
	}
	want := base().Fingerprint()
	for name, v := range same {
		if v.Fingerprint() != want {
			t.Errorf("%s: fingerprint differs from an equal configuration", name)
		}
	}
	if base().RequireClaim("n", 3).Fingerprint() != base().RequireClaim("n", 3.0).Fingerprint() {
		t.Error("claims equal as JSON (3 and 3.0) have different fingerprints")
	}

	// Any difference changes it.
	differ := map[string][32]byte{
		"base":                 want,
		"network":              NewJWT(catalog.IDFromString("other"), hs, p256).AllowIssuer("a").AllowIssuer("b").AllowAudience("x").RequireClaim("role", "admin").Fingerprint(),
		"class":                base().WithClass(catalog.IDFromString("other")).Fingerprint(),
		"accept unbound":       base().AcceptUnbound().Fingerprint(),
		"one key fewer":        NewJWT(testNetwork, hs).AllowIssuer("a").AllowIssuer("b").AllowAudience("x").RequireClaim("role", "admin").Fingerprint(),
		"another secret":       NewJWT(testNetwork, hsOther, p256).AllowIssuer("a").AllowIssuer("b").AllowAudience("x").RequireClaim("role", "admin").Fingerprint(),
		"one key more":         base().AddKey(ed).Fingerprint(),
		"issuer more":          base().AllowIssuer("c").Fingerprint(),
		"audience more":        base().AllowAudience("y").Fingerprint(),
		"subject":              base().RequireSubject("s").Fingerprint(),
		"empty subject":        base().RequireSubject("").Fingerprint(),
		"claim value":          base().RequireClaim("role", "user").Fingerprint(),
		"claim value type":     base().RequireClaim("role", []string{"admin"}).Fingerprint(),
		"claim more":           base().RequireClaim("tier", "gold").Fingerprint(),
		"non-expiring":         base().AllowNonExpiring().Fingerprint(),
		"max lifetime":         base().MaxLifetime(time.Hour).Fingerprint(),
		"max age":              base().MaxAge(time.Hour).Fingerprint(),
		"leeway":               base().Leeway(time.Second).Fingerprint(),
		"issuer moved to aud":  NewJWT(testNetwork, hs, p256).AllowIssuer("b").AllowAudience("a").AllowAudience("x").RequireClaim("role", "admin").Fingerprint(),
		"no issuer, no claims": NewJWT(testNetwork, hs, p256).Fingerprint(),
	}
	distinctFingerprints(t, differ)
}

func TestSignedTicketValidator_Fingerprint(t *testing.T) {
	a, b, c := seededPeer(t, 1), seededPeer(t, 2), seededPeer(t, 3)
	base := func() *SignedTicketValidator {
		return NewSignedTicketValidator(testNetwork, a.id, b.id).RequireClaim("role", "admin").RequireClaim("tier", "gold")
	}
	want := base().Fingerprint()
	for name, v := range map[string]*SignedTicketValidator{
		"again":                  base(),
		"issuers in other order": NewSignedTicketValidator(testNetwork, b.id, a.id, a.id).RequireClaim("tier", "gold").RequireClaim("role", "admin"),
		"another cache size":     base().WithCacheSize(3),
	} {
		if v.Fingerprint() != want {
			t.Errorf("%s: fingerprint differs from an equal configuration", name)
		}
	}
	distinctFingerprints(t, map[string][32]byte{
		"base":          want,
		"network":       NewSignedTicketValidator(catalog.IDFromString("other"), a.id, b.id).RequireClaim("role", "admin").RequireClaim("tier", "gold").Fingerprint(),
		"class":         base().WithClass(catalog.IDFromString("other")).Fingerprint(),
		"issuer fewer":  NewSignedTicketValidator(testNetwork, a.id).RequireClaim("role", "admin").RequireClaim("tier", "gold").Fingerprint(),
		"issuer more":   NewSignedTicketValidator(testNetwork, a.id, b.id, c.id).RequireClaim("role", "admin").RequireClaim("tier", "gold").Fingerprint(),
		"non-expiring":  base().AllowNonExpiring().Fingerprint(),
		"leeway":        base().WithLeeway(time.Millisecond).Fingerprint(),
		"claim value":   base().RequireClaim("role", "user").Fingerprint(),
		"claim more":    base().RequireClaim("x", "").Fingerprint(),
		"claims joined": NewSignedTicketValidator(testNetwork, a.id, b.id).RequireClaim("role", "admintier").Fingerprint(),
	})
}

// TestFingerprint_CrossType: a JWT and a signed validator of the same
// network and class never share a fingerprint.
func TestFingerprint_CrossType(t *testing.T) {
	j := NewJWT(testNetwork).WithClass(SignedTicketClass)
	s := NewSignedTicketValidator(testNetwork)
	if j.Fingerprint() == s.Fingerprint() {
		t.Fatal("a JWT and a signed validator share a fingerprint")
	}
}

// TestFingerprint_Stable pins the encoding: groups derive IDs from these
// values, so a change splits every group. Change the type tag instead.
func TestFingerprint_Stable(t *testing.T) {
	hs := mustKey(t)(HS256Key(testSecret[:]))
	cases := map[string]struct {
		got  [32]byte
		want string
	}{
		"jwt":    {NewJWT(testNetwork, hs).AllowIssuer(testIssuer).RequireClaim("n", 3).Leeway(time.Second).Fingerprint(), "1ea1d492d9bdd6ba443298ab9d51a6fe8bd4ebca5a4fa7240d00e581c70ed8d6"},
		"signed": {NewSignedTicketValidator(testNetwork, seededPeer(t, 1).id).RequireClaim("k", "v").Fingerprint(), "f16f6c002cb0f4bcd622ced597fe839cf8b39084a182cfb30d1f3f94c33adc60"},
	}
	for name, c := range cases {
		if got := hex.EncodeToString(c.got[:]); got != c.want {
			t.Errorf("%s: fingerprint %s, want %s", name, got, c.want)
		}
	}
}

func mustECDSA(t *testing.T, c elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
