package mosaik_test

import (
	"encoding/hex"
	"testing"
	"time"

	ma "github.com/multiformats/go-multiaddr"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/catalog/discovery"
	"github.com/mosaik-go/mosaik/groups"
	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/policy"
)

// TestVectors_EntryWithGroupsAndDHT checks a sealed entry that uses every
// field (a ticket, a group membership, names) and the DHT's names of
// section 11 against testdata/vectors (rewrite with -update-vectors).
func TestVectors_EntryWithGroupsAndDHT(t *testing.T) {
	sk, id := vectorKey(t, 0x00)
	issuer, issuerID := vectorKey(t, 0x20)
	nw, orders := catalog.IDFromString("mosaik"), catalog.IDFromString("orders")
	validator := catalog.IDFromString("validator")
	st, err := policy.IssueSignedTicket(issuer, policy.SignedTicket{Subject: id, Network: nw,
		Expires: time.UnixMilli(1700003600000)})
	if err != nil {
		t.Fatal(err)
	}
	group, err := groups.DeriveID(groups.KeyFromSecret("vector"), groups.DefaultParams(), groups.NoOp{}.Signature(), nil)
	if err != nil {
		t.Fatal(err)
	}
	version := catalog.Version{StartMS: 1700000000000, UpdateMS: 1700000000002}
	se, err := catalog.Seal(catalog.Entry{PeerID: id, Network: nw, Protocol: "mosaik-go/0.1.0", Version: version,
		Addrs: []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/4001")}, Tags: []catalog.Tag{validator},
		Streams: []catalog.StreamID{orders}, Tickets: []catalog.Ticket{st},
		Groups: []catalog.Membership{{Group: group, Role: 1}}, Names: []string{"orders", "validator"}}, sk)
	if err != nil {
		t.Fatal(err)
	}
	testutil.CheckVector(t, vectorDir, "catalog/entry_full", se.Bytes(), testutil.Vector{
		Description: "sealed catalog entry using every field: the entry of catalog/entry.json one update later, " +
			"with the ticket of tickets/signed.json, writer membership of the group of groups/group_id.json, and names",
		Section: "4.1, 5, 17.1, 19.1",
		Fields: map[string]any{"peer_id": id.String(), "network": nw.String(), "protocol": "mosaik-go/0.1.0",
			"version": map[string]any{"start_ms": version.StartMS, "update_ms": version.UpdateMS},
			"addrs":   []string{"/ip4/127.0.0.1/tcp/4001"}, "tags": []string{validator.String()},
			"streams":  []string{orders.String()},
			"tickets":  []map[string]any{{"class": st.Class.String(), "data": "tickets/signed.json", "issuer": issuerID.String()}},
			"groups":   []map[string]any{{"id": group.String(), "role": 1}},
			"names":    []string{"orders", "validator"},
			"key_seed": "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"},
	})

	key := discovery.DHTKey(nw, id)
	testutil.CheckVector(t, vectorDir, "dht/entry_key", []byte(key), testutil.Vector{
		Description: "DHT record key of the vector peer's entry (bytes: the key's UTF-8 text); the value is its sealed entry",
		Section:     "11.2",
		Fields:      map[string]any{"key": key, "namespace": discovery.DHTNamespace, "network": nw.String(), "peer_id": id.String()},
	})
	ncid := discovery.NetworkCID(nw)
	testutil.CheckVector(t, vectorDir, "dht/network_cid", ncid.Bytes(), testutil.Vector{
		Description: "network CID every node provides (bytes: the binary CIDv1, raw codec, SHA2-256 multihash)",
		Section:     "11.3",
		Fields: map[string]any{"preimage": "mosaik/network/" + nw.String(), "cid": ncid.String(),
			"sha256": hex.EncodeToString(ncid.Hash()[2:])},
	})
	scid := discovery.StreamCID(nw, orders)
	testutil.CheckVector(t, vectorDir, "dht/stream_cid", scid.Bytes(), testutil.Vector{
		Description: "stream CID a producer of stream orders provides (bytes: the binary CIDv1, raw codec, SHA2-256 multihash)",
		Section:     "11.3",
		Fields: map[string]any{"preimage": "mosaik/stream/" + nw.String() + "/" + orders.String(), "cid": scid.String(),
			"sha256": hex.EncodeToString(scid.Hash()[2:])},
	})
}
