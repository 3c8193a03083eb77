package policy

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"errors"
	"fmt"

	"github.com/golang-jwt/jwt/v5"
)

// JWT algorithm names, as written in the token header's "alg".
const (
	algHS256 = "HS256"
	algHS384 = "HS384"
	algHS512 = "HS512"
	algES256 = "ES256"
	algES384 = "ES384"
	algES512 = "ES512"
	algEdDSA = "EdDSA"
)

// JWTKey verifies JWT tickets of one algorithm. Make one with HS256Key,
// HS384Key, HS512Key, ES256Key, ES256KeyFromCompressed, ES384Key,
// ES384KeyFromCompressed, ES512Key, ES512KeyFromCompressed or EdDSAKey,
// or from a signing key with
// [JWTSigningKey.VerifyingKey]. The zero JWTKey verifies nothing.
//
// A JWTKey is an immutable value, safe to copy and to share between
// goroutines.
type JWTKey struct {
	alg string
	key any // []byte (HMAC secret), *ecdsa.PublicKey or ed25519.PublicKey
}

// Algorithm is the key's JWT algorithm name ("HS256", "ES256", "EdDSA", …).
func (k JWTKey) Algorithm() string { return k.alg }

func hmacKey(alg string, size int, secret []byte) (JWTKey, error) {
	if len(secret) != size {
		return JWTKey{}, fmt.Errorf("policy: an %s secret is %d bytes, got %d", alg, size, len(secret))
	}
	return JWTKey{alg: alg, key: bytes.Clone(secret)}, nil
}

// HS256Key returns an HMAC-SHA256 key. As in mosaik, the secret must be
// exactly 32 bytes. The secret is copied.
func HS256Key(secret []byte) (JWTKey, error) { return hmacKey(algHS256, 32, secret) }

// HS384Key returns an HMAC-SHA384 key; the secret must be exactly 48 bytes.
func HS384Key(secret []byte) (JWTKey, error) { return hmacKey(algHS384, 48, secret) }

// HS512Key returns an HMAC-SHA512 key; the secret must be exactly 64 bytes.
func HS512Key(secret []byte) (JWTKey, error) { return hmacKey(algHS512, 64, secret) }

// curveBytes is the size of a coordinate of curve c.
func curveBytes(c elliptic.Curve) int { return (c.Params().BitSize + 7) / 8 }

// ecdsaPublic checks that pub is a valid point of curve c and returns an
// independent copy of it.
func ecdsaPublic(alg string, c elliptic.Curve, pub *ecdsa.PublicKey) (*ecdsa.PublicKey, error) {
	if pub == nil || pub.Curve != c {
		return nil, fmt.Errorf("policy: an %s key must be on %s", alg, c.Params().Name)
	}
	raw, err := pub.Bytes()
	if err != nil {
		return nil, fmt.Errorf("policy: %s key: %w", alg, err)
	}
	cp, err := ecdsa.ParseUncompressedPublicKey(c, raw)
	if err != nil {
		return nil, fmt.Errorf("policy: %s key: %w", alg, err)
	}
	return cp, nil
}

// ecdsaCompressed decodes a SEC1 compressed point of curve c.
func ecdsaCompressed(alg string, c elliptic.Curve, b []byte) (*ecdsa.PublicKey, error) {
	n := curveBytes(c)
	if len(b) != 1+n {
		return nil, fmt.Errorf("policy: a compressed %s key is %d bytes, got %d", alg, 1+n, len(b))
	}
	x, y := elliptic.UnmarshalCompressed(c, b)
	if x == nil {
		return nil, fmt.Errorf("policy: %s key is not a compressed point of %s", alg, c.Params().Name)
	}
	raw := make([]byte, 1+2*n)
	raw[0] = 4
	x.FillBytes(raw[1 : 1+n])
	y.FillBytes(raw[1+n:])
	pub, err := ecdsa.ParseUncompressedPublicKey(c, raw)
	if err != nil {
		return nil, fmt.Errorf("policy: %s key: %w", alg, err)
	}
	return pub, nil
}

