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
	"strings"
	"testing"
	"time"

	"github.com/mosaik-go/mosaik/catalog"
)

// The mosaik ES256 test vector (tests/tickets/jwt.rs).
const (
	es256VectorPrivate    = "de01776891476ee7bcd6ee9d9824d1440c7ae0c095ad71ad75d3d11a96647b85"
	es256VectorCompressed = "0298a82ebe69ad57e0f7d5c2809a05188ff58572c5a5009015f26643f91e0d3236"
)

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
			tk, err := NewJWTBuilder(testNetwork, sk).ExpiresAt(t0.Add(time.Minute)).Build(holder.id)
			if err != nil {
				t.Fatal(err)
			}
			// The keys copied the secret: changing the caller's slice
			// changes nothing.
			for i := range secret {
				secret[i] = 0
			}
			if _, err := NewJWT(testNetwork, k).Validate(tk.Data, holder.id, t0); err != nil {
				t.Fatalf("round trip: %v", err)
			}
			hdr := decodeHeader(t, tk.Data)
			if hdr != `{"alg":"`+tc.name+`","typ":"JWT"}` {
				t.Errorf("header %s", hdr)
			}
		})
	}
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
	tk, err := NewJWTBuilder(testNetwork, sk).Issuer(testIssuer).Audience(network.String()).ExpiresAt(t0.Add(time.Hour)).Build(holder.id)
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
	v := NewJWT(testNetwork, pub).AllowIssuer(testIssuer).AllowAudience(network.String())
	got, err := v.Validate(tk.Data, holder.id, t0)
	if err != nil {
		t.Fatalf("validate with the compressed key: %v", err)
	}
	if !got.Equal(t0.Add(time.Hour)) {
		t.Fatalf("expiry %v", got)
	}
	if _, err := NewJWT(testNetwork, mustKey(t)(ES256Key(&priv.PublicKey))).Validate(tk.Data, holder.id, t0); err != nil {
		t.Fatalf("validate with the ecdsa key: %v", err)
	}
	// VerifyingKey is the same public key.
	if _, err := NewJWT(testNetwork, sk.VerifyingKey()).Validate(tk.Data, holder.id, t0); err != nil {
		t.Fatalf("validate with VerifyingKey: %v", err)
	}
	// Another P-256 key does not verify it.
	otherPriv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, err = NewJWT(testNetwork, mustKey(t)(ES256Key(&otherPriv.PublicKey))).Validate(tk.Data, holder.id, t0)
	checkRejected(t, err, ErrTicketSignature)
	// An HS256-only validator refuses the ES256 token by algorithm.
	_, err = NewJWT(testNetwork, mustKey(t)(HS256Key(testSecret[:]))).Validate(tk.Data, holder.id, t0)
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
		"ES512 of a P-384 key":     func() (JWTKey, error) { return ES512Key(&p384.PublicKey) },
		"ES512 from P-384 bytes":   func() (JWTKey, error) { return ES512KeyFromCompressed(c384) },
		"ES512 compressed 67 of 0": func() (JWTKey, error) { return ES512KeyFromCompressed(make([]byte, 67)) },
	} {
		if k, err := f(); err == nil {
			t.Errorf("%s: accepted (%s)", name, k.Algorithm())
		}
	}
	for name, f := range map[string]func() (JWTSigningKey, error){
		"ES256 nil":            func() (JWTSigningKey, error) { return ES256SigningKey(nil) },
		"ES256 of P-384":       func() (JWTSigningKey, error) { return ES256SigningKey(p384) },
		"ES384 of P-256":       func() (JWTSigningKey, error) { return ES384SigningKey(p256) },
		"ES512 of P-384":       func() (JWTSigningKey, error) { return ES512SigningKey(p384) },
		"EdDSA short":          func() (JWTSigningKey, error) { return EdDSASigningKey(make([]byte, 32)) },
		"EdDSA mismatched key": func() (JWTSigningKey, error) { return EdDSASigningKey(make([]byte, 64)) },
	} {
		if _, err := f(); err == nil {
			t.Errorf("signing key %s: accepted", name)
		}
	}
}

