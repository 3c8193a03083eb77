package catalog

import (
	"crypto/rand"
	"math"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/record"
	ma "github.com/multiformats/go-multiaddr"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// Shared fixtures of the package tests. Time is always injected: t0 is an
// arbitrary fixed instant on a millisecond boundary, so versions derived
// from it compare exactly with the times the tests pass as now.
var (
	t0          = time.UnixMilli(1_750_000_000_000)
	testNetwork = IDFromString("mosaik-go/catalog-test")
	otherNet    = IDFromString("mosaik-go/some-other-network")
)

// testTimeout bounds a wait on a condition (never a sleep). It scales with
// the environment variable TIME_FACTOR, as the mosaik tests do.
func testTimeout(d time.Duration) time.Duration {
	if f, err := strconv.ParseFloat(os.Getenv("TIME_FACTOR"), 64); err == nil && f > 0 && !math.IsInf(f, 0) {
		return time.Duration(float64(d) * f)
	}
	return d
}

// testPeer is a key and the peer ID it controls.
type testPeer struct {
	key crypto.PrivKey
	id  peer.ID
}

func newTestPeer(tb testing.TB) testPeer {
	tb.Helper()
	sk, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(sk)
	if err != nil {
		tb.Fatal(err)
	}
	return testPeer{key: sk, id: id}
}

// entry returns a minimal entry of p in network nw with version v.
func (p testPeer) entry(nw NetworkID, v Version) Entry {
	return Entry{PeerID: p.id, Network: nw, Protocol: ProtocolVersion, Version: v}
}

// seal seals an entry of p in network nw at version v, after applying mut
// (if not nil) to it.
func (p testPeer) seal(tb testing.TB, nw NetworkID, v Version, mut func(*Entry)) *SignedEntry {
	tb.Helper()
	e := p.entry(nw, v)
	if mut != nil {
		mut(&e)
	}
	s, err := Seal(e, p.key)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// ver returns the version of a run started at start and last updated at
// update, both given as times.
func ver(start, update time.Time) Version {
	return Version{StartMS: start.UnixMilli(), UpdateMS: update.UnixMilli()}
}

func mustAddr(tb testing.TB, s string) ma.Multiaddr {
	tb.Helper()
	a, err := ma.NewMultiaddr(s)
	if err != nil {
		tb.Fatal(err)
	}
	return a
}

// rawRecordForTest lets a test seal an arbitrary payload under any domain
// and payload type, to build envelopes the package itself would never make.
type rawRecordForTest struct {
	domain  string
	codec   []byte
	payload []byte
}

func (r *rawRecordForTest) Domain() string                 { return r.domain }
func (r *rawRecordForTest) Codec() []byte                  { return r.codec }
func (r *rawRecordForTest) MarshalRecord() ([]byte, error) { return r.payload, nil }
func (r *rawRecordForTest) UnmarshalRecord(b []byte) error { r.payload = b; return nil }

// sealRaw signs payload with sk under domain and payload type codec and
// returns the marshalled envelope.
func sealRaw(tb testing.TB, domain string, codec, payload []byte, sk crypto.PrivKey) []byte {
	tb.Helper()
	env, err := record.Seal(&rawRecordForTest{domain: domain, codec: codec, payload: payload}, sk)
	if err != nil {
		tb.Fatal(err)
	}
	b, err := env.Marshal()
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// entryPayload is the deterministic protobuf encoding of e, the payload
// Seal would sign (without normalizing e first).
func entryPayload(tb testing.TB, e *Entry) []byte {
	tb.Helper()
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(e.toPB())
	if err != nil {
		tb.Fatal(err)
	}
	return b
}