// ES256Key returns an ECDSA P-256 / SHA-256 verifying key.
func ES256Key(pub *ecdsa.PublicKey) (JWTKey, error) {
	k, err := ecdsaPublic(algES256, elliptic.P256(), pub)
	if err != nil {
		return JWTKey{}, err
	}
	return JWTKey{alg: algES256, key: k}, nil
}

// ES256KeyFromCompressed returns an ES256 verifying key from a 33-byte SEC1
// compressed P-256 point, the form mosaik's Es256 keys take.
func ES256KeyFromCompressed(b []byte) (JWTKey, error) {
	k, err := ecdsaCompressed(algES256, elliptic.P256(), b)
	if err != nil {
		return JWTKey{}, err
	}
	return JWTKey{alg: algES256, key: k}, nil
}

// ES384Key returns an ECDSA P-384 / SHA-384 verifying key.
func ES384Key(pub *ecdsa.PublicKey) (JWTKey, error) {
	k, err := ecdsaPublic(algES384, elliptic.P384(), pub)
	if err != nil {
		return JWTKey{}, err
	}
	return JWTKey{alg: algES384, key: k}, nil
}

// ES384KeyFromCompressed returns an ES384 verifying key from a 49-byte SEC1
// compressed P-384 point.
func ES384KeyFromCompressed(b []byte) (JWTKey, error) {
	k, err := ecdsaCompressed(algES384, elliptic.P384(), b)
	if err != nil {
		return JWTKey{}, err
	}
	return JWTKey{alg: algES384, key: k}, nil
}

// ES512Key returns an ECDSA P-521 / SHA-512 verifying key.
func ES512Key(pub *ecdsa.PublicKey) (JWTKey, error) {
	k, err := ecdsaPublic(algES512, elliptic.P521(), pub)
	if err != nil {
		return JWTKey{}, err
	}
	return JWTKey{alg: algES512, key: k}, nil
}

// ES512KeyFromCompressed returns an ES512 verifying key from a 67-byte SEC1
// compressed P-521 point, the form mosaik's Es512 keys take.
func ES512KeyFromCompressed(b []byte) (JWTKey, error) {
	k, err := ecdsaCompressed(algES512, elliptic.P521(), b)
	if err != nil {
		return JWTKey{}, err
	}
	return JWTKey{alg: algES512, key: k}, nil
}

// EdDSAKey returns an Ed25519 verifying key ("EdDSA"). The key is copied.
func EdDSAKey(pub ed25519.PublicKey) (JWTKey, error) {
	if len(pub) != ed25519.PublicKeySize {
		return JWTKey{}, fmt.Errorf("policy: an EdDSA key is %d bytes, got %d", ed25519.PublicKeySize, len(pub))
	}
	return JWTKey{alg: algEdDSA, key: ed25519.PublicKey(bytes.Clone(pub))}, nil
}

// JWTSigningKey signs JWT tickets (see [JWTBuilder]). Make one with
// HS256SigningKey, HS384SigningKey, HS512SigningKey, ES256SigningKey,
// ES384SigningKey, ES512SigningKey or EdDSASigningKey.
//
// A JWTSigningKey is an immutable value, safe to copy and to share between
// goroutines. It holds secret material: do not log it.
type JWTSigningKey struct {
	method jwt.SigningMethod
	key    any // []byte, *ecdsa.PrivateKey or ed25519.PrivateKey
	verify JWTKey
}

// Algorithm is the key's JWT algorithm name.
func (k JWTSigningKey) Algorithm() string { return k.verify.alg }

// VerifyingKey returns the key that verifies this key's signatures: the
// public key, or the same secret for HMAC.
func (k JWTSigningKey) VerifyingKey() JWTKey { return k.verify }

