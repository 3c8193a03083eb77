package policy

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"hash"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"go.uber.org/goleak"

	"github.com/mosaik-go/mosaik/catalog"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// Shared fixtures. Time is always injected: t0 is an arbitrary fixed
// instant on a whole second, so the JWT checks (whole seconds) and the
// signed-ticket checks (milliseconds) compare exactly.
var (
	t0          = time.Unix(1_750_000_000, 0)
	testNetwork = catalog.IDFromString("mosaik-go/policy-test")
	// As in mosaik's test helpers: secret = blake3(string).
	testSecret  = catalog.HashID([]byte("mosaik.test.jwt.secret"))
	otherSecret = catalog.HashID([]byte("mosaik.test.jwt.other-secret"))
)

const testIssuer = "mosaik.test.jwt.issuer"

// testPeer is a key and the peer ID it controls.
type testPeer struct {
	key crypto.PrivKey
	id  peer.ID
}

func peerFromKey(tb testing.TB, sk crypto.PrivKey) testPeer {
	tb.Helper()
	id, err := peer.IDFromPrivateKey(sk)
	if err != nil {
		tb.Fatal(err)
	}
	return testPeer{key: sk, id: id}
}

func newTestPeer(tb testing.TB) testPeer {
	tb.Helper()
	sk, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return peerFromKey(tb, sk)
}

// seededPeer is a deterministic Ed25519 peer (for fuzz seeds, which must
// verify in every fuzz worker process).
func seededPeer(tb testing.TB, seed byte) testPeer {
	tb.Helper()
	var s [ed25519.SeedSize]byte
	for i := range s {
		s[i] = seed
	}
	sk, err := crypto.UnmarshalEd25519PrivateKey(ed25519.NewKeyFromSeed(s[:]))
	if err != nil {
		tb.Fatal(err)
	}
	return peerFromKey(tb, sk)
}

func (p testPeer) subject(tb testing.TB) string {
	tb.Helper()
	s, err := Subject(p.id)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func mustKey(tb testing.TB) func(JWTKey, error) JWTKey {
	return func(k JWTKey, err error) JWTKey {
		tb.Helper()
		if err != nil {
			tb.Fatal(err)
		}
		return k
	}
}

func mustSigningKey(tb testing.TB) func(JWTSigningKey, error) JWTSigningKey {
	return func(k JWTSigningKey, err error) JWTSigningKey {
		tb.Helper()
		if err != nil {
			tb.Fatal(err)
		}
		return k
	}
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func mustJSON(tb testing.TB, v any) []byte {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// rawJWT assembles a token by hand from a header, claims and signature, so
// tests can build tokens the builder never would.
func rawJWT(tb testing.TB, header, claims any, sig []byte) string {
	tb.Helper()
	return b64(mustJSON(tb, header)) + "." + b64(mustJSON(tb, claims)) + "." + b64(sig)
}

// hmacJWT signs claims by hand with HMAC under header alg ("HS256",
// "HS384" or "HS512").
func hmacJWT(tb testing.TB, alg string, secret []byte, claims any) string {
	tb.Helper()
	var h func() hash.Hash
	switch alg {
	case "HS256":
		h = sha256.New
	case "HS384":
		h = sha512.New384
	case "HS512":
		h = sha512.New
	default:
		tb.Fatalf("no hash for %s", alg)
	}
	signing := b64(mustJSON(tb, map[string]string{"alg": alg, "typ": "JWT"})) + "." + b64(mustJSON(tb, claims))
	mac := hmac.New(h, secret)
	mac.Write([]byte(signing))
	return signing + "." + b64(mac.Sum(nil))
}
