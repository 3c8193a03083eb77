package mosaik_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"google.golang.org/protobuf/proto"

	"github.com/mosaik-go/mosaik/catalog"
	catpb "github.com/mosaik-go/mosaik/catalog/pb"
	grouppb "github.com/mosaik-go/mosaik/groups/pb"
	"github.com/mosaik-go/mosaik/internal/framer"
	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/policy"
)

// vectorDir holds the wire test vectors of PROTOCOL.md, one JSON file per
// message (hex bytes and decoded fields), for implementations in other
// languages. TestVectors (here and in packages streams, groups and
// collections) regenerates them with -update-vectors and fails on any
// difference.
const vectorDir = "testdata/vectors"

// vectorKey is the ed25519 key with seed 00 01 … 1f (PROTOCOL.md section
// 3); the ticket issuer's seed is 20 21 … 3f.
func vectorKey(t *testing.T, first byte) (crypto.PrivKey, peer.ID) {
	t.Helper()
	seed := make([]byte, ed25519.SeedSize)
	for i := range seed {
		seed[i] = first + byte(i)
	}
	sk, err := crypto.UnmarshalEd25519PrivateKey(ed25519.NewKeyFromSeed(seed))
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(sk)
	if err != nil {
		t.Fatal(err)
	}
	return sk, id
}