func hmacSigningKey(m jwt.SigningMethod, size int, secret []byte) (JWTSigningKey, error) {
	vk, err := hmacKey(m.Alg(), size, secret)
	if err != nil {
		return JWTSigningKey{}, err
	}
	return JWTSigningKey{method: m, key: vk.key, verify: vk}, nil
}

// HS256SigningKey returns an HMAC-SHA256 signing key from a 32-byte secret.
func HS256SigningKey(secret []byte) (JWTSigningKey, error) {
	return hmacSigningKey(jwt.SigningMethodHS256, 32, secret)
}

// HS384SigningKey returns an HMAC-SHA384 signing key from a 48-byte secret.
func HS384SigningKey(secret []byte) (JWTSigningKey, error) {
	return hmacSigningKey(jwt.SigningMethodHS384, 48, secret)
}

// HS512SigningKey returns an HMAC-SHA512 signing key from a 64-byte secret.
func HS512SigningKey(secret []byte) (JWTSigningKey, error) {
	return hmacSigningKey(jwt.SigningMethodHS512, 64, secret)
}

func ecdsaSigningKey(m jwt.SigningMethod, c elliptic.Curve, priv *ecdsa.PrivateKey) (JWTSigningKey, error) {
	if priv == nil {
		return JWTSigningKey{}, fmt.Errorf("policy: no %s private key", m.Alg())
	}
	pub, err := ecdsaPublic(m.Alg(), c, &priv.PublicKey)
	if err != nil {
		return JWTSigningKey{}, err
	}
	raw, err := priv.Bytes()
	if err != nil {
		return JWTSigningKey{}, fmt.Errorf("policy: %s private key: %w", m.Alg(), err)
	}
	cp, err := ecdsa.ParseRawPrivateKey(c, raw)
	if err != nil {
		return JWTSigningKey{}, fmt.Errorf("policy: %s private key: %w", m.Alg(), err)
	}
	return JWTSigningKey{method: m, key: cp, verify: JWTKey{alg: m.Alg(), key: pub}}, nil
}

// ES256SigningKey returns an ECDSA P-256 / SHA-256 signing key. For a raw
// 32-byte scalar, parse it first with ecdsa.ParseRawPrivateKey.
func ES256SigningKey(priv *ecdsa.PrivateKey) (JWTSigningKey, error) {
	return ecdsaSigningKey(jwt.SigningMethodES256, elliptic.P256(), priv)
}

// ES384SigningKey returns an ECDSA P-384 / SHA-384 signing key.
func ES384SigningKey(priv *ecdsa.PrivateKey) (JWTSigningKey, error) {
	return ecdsaSigningKey(jwt.SigningMethodES384, elliptic.P384(), priv)
}

// ES512SigningKey returns an ECDSA P-521 / SHA-512 signing key.
func ES512SigningKey(priv *ecdsa.PrivateKey) (JWTSigningKey, error) {
	return ecdsaSigningKey(jwt.SigningMethodES512, elliptic.P521(), priv)
}

// EdDSASigningKey returns an Ed25519 signing key ("EdDSA"). The key is
// copied; it must be a well-formed 64-byte private key (seed ‖ public key).
func EdDSASigningKey(priv ed25519.PrivateKey) (JWTSigningKey, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return JWTSigningKey{}, fmt.Errorf("policy: an EdDSA private key is %d bytes, got %d", ed25519.PrivateKeySize, len(priv))
	}
	cp := ed25519.NewKeyFromSeed(priv.Seed())
	if !cp.Equal(priv) {
		return JWTSigningKey{}, errors.New("policy: EdDSA private key: public half does not match the seed")
	}
	pub := cp.Public().(ed25519.PublicKey)
	return JWTSigningKey{method: jwt.SigningMethodEdDSA, key: cp, verify: JWTKey{alg: algEdDSA, key: pub}}, nil
}
