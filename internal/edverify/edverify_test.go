package edverify

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"slices"
	"testing"

	"github.com/oasisprotocol/curve25519-voi/curve"
	"github.com/oasisprotocol/curve25519-voi/curve/scalar"
	voi "github.com/oasisprotocol/curve25519-voi/primitives/ed25519"
)

// agree checks Verify against crypto/ed25519.Verify on one input and
// returns their common answer.
func agree(t testing.TB, pub, msg, sig []byte) bool {
	t.Helper()
	want := ed25519.Verify(pub, msg, sig)
	if got := Verify(pub, msg, sig); got != want {
		t.Fatalf("Verify = %v, crypto/ed25519 = %v\npub %x\nmsg %x\nsig %x", got, want, pub, msg, sig)
	}
	return want
}

func TestVerify_ValidAndMutated(t *testing.T) {
	for k := range 3 {
		pub, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		msg := fmt.Appendf(nil, "catalog entry %d", k)
		sig := ed25519.Sign(priv, msg)
		if !agree(t, pub, msg, sig) {
			t.Fatal("a valid signature was refused")
		}
		// Every single-bit change of the signature, and some of the key
		// and the message, is refused by both.
		flip := func(b []byte, bit int) []byte {
			c := slices.Clone(b)
			c[bit/8] ^= 1 << (bit % 8)
			return c
		}
		for bit := range 8 * len(sig) {
			if agree(t, pub, msg, flip(sig, bit)) {
				t.Fatalf("signature with bit %d flipped was accepted", bit)
			}
		}
		for bit := 0; bit < 8*len(pub); bit += 7 {
			agree(t, flip(pub, bit), msg, sig)
		}
		for bit := 0; bit < 8*len(msg); bit += 5 {
			if agree(t, pub, flip(msg, bit), sig) {
				t.Fatalf("message with bit %d flipped was accepted", bit)
			}
		}
	}
}

func TestVerify_ShortKeyIsInvalid(t *testing.T) {
	if Verify(make([]byte, 31), nil, make([]byte, 64)) {
		t.Fatal("a 31-byte key was accepted")
	}
}

// The field prime p = 2²⁵⁵ − 19 and the group order ℓ, little-endian.
var (
	fieldP = le("7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffed")
	orderL = le("1000000000000000000000000000000014def9dea2f79cd65812631a5cf5d3ed")
)

// le turns a big-endian hex constant into 32 little-endian bytes.
func le(h string) []byte {
	b, err := hex.DecodeString(h)
	if err != nil || len(b) != 32 {
		panic("edverify test: bad constant " + h)
	}
	slices.Reverse(b)
	return b
}

// addSmall returns x + d for 32-byte little-endian x and d ≥ 0 (mod 2²⁵⁶).
func addSmall(x []byte, d int) []byte {
	out := slices.Clone(x)
	carry := d
	for i := 0; i < len(out) && carry != 0; i++ {
		s := int(out[i]) + carry
		out[i], carry = byte(s), s>>8
	}
	return out
}

func encode(p *curve.EdwardsPoint) []byte {
	var c curve.CompressedEdwardsY
	c.SetEdwardsPoint(p)
	return c[:]
}

// edgeEncodings are the point encodings where implementations differ:
// the eight small-order points, their encodings with the sign bit flipped,
// and every encoding of y < 19 written as y + p (non-canonical), both signs,
// whether or not it is on the curve.
func edgeEncodings() [][]byte {
	var out [][]byte
	for _, p := range curve.EIGHT_TORSION {
		e := encode(p)
		out = append(out, e, flipSign(e))
	}
	for y := range 19 {
		e := addSmall(fieldP, y)
		out = append(out, e, withSign(e))
	}
	return out
}

// edgeScalars are S values around the checks: 0, 1, ℓ − 1, ℓ, ℓ + 1, and
// one with the top three bits set.
func edgeScalars() [][]byte {
	lm1 := slices.Clone(orderL)
	lm1[0]-- // ℓ ends in 0xed: no borrow
	top := make([]byte, 32)
	top[31] = 0xe0
	return [][]byte{make([]byte, 32), addSmall(make([]byte, 32), 1), lm1, orderL, addSmall(orderL, 1), top}
}

// withSign returns e with the sign bit of x set to 1.
func withSign(e []byte) []byte {
	c := slices.Clone(e)
	c[31] |= 0x80
	return c
}

// flipSign returns e with the sign bit of x flipped.
func flipSign(e []byte) []byte {
	c := slices.Clone(e)
	c[31] ^= 0x80
	return c
}

func TestVerify_EdgeEncodings(t *testing.T) {
	// One message: k = H(R‖A‖M) varies with the key and nonce already.
	msg := []byte("catalog entry")
	encs := edgeEncodings()
	accepted, total := 0, 0
	check := func(a, r, s, m []byte) {
		total++
		if agree(t, a, m, append(slices.Clone(r), s...)) {
			accepted++
		}
	}
	scalars := edgeScalars()
	for _, a := range encs {
		// Every key against every nonce with the in-range S values...
		for _, r := range encs {
			for _, s := range scalars[:3] {
				check(a, r, s, msg)
			}
		}
		// ...and against the out-of-range ones (refused before the
		// nonce matters).
		for _, s := range scalars[3:] {
			check(a, encs[0], s, msg)
		}
	}
	// The set must include signatures crypto/ed25519 accepts (with a
	// small-order key, S = 0 and R = the identity: the check
	// [S]B − [k]A = R holds for every k that kills A), or it checks
	// only refusals.
	if accepted == 0 {
		t.Fatalf("no edge case of %d was accepted: the set tests refusals only", total)
	}
	t.Logf("%d of %d edge cases accepted by both", accepted, total)
}