func mustProto(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// typedFrame is the framing of sections 16.1 and 19.2: uvarint(len) ‖
// type ‖ body, len counting the type byte.
func typedFrame(typ byte, body []byte) []byte {
	b := binary.AppendUvarint(nil, uint64(len(body)+1))
	return append(append(b, typ), body...)
}

func TestVectors(t *testing.T) {
	sk, id := vectorKey(t, 0x00)
	nw, orders := catalog.IDFromString("mosaik"), catalog.IDFromString("orders")
	validator := catalog.IDFromString("validator")
	version := catalog.Version{StartMS: 1700000000000, UpdateMS: 1700000000001}
	entry := catalog.Entry{PeerID: id, Network: nw, Protocol: "mosaik-go/0.1.0", Version: version,
		Addrs: []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/4001")}, Tags: []catalog.Tag{validator},
		Streams: []catalog.StreamID{orders}}
	se, err := catalog.Seal(entry, sk)
	if err != nil {
		t.Fatal(err)
	}
	env := se.Bytes()
	entryFields := map[string]any{"peer_id": id.String(), "network": nw.String(), "protocol": "mosaik-go/0.1.0",
		"version": map[string]any{"start_ms": version.StartMS, "update_ms": version.UpdateMS},
		"addrs":   []string{"/ip4/127.0.0.1/tcp/4001"}, "tags": []string{validator.String()},
		"streams": []string{orders.String()}, "key_seed": "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"}
	testutil.CheckVector(t, vectorDir, "catalog/entry", env, testutil.Vector{
		Description: "sealed catalog entry (signed envelope, domain mosaik-catalog-entry, payload type /mosaik/catalog/entry/1)",
		Section:     "4.5, 5", Fields: entryFields,
	})

	dep, err := catalog.SealDeparture(catalog.Departure{PeerID: id, Network: nw, LastVersion: version,
		Timestamp: time.UnixMilli(1700000005000)}, sk)
	if err != nil {
		t.Fatal(err)
	}
	testutil.CheckVector(t, vectorDir, "catalog/departure", dep, testutil.Vector{
		Description: "sealed departure (domain mosaik-catalog-departure, payload type /mosaik/catalog/departure/1)",
		Section:     "5, 8",
		Fields: map[string]any{"peer_id": id.String(), "network": nw.String(),
			"last_version": map[string]any{"start_ms": version.StartMS, "update_ms": version.UpdateMS}, "timestamp_ms": int64(1700000005000)},
	})

	ann := mustProto(t, &catpb.Announcement{Kind: &catpb.Announcement_Entry{Entry: env}})
	msgID := catalog.HashID(ann)
	testutil.CheckVector(t, vectorDir, "catalog/announcement_entry", ann, testutil.Vector{
		Description: "gossip Announcement wrapping the sealed entry; message_id is BLAKE3-256 of these bytes",
		Section:     "9.1, 9.2",
		Fields:      map[string]any{"entry": "catalog/entry.json", "message_id": hex.EncodeToString(msgID[:])},
	})
	annDep := mustProto(t, &catpb.Announcement{Kind: &catpb.Announcement_Departure{Departure: dep}})
	depID := catalog.HashID(annDep)
	testutil.CheckVector(t, vectorDir, "catalog/announcement_departure", annDep, testutil.Vector{
		Description: "gossip Announcement wrapping the sealed departure",
		Section:     "9.1, 9.2",
		Fields:      map[string]any{"departure": "catalog/departure.json", "message_id": hex.EncodeToString(depID[:])},
	})

	req := framer.AppendFrame(nil, mustProto(t, &catpb.SyncRequest{Network: nw[:], Entries: [][]byte{env}}))
	testutil.CheckVector(t, vectorDir, "catalog/sync_request", req, testutil.Vector{
		Description: "framed SyncRequest: uvarint(len) then the message, holding the sealed entry",
		Section:     "10.2, 10.3",
		Fields:      map[string]any{"network": nw.String(), "entries": []string{"catalog/entry.json"}},
	})
	resp := framer.AppendFrame(nil, mustProto(t, &catpb.SyncResponse{Entries: [][]byte{env}}))
	testutil.CheckVector(t, vectorDir, "catalog/sync_response", resp, testutil.Vector{
		Description: "framed SyncResponse holding the sealed entry",
		Section:     "10.2, 10.3",
		Fields:      map[string]any{"entries": []string{"catalog/entry.json"}},
	})

	salt := []byte{0, 1, 2, 3, 4, 5, 6, 7}
	hello := framer.AppendFrame(nil, mustProto(t, &catpb.SyncHello{Network: nw[:], Entry: env, Salt: salt}))
	testutil.CheckVector(t, vectorDir, "catalog/sync_hello", hello, testutil.Vector{
		Description: "framed SyncHello of sync 2.0.0: the network, the initiator's own sealed entry and the 8-byte salt",
		Section:     "10.2, 10.3",
		Fields:      map[string]any{"network": nw.String(), "entry": "catalog/entry.json", "salt": hex.EncodeToString(salt)},
	})
	// The digest of a catalog holding the vector entry: key = first 8
	// bytes of SHA-256(salt || binary peer ID), then the version.
	sum := sha256.Sum256(append(append([]byte{}, salt...), []byte(id)...))
	digestKey := binary.BigEndian.Uint64(sum[:8])
	item := binary.BigEndian.AppendUint64(nil, digestKey)
	item = binary.BigEndian.AppendUint64(item, uint64(version.StartMS))
	item = binary.BigEndian.AppendUint64(item, uint64(version.UpdateMS))
	digest := framer.AppendFrame(nil, mustProto(t, &catpb.SyncDigest{Items: item, Last: true}))
	testutil.CheckVector(t, vectorDir, "catalog/sync_digest", digest, testutil.Vector{
		Description: "framed last SyncDigest page with one 24-byte item (key, start_ms, update_ms, big-endian) for the vector entry's peer under the salt of sync_hello",
		Section:     "10.3",
		Fields: map[string]any{"salt": hex.EncodeToString(salt), "peer_id": id.String(), "key": fmt.Sprintf("%016x", digestKey),
			"start_ms": version.StartMS, "update_ms": version.UpdateMS, "last": true},
	})
	page := framer.AppendFrame(nil, mustProto(t, &catpb.SyncPage{Entries: [][]byte{env}}))
	testutil.CheckVector(t, vectorDir, "catalog/sync_page", page, testutil.Vector{
		Description: "framed SyncPage of sync 2.0.0 holding the sealed entry (not the last page)",
		Section:     "10.3",
		Fields:      map[string]any{"entries": []string{"catalog/entry.json"}, "last": false},
	})
	end := framer.AppendFrame(nil, mustProto(t, &catpb.SyncPage{Last: true}))
	testutil.CheckVector(t, vectorDir, "catalog/sync_page_end", end, testutil.Vector{
		Description: "framed empty last SyncPage: the end marker of sync 2.0.0",
		Section:     "10.3",
		Fields:      map[string]any{"entries": []string{}, "last": true},
	})

	// Sync 2.1.0: the digest item carries the entry's content hash; a
	// heartbeat (update_ms + 1, nothing else changed) travels as a bump
	// that rebuilds the sealed heartbeat from the vector entry.
	hash, ok := se.ContentHash()
	if !ok {
		t.Fatal("the vector entry is not in canonical form")
	}
	item21 := binary.BigEndian.AppendUint64(slices.Clone(item), hash)
	testutil.CheckVector(t, vectorDir, "catalog/sync_digest_2.1.0", framer.AppendFrame(nil, mustProto(t, &catpb.SyncDigest{Items: item21, Last: true})), testutil.Vector{
		Description: "framed last SyncDigest page of sync 2.1.0 with one 32-byte item: sync_digest's item, then the vector entry's content hash (first 8 bytes of BLAKE3-256, section 10.8)",
		Section:     "10.8",
		Fields:      map[string]any{"key": fmt.Sprintf("%016x", digestKey), "content_hash": fmt.Sprintf("%016x", hash), "last": true},
	})
	beat := entry
	beat.Version.UpdateMS++
	sb, err := catalog.Seal(beat, sk)
	if err != nil {
		t.Fatal(err)
	}
	sig, _ := sb.Signature()
	bump := binary.BigEndian.AppendUint64(nil, digestKey)
	bump = binary.BigEndian.AppendUint64(bump, uint64(beat.Version.StartMS))
	bump = append(binary.BigEndian.AppendUint64(bump, uint64(beat.Version.UpdateMS)), sig...)
	if rebuilt, err := se.ApplyBump(beat.Version, sig); err != nil || !bytes.Equal(rebuilt, sb.Bytes()) {
		t.Fatalf("the bump does not rebuild the heartbeat (%v)", err)
	}
	testutil.CheckVector(t, vectorDir, "catalog/sync_page_bump", framer.AppendFrame(nil, mustProto(t, &catpb.SyncPage{Bumps: bump, Last: true})), testutil.Vector{
		Description: "framed last SyncPage of sync 2.1.0 with one 88-byte bump (key, start_ms, update_ms, signature): the vector entry's heartbeat at update_ms + 1; splicing it into catalog/entry gives heartbeat_entry",
		Section:     "10.8",
		Fields: map[string]any{"key": fmt.Sprintf("%016x", digestKey), "start_ms": beat.Version.StartMS, "update_ms": beat.Version.UpdateMS,
			"signature": hex.EncodeToString(sig), "heartbeat_entry": hex.EncodeToString(sb.Bytes())},
	})

	issuer, issuerID := vectorKey(t, 0x20)
	expires := time.UnixMilli(1700003600000)
	st, err := policy.IssueSignedTicket(issuer, policy.SignedTicket{Subject: id, Network: nw, Expires: expires})
	if err != nil {
		t.Fatal(err)
	}
	testutil.CheckVector(t, vectorDir, "tickets/signed", st.Data, testutil.Vector{
		Description: "libp2p-signed ticket (domain mosaik-ticket, payload type /mosaik/ticket/1), issuer key seed 20 21 .. 3f",
		Section:     "17.1",
		Fields: map[string]any{"class": st.Class.String(), "issuer": issuerID.String(), "subject": id.String(),
			"network": nw.String(), "expires_ms": expires.UnixMilli()},
	})
	secret := []byte("mosaik test vector secret, 32 b!")
	key, err := policy.HS256SigningKey(secret)
	if err != nil {
		t.Fatal(err)
	}
	jt, err := policy.NewJWTBuilder(nw, key).Issuer("vector-issuer").IssuedAt(time.Unix(1700000000, 0)).
		ExpiresAt(time.Unix(1700003600, 0)).Build(id)
	if err != nil {
		t.Fatal(err)
	}
	testutil.CheckVector(t, vectorDir, "tickets/jwt_hs256", jt.Data, testutil.Vector{
		Description: "JWT ticket signed with HS256; the bytes are the compact JWS text",
		Section:     "17.2",
		Fields: map[string]any{"class": jt.Class.String(), "secret": string(secret), "iss": "vector-issuer",
			"iat": 1700000000, "exp": 1700003600, "jwt": string(jt.Data)},
	})

	group := catalog.IDFromString("vector-group")
	seq32 := func(first byte) []byte {
		b := make([]byte, 32)
		for i := range b {
			b[i] = first + byte(i)
		}
		return b
	}
	testutil.CheckVector(t, vectorDir, "groups/bond_ping", typedFrame(0x05, nil), testutil.Vector{
		Description: "group bond Ping frame (type 0x05, empty body); Pong is 0106, Departure 0107",
		Section:     "19.2, 19.5",
		Fields:      map[string]any{},
	})
	update := typedFrame(0x08, mustProto(t, &grouppb.BondEntry{Entry: env}))
	testutil.CheckVector(t, vectorDir, "groups/bond_peer_entry_update", update, testutil.Vector{
		Description: "group bond PeerEntryUpdate frame (type 0x08) carrying the sealed entry",
		Section:     "19.2, 19.5",
		Fields:      map[string]any{"entry": "catalog/entry.json"},
	})
	formed := typedFrame(0x09, mustProto(t, &grouppb.BondEntry{Entry: env}))
	testutil.CheckVector(t, vectorDir, "groups/bond_formed", formed, testutil.Vector{
		Description: "group bond BondFormed frame (type 0x09) carrying the sealed entry of a peer the sender just bonded with",
		Section:     "19.2, 19.5",
		Fields:      map[string]any{"entry": "catalog/entry.json"},
	})
	snapHash := seq32(0xc0)
	anchor := &grouppb.SnapshotAnchor{Index: 1000, Term: 3}
	desc := mustProto(t, &grouppb.SnapshotDescriptor{Version: 1, Anchor: anchor, TotalSize: 5 << 20, Hash: snapHash,
		Machine: group.String()})
	testutil.CheckVector(t, vectorDir, "groups/snapshot_descriptor", desc, testutil.Vector{
		Description: "SnapshotDescriptor, carried as raft MsgSnap data (not framed); arbitrary hash",
		Section:     "20",
		Fields: map[string]any{"version": 1, "anchor": map[string]any{"index": 1000, "term": 3}, "total_size": 5 << 20,
			"hash": hex.EncodeToString(snapHash), "machine": group.String()},
	})
	chunkReq := framer.AppendFrame(nil, mustProto(t, &grouppb.SnapshotChunkRequest{Anchor: anchor, Offset: 1 << 20,
		MaxBytes: 1 << 20, Hash: snapHash}))
	testutil.CheckVector(t, vectorDir, "groups/snapshot_chunk_request", chunkReq, testutil.Vector{
		Description: "framed SnapshotChunkRequest (uvarint(len) then the message)",
		Section:     "20",
		Fields: map[string]any{"anchor": map[string]any{"index": 1000, "term": 3}, "offset": 1 << 20,
			"max_bytes": 1 << 20, "hash": hex.EncodeToString(snapHash)},
	})
	chunkReply := framer.AppendFrame(nil, mustProto(t, &grouppb.SnapshotChunkReply{Body: &grouppb.SnapshotChunkReply_Chunk{
		Chunk: &grouppb.SnapshotChunkResponse{Anchor: anchor, Offset: 5<<20 - 4, Data: []byte("tail"), TotalSize: 5 << 20, Last: true}}}))
	testutil.CheckVector(t, vectorDir, "groups/snapshot_chunk_reply", chunkReply, testutil.Vector{
		Description: "framed SnapshotChunkReply holding the last chunk",
		Section:     "20",
		Fields: map[string]any{"chunk": map[string]any{"anchor": map[string]any{"index": 1000, "term": 3},
			"offset": 5<<20 - 4, "data": hex.EncodeToString([]byte("tail")), "total_size": 5 << 20, "last": true}},
	})
	refusal := framer.AppendFrame(nil, mustProto(t, &grouppb.SnapshotChunkReply{Body: &grouppb.SnapshotChunkReply_Refusal{
		Refusal: &grouppb.SnapshotRefusal{Code: 1, Reason: "unknown anchor"}}}))
	testutil.CheckVector(t, vectorDir, "groups/snapshot_refusal", refusal, testutil.Vector{
		Description: "framed SnapshotChunkReply holding a refusal (code 1, unknown anchor)",
		Section:     "20",
		Fields:      map[string]any{"refusal": map[string]any{"code": 1, "reason": "unknown anchor"}},
	})
	bondClose := typedFrame(0x04, mustProto(t, &grouppb.BondClose{Code: 30404, Reason: "not in that group"}))
	testutil.CheckVector(t, vectorDir, "groups/bond_close", bondClose, testutil.Vector{
		Description: "group bond Close frame (type 0x04)",
		Section:     "19.2, 19.6",
		Fields:      map[string]any{"code": 30404, "reason": "not in that group"},
	})
}