// ES384 and ES512 (mosaik's Es384, Es512) round trips: signed here,
// verified from the public key, its compressed form (49 and 67 bytes) and
// the signing key's verifying key; an ES256-only validator refuses them.
func TestJWT_ECDSARoundTrip(t *testing.T) {
	for _, tc := range []struct {
		alg        string
		curve      elliptic.Curve
		compressed int
		sign       func(*ecdsa.PrivateKey) (JWTSigningKey, error)
		key        func(*ecdsa.PublicKey) (JWTKey, error)
		fromBytes  func([]byte) (JWTKey, error)
	}{
		{"ES384", elliptic.P384(), 49, ES384SigningKey, ES384Key, ES384KeyFromCompressed},
		{"ES512", elliptic.P521(), 67, ES512SigningKey, ES512Key, ES512KeyFromCompressed},
	} {
		t.Run(tc.alg, func(t *testing.T) {
			priv, err := ecdsa.GenerateKey(tc.curve, rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			sk := mustSigningKey(t)(tc.sign(priv))
			holder := newTestPeer(t)
			tk, err := NewJWTBuilder(testNetwork, sk).ExpiresAt(t0.Add(time.Hour)).Build(holder.id)
			if err != nil {
				t.Fatal(err)
			}
			if hdr := decodeHeader(t, tk.Data); hdr != `{"alg":"`+tc.alg+`","typ":"JWT"}` {
				t.Fatalf("header %s", hdr)
			}
			c := compressECDSA(t, &priv.PublicKey)
			if len(c) != tc.compressed {
				t.Fatalf("compressed key is %d bytes, want %d", len(c), tc.compressed)
			}
			for name, k := range map[string]JWTKey{
				"ecdsa":      mustKey(t)(tc.key(&priv.PublicKey)),
				"compressed": mustKey(t)(tc.fromBytes(c)),
				"verifying":  sk.VerifyingKey(),
			} {
				if k.Algorithm() != tc.alg {
					t.Errorf("%s: algorithm %q", name, k.Algorithm())
				}
				if got, err := NewJWT(testNetwork, k).Validate(tk.Data, holder.id, t0); err != nil || !got.Equal(t0.Add(time.Hour)) {
					t.Errorf("%s: %v, %v", name, got, err)
				}
			}
			// An ES256-only validator refuses it by algorithm.
			p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			_, err = NewJWT(testNetwork, mustKey(t)(ES256Key(&p256.PublicKey))).Validate(tk.Data, holder.id, t0)
			checkRejected(t, err, ErrTicketAlgorithm)
		})
	}
}

func TestJWT_EdDSARoundTrip(t *testing.T) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sk := mustSigningKey(t)(EdDSASigningKey(priv))
	holder := newTestPeer(t)
	tk, err := NewJWTBuilder(testNetwork, sk).Issuer(testIssuer).ExpiresIn(time.Hour, t0).Build(holder.id)
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
	v := NewJWT(testNetwork, k).AllowIssuer(testIssuer).MaxAge(time.Minute)
	if got, err := v.Validate(tk.Data, holder.id, t0.Add(30*time.Second)); err != nil || !got.Equal(t0.Add(time.Minute+time.Second)) {
		t.Fatalf("validate: %v, %v", got, err)
	}
	_, err = v.Validate(tk.Data, holder.id, t0.Add(2*time.Minute))
	checkRejected(t, err, ErrTicketTooOld)
	otherPub, _, _ := ed25519.GenerateKey(rand.Reader)
	_, err = NewJWT(testNetwork, mustKey(t)(EdDSAKey(otherPub))).Validate(tk.Data, holder.id, t0)
	checkRejected(t, err, ErrTicketSignature)
}
