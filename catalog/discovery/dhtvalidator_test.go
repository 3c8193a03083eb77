package discovery_test

import (
	"strings"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	mh "github.com/multiformats/go-multihash"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/catalog/discovery"
)

var (
	dhtNet   = catalog.IDFromString("discovery-test/dht")
	dhtOther = catalog.IDFromString("discovery-test/dht-other")
	dhtT0    = time.UnixMilli(1_750_000_000_000)
)

func dhtEntry(t *testing.T, sk crypto.PrivKey, nw catalog.NetworkID, v catalog.Version) []byte {
	t.Helper()
	return sealEntry(t, sk, nw, v).Bytes()
}

func TestValidator_Validate(t *testing.T) {
	sk, id := newKey(t)
	otherSK, otherID := newKey(t)
	v := catalog.NewVersion(dhtT0)
	good := dhtEntry(t, sk, dhtNet, v)
	tampered := []byte(string(good))
	tampered[len(tampered)-1] ^= 1
	key := discovery.DHTKey(dhtNet, id)

	cases := []struct {
		name  string
		key   string
		value []byte
		ok    bool
	}{
		{"valid record", key, good, true},
		{"key of another peer", discovery.DHTKey(dhtNet, otherID), good, false},
		{"key of another network", discovery.DHTKey(dhtOther, id), good, false},
		{"entry of another network under our key", key, dhtEntry(t, sk, dhtOther, v), false},
		{"another peer's entry under our key", key, dhtEntry(t, otherSK, dhtNet, v), false},
		{"entry of the peer sealed by another key", key,
			seal(t, otherSK, catalog.EntryDomain, catalog.EntryPayloadType, entryPB(id, dhtNet, v)), false},
		{"tampered envelope", key, tampered, false},
		{"garbage", key, []byte("garbage"), false},
		{"empty value", key, nil, false},
		{"oversize value", key, make([]byte, catalog.DefaultMaxEntrySize+1), false},
		{"other namespace", "/ipns/" + dhtNet.String() + "/" + id.String(), good, false},
		{"no peer in key", "/mosaik/" + dhtNet.String(), good, false},
		{"short network in key", "/mosaik/" + dhtNet.Short() + "/" + id.String(), good, false},
		{"bad peer in key", "/mosaik/" + dhtNet.String() + "/not-a-peer-id", good, false},
		{"trailing path in key", key + "/extra", good, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := discovery.Validator{}.Validate(tc.key, tc.value)
			if tc.ok && err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if !tc.ok && err == nil {
				t.Fatal("Validate accepted the record")
			}
		})
	}
}

func TestValidator_Select(t *testing.T) {
	sk, id := newKey(t)
	otherSK, _ := newKey(t)
	key := discovery.DHTKey(dhtNet, id)
	v1 := catalog.NewVersion(dhtT0)
	v2 := v1.Next(dhtT0.Add(time.Second))
	v3 := v2.Next(dhtT0.Add(2 * time.Second))
	restarted := catalog.NewVersion(dhtT0.Add(time.Minute)) // a later run beats any update of an earlier one
	e1, e2, e3, eR := dhtEntry(t, sk, dhtNet, v1), dhtEntry(t, sk, dhtNet, v2), dhtEntry(t, sk, dhtNet, v3), dhtEntry(t, sk, dhtNet, restarted)
	// A newer-looking record that is invalid must never win.
	forgedNewest := seal(t, otherSK, catalog.EntryDomain, catalog.EntryPayloadType,
		entryPB(id, dhtNet, catalog.NewVersion(dhtT0.Add(time.Hour))))

	cases := []struct {
		name   string
		values [][]byte
		want   int
		ok     bool
	}{
		{"single", [][]byte{e1}, 0, true},
		{"highest in the middle", [][]byte{e1, e3, e2}, 1, true},
		{"highest last", [][]byte{e2, e1, e3}, 2, true},
		{"later run wins", [][]byte{e3, eR, e2}, 1, true},
		{"invalid values skipped", [][]byte{[]byte("garbage"), forgedNewest, e1, e2}, 3, true},
		{"duplicates pick the first", [][]byte{e2, e2}, 0, true},
		{"none valid", [][]byte{[]byte("garbage"), forgedNewest}, 0, false},
		{"empty", nil, 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := discovery.Validator{}.Select(key, tc.values)
			if !tc.ok {
				if err == nil {
					t.Fatalf("Select = %d, want an error", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("Select: %v", err)
			}
			if got != tc.want {
				t.Fatalf("Select = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestNames_DeterministicAndPerNetwork(t *testing.T) {
	_, id := newKey(t)
	stream := catalog.IDFromString("prices")
	if discovery.DHTKey(dhtNet, id) != discovery.DHTKey(catalog.IDFromString("discovery-test/dht"), id) {
		t.Error("DHTKey is not deterministic")
	}
	if want := "/mosaik/" + dhtNet.String() + "/" + id.String(); discovery.DHTKey(dhtNet, id) != want {
		t.Errorf("DHTKey = %q, want %q", discovery.DHTKey(dhtNet, id), want)
	}
	if !strings.HasPrefix(discovery.DHTKey(dhtNet, id), "/"+discovery.DHTNamespace+"/") {
		t.Error("DHTKey is outside the mosaik namespace")
	}
	if !discovery.NetworkCID(dhtNet).Equals(discovery.NetworkCID(dhtNet)) ||
		!discovery.StreamCID(dhtNet, stream).Equals(discovery.StreamCID(dhtNet, stream)) {
		t.Error("CIDs are not deterministic")
	}

	distinct := map[string]string{}
	add := func(what, v string) {
		if prev, dup := distinct[v]; dup {
			t.Errorf("%s equals %s: %s", what, prev, v)
		}
		distinct[v] = what
	}
	for _, nw := range []catalog.NetworkID{dhtNet, dhtOther} {
		add("DHTKey "+nw.Short(), discovery.DHTKey(nw, id))
		add("NetworkCID "+nw.Short(), discovery.NetworkCID(nw).String())
		add("StreamCID "+nw.Short(), discovery.StreamCID(nw, stream).String())
		add("StreamCID other stream "+nw.Short(), discovery.StreamCID(nw, catalog.IDFromString("orders")).String())
		add("TopicName "+nw.Short(), discovery.TopicName(nw))
		add("SyncProtocol "+nw.Short(), string(discovery.SyncProtocol(nw)))
		add("SyncProtocolV1 "+nw.Short(), string(discovery.SyncProtocolV1(nw)))
	}

	// The CIDs are CIDv1, raw codec, SHA2-256, as documented.
	for _, c := range []cid.Cid{discovery.NetworkCID(dhtNet), discovery.StreamCID(dhtNet, stream)} {
		if c.Version() != 1 || c.Type() != cid.Raw {
			t.Errorf("CID %s: version %d codec %x", c, c.Version(), c.Type())
		}
		dec, err := mh.Decode(c.Hash())
		if err != nil || dec.Code != mh.SHA2_256 {
			t.Errorf("CID %s hash: %v %v", c, dec, err)
		}
	}
	want, _ := mh.Sum([]byte("mosaik/network/"+dhtNet.String()), mh.SHA2_256, -1)
	if !discovery.NetworkCID(dhtNet).Equals(cid.NewCidV1(cid.Raw, want)) {
		t.Error("NetworkCID does not hash the documented string")
	}
}