// torsionKey is a key A = [a]B + T, T of small order: a key no honest
// ed25519 key generation makes, whose signatures crypto/ed25519 accepts
// only when the hash k kills T ([k]T = 0), and cofactored verifiers
// always.
type torsionKey struct {
	a   scalar.Scalar
	pub []byte
}

func newTorsionKey(t *testing.T, torsion *curve.EdwardsPoint) *torsionKey {
	var k torsionKey
	if _, err := k.a.SetRandom(rand.Reader); err != nil {
		t.Fatal(err)
	}
	var A curve.EdwardsPoint
	A.MulBasepoint(curve.ED25519_BASEPOINT_TABLE, &k.a)
	A.Add(&A, torsion)
	k.pub = encode(&A)
	return &k
}

// sign signs msg with nonce point R = [r]B + rTorsion.
func (k *torsionKey) sign(t *testing.T, msg []byte, rTorsion *curve.EdwardsPoint) []byte {
	var r scalar.Scalar
	if _, err := r.SetRandom(rand.Reader); err != nil {
		t.Fatal(err)
	}
	var R curve.EdwardsPoint
	R.MulBasepoint(curve.ED25519_BASEPOINT_TABLE, &r)
	R.Add(&R, rTorsion)
	rEnc := encode(&R)
	h := sha512.New()
	h.Write(rEnc)
	h.Write(k.pub)
	h.Write(msg)
	var kh, s scalar.Scalar
	if _, err := kh.SetBytesModOrderWide(h.Sum(nil)); err != nil {
		t.Fatal(err)
	}
	s.Mul(&kh, &k.a)
	s.Add(&s, &r)
	sig := slices.Clone(rEnc)
	sb := make([]byte, 32)
	if err := s.ToBytes(sb); err != nil {
		t.Fatal(err)
	}
	return append(sig, sb...)
}

func TestVerify_MixedOrderKeysAndNonces(t *testing.T) {
	var identity curve.EdwardsPoint
	identity.Identity()
	cofactored := &voi.Options{Verify: voi.VerifyOptionsFIPS_186_5}
	for i, torsion := range curve.EIGHT_TORSION {
		if i == 0 {
			continue // the identity: an ordinary key
		}
		key := newTorsionKey(t, torsion)
		accepted := 0
		const n = 48
		for m := range n {
			msg := fmt.Appendf(nil, "entry %d", m)
			sig := key.sign(t, msg, &identity)
			if agree(t, key.pub, msg, sig) {
				accepted++
			}
			// A cofactored verifier accepts them all: this is the
			// difference the test is about.
			if !voi.VerifyWithOptions(key.pub, msg, sig, cofactored) {
				t.Fatalf("torsion %d: cofactored verification refused a signature by the key's owner", i)
			}
		}
		// Torsion of order 8 is killed by k for 1 hash in 8; order 2 for 1
		// in 2: crypto/ed25519 accepts some and refuses others.
		if accepted == 0 || accepted == n {
			t.Fatalf("torsion %d: %d of %d accepted: the case does not separate the equations", i, accepted, n)
		}
		// An ordinary key with a mixed-order nonce R: refused by both,
		// accepted by a cofactored verifier.
		plain := newTorsionKey(t, &identity)
		msg := []byte("nonce with torsion")
		sig := plain.sign(t, msg, torsion)
		if agree(t, plain.pub, msg, sig) {
			t.Fatalf("torsion %d in R: accepted", i)
		}
		if !voi.VerifyWithOptions(plain.pub, msg, sig, cofactored) {
			t.Fatalf("torsion %d in R: cofactored verification refused it", i)
		}
	}
}

func FuzzVerify(f *testing.F) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	msg := []byte("catalog entry")
	f.Add([]byte(pub), msg, ed25519.Sign(priv, msg))
	encs := edgeEncodings()
	f.Add(encs[0], msg, append(slices.Clone(encs[0]), make([]byte, 32)...))
	f.Add(encs[3], []byte{}, append(slices.Clone(encs[5]), orderL...))
	f.Fuzz(func(t *testing.T, pub, msg, sig []byte) {
		if len(pub) != ed25519.PublicKeySize {
			if Verify(pub, msg, sig) {
				t.Fatal("a key of the wrong length was accepted")
			}
			return
		}
		agree(t, pub, msg, sig)
	})
}

func BenchmarkVerify(b *testing.B) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	msg := make([]byte, 800) // a typical sealed catalog entry
	sig := ed25519.Sign(priv, msg)
	b.Run("crypto-ed25519", func(b *testing.B) {
		for b.Loop() {
			if !ed25519.Verify(pub, msg, sig) {
				b.Fatal("refused")
			}
		}
	})
	b.Run("edverify", func(b *testing.B) {
		for b.Loop() {
			if !Verify(pub, msg, sig) {
				b.Fatal("refused")
			}
		}
	})
}
