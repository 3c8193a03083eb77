package groups

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
	"lukechampine.com/blake3"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/groups/pb"
	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/policy"
)

// vectorDir holds the groups vectors computed with unexported functions
// (group id, raft node ids, key proofs, core frames); the module root's
// TestVectors writes the other files of the same directory.
const vectorDir = "../testdata/vectors"

// vectorPeer is the peer of the ed25519 key whose seed is first, first+1,
// … (PROTOCOL.md section 3: seed 00 … 1f; 20 … 3f is the second key of
// the vectors).
func vectorPeer(t *testing.T, first byte) peer.ID {
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
	return id
}

func seq32(first byte) [32]byte {
	var b [32]byte
	for i := range b {
		b[i] = first + byte(i)
	}
	return b
}

func hexU64(v uint64) string { return fmt.Sprintf("%016x", v) }

func marshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestVectors checks the vectors of PROTOCOL.md sections 19.3 and 21
// against testdata/vectors/groups (rewrite with -update-vectors): a group
// id and its key proofs computed from fixed inputs, a whole handshake, and
// one frame of each core kind. 64-bit ids and epochs are hex strings in
// the fields (JSON numbers lose them in JavaScript).
func TestVectors(t *testing.T) {
	nw := catalog.IDFromString("mosaik")
	initiator, responder := vectorPeer(t, 0x00), vectorPeer(t, 0x20)
	key := KeyFromSecret("vector")
	p := DefaultParams()
	sig := NoOp{}.Signature()
	group, err := DeriveID(key, p, sig, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The keyed hash's input, built from PROTOCOL.md 21.1, must give the
	// same id: the spec and DeriveID agree.
	var pre []byte
	pre = append(pre, "mosaik groups id v1"...)
	pre = binary.BigEndian.AppendUint64(append(pre, 0x01), 500)
	pre = binary.BigEndian.AppendUint64(append(pre, 0x02), 150)
	pre = binary.BigEndian.AppendUint64(append(pre, 0x03), 10)
	pre = append(append(pre, 0x04), sig[:]...)
	pre = binary.BigEndian.AppendUint32(append(pre, 0x06), 0)
	if got := keyed(key.h, pre); !bytes.Equal(got, group[:]) {
		t.Fatalf("PROTOCOL.md 21.1's id input gives %x, DeriveID %s", got, group)
	}
	testutil.CheckVector(t, vectorDir, "groups/group_id", group[:], testutil.Vector{
		Description: "group id: blake3-256 keyed with key = blake3-256(secret) over id_input; " +
			"default heartbeat parameters, the NoOp state machine's signature, no ticket validators",
		Section: "21.1",
		Fields: map[string]any{"secret": "vector", "key": hex.EncodeToString(key.h[:]), "heartbeat_ms": 500,
			"heartbeat_jitter_ms": 150, "missed_heartbeats": 10, "signature": sig.String(),
			"signature_of": "mosaik_noop_state_machine", "validators": []string{}, "id_input": hex.EncodeToString(pre)},
	})

	idI, idR := raftID(initiator), raftID(responder)
	testutil.CheckVector(t, vectorDir, "groups/raft_node_ids", binary.BigEndian.AppendUint64(
		binary.BigEndian.AppendUint64(nil, idI), idR), testutil.Vector{
		Description: "raft node ids of the two vector peers: first 8 bytes (big endian) of blake3-256(\"mosaik-raft-node\" ‖ peer id bytes); hex is both ids, 8 bytes each",
		Section:     "21.2",
		Fields: map[string]any{"peers": []map[string]any{
			{"peer_id": initiator.String(), "key_seed": "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f", "raft_id": hexU64(idI)},
			{"peer_id": responder.String(), "key_seed": "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f", "raft_id": hexU64(idR)},
		}},
	})

	// One handshake: the initiator is the key of seed 00 … 1f, the
	// responder the key of seed 20 … 3f, both in the group above.
	ni, nr := seq32(0x40), seq32(0x60)
	k := bondKey(key.h)
	testutil.CheckVector(t, vectorDir, "groups/bond_hello", encodeMsg(frameHello, &pb.BondHello{Network: nw[:],
		Group: group[:], Nonce: ni[:], Role: uint32(RoleWriter)}), testutil.Vector{
		Description: "group bond Hello frame (type 0x01) of the handshake of bond_welcome and bond_proof; the group is groups/group_id",
		Section:     "19.2, 19.3",
		Fields: map[string]any{"network": nw.String(), "group": group.String(), "nonce": hex.EncodeToString(ni[:]),
			"role": 1, "initiator": initiator.String()},
	})
	proofFields := func(side byte, prover, verifier peer.ID, pr [proofSize]byte) map[string]any {
		in := []byte{side}
		in = append(in, group[:]...)
		in = append(binary.AppendUvarint(in, uint64(len(prover))), prover...)
		in = append(binary.AppendUvarint(in, uint64(len(verifier))), verifier...)
		in = append(append(in, ni[:]...), nr[:]...)
		if !bytes.Equal(keyed(k, in), pr[:]) {
			t.Fatalf("PROTOCOL.md 19.3's proof input does not give proof()'s proof (side %c)", side)
		}
		return map[string]any{"proof": hex.EncodeToString(pr[:]), "side": string(side), "group": group.String(),
			"group_key": hex.EncodeToString(key.h[:]), "bond_key": hex.EncodeToString(k[:]),
			"prover": prover.String(), "verifier": verifier.String(), "nonce_i": hex.EncodeToString(ni[:]),
			"nonce_r": hex.EncodeToString(nr[:]), "proof_input": hex.EncodeToString(in)}
	}
	pr := proof(k, sideResponder, group, responder, initiator, ni, nr)
	wf := proofFields(sideResponder, responder, initiator, pr)
	wf["nonce"], wf["role"] = hex.EncodeToString(nr[:]), 2
	testutil.CheckVector(t, vectorDir, "groups/bond_welcome", encodeMsg(frameWelcome, &pb.BondWelcome{Nonce: nr[:],
		Proof: pr[:], Role: uint32(RoleReader)}), testutil.Vector{
		Description: "group bond Welcome frame (type 0x02) answering bond_hello, with the computed proof_r " +
			"(bond_key = blake3.DeriveKey(\"mosaik groups bond v1\", group_key); proof = blake3-keyed(bond_key, proof_input))",
		Section: "19.2, 19.3",
		Fields:  wf,
	})
	pi := proof(k, sideInitiator, group, initiator, responder, ni, nr)
	testutil.CheckVector(t, vectorDir, "groups/bond_proof", encodeMsg(frameProof, &pb.BondProof{Proof: pi[:]}),
		testutil.Vector{
			Description: "group bond Proof frame (type 0x03) completing the handshake of bond_hello and bond_welcome, with the computed proof_i",
			Section:     "19.2, 19.3",
			Fields:      proofFields(sideInitiator, initiator, responder, pi),
		})

	ticketGroupVector(t, key, sig, responder)
	coreVectors(t, idI, idR)
	snapshotVectors(t, group, idI, idR)
}

// keyed is blake3-256 keyed with k over in.
func keyed(k [32]byte, in []byte) []byte {
	h := blake3.New(32, k[:])
	_, _ = h.Write(in)
	return h.Sum(nil)
}

// coreVectors writes one frame of each core kind (section 21.3), as the
// bond layer sends them (encodeFrame of the kind and the protobuf body):
// the responder (raft id idR) leads epoch 0x0123456789abcdef at term 2,
// the initiator (idI) follows.
func coreVectors(t *testing.T, idI, idR uint64) {
	const epoch = 0x0123456789abcdef
	frame := func(kind byte, m proto.Message) []byte { return encodeFrame(kind, marshal(t, m)) }

	cmd, err := CBOR[int64]{}.Encode(5)
	if err != nil {
		t.Fatal(err)
	}
	entryData := marshal(t, &pb.CoreEntry{Origin: idI, Seq: 1, Command: cmd})
	msg := marshal(t, &raftpb.Message{Type: new(raftpb.MessageType_MsgApp), To: new(idI), From: new(idR),
		Term: new(uint64(2)), LogTerm: new(uint64(2)), Index: new(uint64(5)), Commit: new(uint64(5)),
		Entries: []*raftpb.Entry{{Term: new(uint64(2)), Index: new(uint64(6)), Type: new(raftpb.EntryType_EntryNormal),
			Data: entryData}}})
	testutil.CheckVector(t, vectorDir, "groups/core_raft", frame(kindRaft, &pb.CoreRaft{Epoch: epoch, Message: msg}),
		testutil.Vector{
			Description: "CoreRaft frame (kind 0x20): an etcd raftpb.Message MsgApp (type 3) with one normal entry, " +
				"whose data is a CoreEntry holding the CBOR command 5",
			Section: "19.2, 21.3, 21.4",
			Fields: map[string]any{"epoch": hexU64(epoch), "message": hex.EncodeToString(msg),
				"raft_message": map[string]any{"type": "MsgApp", "to": hexU64(idI), "from": hexU64(idR), "term": 2,
					"log_term": 2, "index": 5, "commit": 5, "entries": []map[string]any{{"term": 2, "index": 6,
						"type": "EntryNormal", "data": hex.EncodeToString(entryData),
						"core_entry": map[string]any{"origin": hexU64(idI), "seq": 1, "command": hex.EncodeToString(cmd)}}}},
			},
		})
	testutil.CheckVector(t, vectorDir, "groups/core_status", frame(kindStatus, &pb.CoreStatus{Epoch: epoch,
		LastTerm: 2, LastIndex: 6, Committed: 6, Applied: 5, Leader: idR, LostEpoch: 0x0f0e0d0c0b0a0908,
		ParentEpoch: 0x1020304050607080, Reluctant: true, Snapshots: []*pb.CoreAnchor{{Index: 4, Term: 2}}, LostTerm: 1}),
		testutil.Vector{
			Description: "CoreStatus frame (kind 0x21) of a follower that fetches nothing (fetching 0 is left out)",
			Section:     "19.2, 21.3",
			Fields: map[string]any{"epoch": hexU64(epoch), "last_term": 2, "last_index": 6, "committed": 6, "applied": 5,
				"leader": hexU64(idR), "is_leader": false, "lost_epoch": hexU64(0x0f0e0d0c0b0a0908),
				"parent_epoch": hexU64(0x1020304050607080), "reluctant": true,
				"snapshots": []map[string]any{{"index": 4, "term": 2}}, "fetching": 0, "lost_term": 1},
		})
	cmd2, err := CBOR[int64]{}.Encode(-1)
	if err != nil {
		t.Fatal(err)
	}
	testutil.CheckVector(t, vectorDir, "groups/core_forward", frame(kindForward, &pb.CoreForward{Origin: idI, Seq: 7,
		Commands: [][]byte{cmd, cmd2}}), testutil.Vector{
		Description: "CoreForward frame (kind 0x22): two CBOR commands (5 and -1) with request ids (origin, 7) and (origin, 8)",
		Section:     "19.2, 21.3",
		Fields: map[string]any{"origin": hexU64(idI), "seq": 7,
			"commands": []string{hex.EncodeToString(cmd), hex.EncodeToString(cmd2)}},
	})
	testutil.CheckVector(t, vectorDir, "groups/core_forward_ack", frame(kindForwardOK, &pb.CoreForwardAck{Seq: 7,
		FirstIndex: 7, Count: 2}), testutil.Vector{
		Description: "CoreForwardAck frame (kind 0x23): core_forward's commands appended at indexes 7 and 8",
		Section:     "19.2, 21.3",
		Fields:      map[string]any{"seq": 7, "first_index": 7, "count": 2},
	})
	testutil.CheckVector(t, vectorDir, "groups/core_not_leader", frame(kindNotLeader, &pb.CoreNotLeader{Seq: 7,
		Leader: idR}), testutil.Vector{
		Description: "CoreNotLeader frame (kind 0x24): the receiver of core_forward does not lead; leader is its guess",
		Section:     "19.2, 21.3",
		Fields:      map[string]any{"seq": 7, "leader": hexU64(idR)},
	})
	testutil.CheckVector(t, vectorDir, "groups/core_snapshot_failed", frame(kindSnapFailed, &pb.CoreSnapshotFailed{
		Anchor: &pb.CoreAnchor{Index: 1000, Term: 3}, Reason: "no holder answered"}), testutil.Vector{
		Description: "CoreSnapshotFailed frame (kind 0x25): the sender could not fetch the snapshot of a MsgSnap",
		Section:     "19.2, 20, 21.3",
		Fields:      map[string]any{"anchor": map[string]any{"index": 1000, "term": 3}, "reason": "no holder answered"},
	})
	testutil.CheckVector(t, vectorDir, "groups/core_leave", frame(kindLeave, &pb.CoreLeave{Epoch: epoch}), testutil.Vector{
		Description: "Leave frame (kind 0x26, body CoreLeave): the sender asks the leader of the epoch to remove it",
		Section:     "19.2, 21.3",
		Fields:      map[string]any{"epoch": hexU64(epoch)},
	})
	testutil.CheckVector(t, vectorDir, "groups/core_left", frame(kindLeft, &pb.CoreLeave{Epoch: epoch}), testutil.Vector{
		Description: "Left frame (kind 0x27, body CoreLeave): the leader of the epoch applied a configuration without the receiver",
		Section:     "19.2, 21.3",
		Fields:      map[string]any{"epoch": hexU64(epoch)},
	})
}

// snapshotVectors writes a CoreSnapshot as the log store keeps it and the
// MsgSnap that ships it, with its descriptor in place of the bytes
// (sections 20 and 21.4): a snapshot at index 1000, term 3 of epoch
// 0x0123456789abcdef whose state machine state is the CBOR integer 42.
func snapshotVectors(t *testing.T, group catalog.ID, idI, idR uint64) {
	const epoch = 0x0123456789abcdef
	state, err := CBOR[int64]{}.Encode(42)
	if err != nil {
		t.Fatal(err)
	}
	buf := append(make([]byte, snapshotHeadRoom), state...)
	data := frameSnapshotData(epoch, buf, snapshotHeadRoom)
	if want := marshal(t, &pb.CoreSnapshot{Epoch: epoch, State: state}); !bytes.Equal(data, want) {
		t.Fatalf("frameSnapshotData gives %x, proto.Marshal %x", data, want)
	}
	testutil.CheckVector(t, vectorDir, "groups/core_snapshot", data, testutil.Vector{
		Description: "CoreSnapshot: raftpb.Snapshot.data as the log store keeps it (not framed); the bytes a descriptor hashes and chunks carry",
		Section:     "20, 21.4",
		Fields: map[string]any{"epoch": hexU64(epoch), "state": hex.EncodeToString(state),
			"blake3": hex.EncodeToString(blake3Sum(data))},
	})

	meta := &raftpb.SnapshotMetadata{ConfState: &raftpb.ConfState{Voters: []uint64{idR}, Learners: []uint64{idI}},
		Index: new(uint64(1000)), Term: new(uint64(3))}
	wire, d, err := snapshotToWire(&raftpb.Snapshot{Metadata: meta, Data: data}, group.String(),
		newSnapshotCache(0, 0), time.Unix(1700000000, 0))
	if err != nil {
		t.Fatal(err)
	}
	msg := marshal(t, &raftpb.Message{Type: new(raftpb.MessageType_MsgSnap), To: new(idI), From: new(idR),
		Term: new(uint64(3)), Snapshot: wire})
	testutil.CheckVector(t, vectorDir, "groups/core_raft_snap", encodeFrame(kindRaft, marshal(t, &pb.CoreRaft{Epoch: epoch,
		Message: msg})), testutil.Vector{
		Description: "CoreRaft frame (kind 0x20) holding a MsgSnap (type 7) whose snapshot data is the SnapshotDescriptor " +
			"of core_snapshot; machine is the group id of group_id in hex",
		Section: "20, 21.3",
		Fields: map[string]any{"epoch": hexU64(epoch), "message": hex.EncodeToString(msg),
			"raft_message": map[string]any{"type": "MsgSnap", "to": hexU64(idI), "from": hexU64(idR), "term": 3,
				"snapshot": map[string]any{"metadata": map[string]any{"index": 1000, "term": 3,
					"conf_state": map[string]any{"voters": []string{hexU64(idR)}, "learners": []string{hexU64(idI)}}},
					"data": hex.EncodeToString(wire.GetData()),
					"descriptor": map[string]any{"version": 1, "anchor": map[string]any{"index": 1000, "term": 3},
						"total_size": d.TotalSize, "hash": hex.EncodeToString(d.Hash[:]), "machine": d.Machine}}},
		},
	})

	testutil.CheckVector(t, vectorDir, "groups/bond_pong", encodeFrame(framePong, nil), testutil.Vector{
		Description: "group bond Pong frame (type 0x06, empty body), the answer to a Ping",
		Section:     "19.2, 19.5",
		Fields:      map[string]any{},
	})
	testutil.CheckVector(t, vectorDir, "groups/bond_departure", encodeFrame(frameDeparture, nil), testutil.Vector{
		Description: "group bond Departure frame (type 0x07, empty body): the sender leaves the group",
		Section:     "19.2, 19.5",
		Fields:      map[string]any{},
	})
}

// blake3Sum is blake3-256 (unkeyed).
func blake3Sum(b []byte) []byte { s := blake3.Sum256(b); return s[:] }

// ticketGroupVector writes the id of the group_id group when it also
// requires two tickets: a libp2p-signed ticket from issuer and an HS256
// JWT, each validator entering the id through its fingerprint (section
// 21.1; the fingerprints are SHA-256 over policy/fingerprint.go's tagged
// fields).
func ticketGroupVector(t *testing.T, key Key, sig catalog.ID, issuer peer.ID) {
	nw := catalog.IDFromString("mosaik")
	secret := []byte("mosaik test vector secret, 32 b!")
	hk, err := policy.HS256Key(secret)
	if err != nil {
		t.Fatal(err)
	}
	vs := []policy.TicketValidator{policy.NewSignedTicketValidator(nw, issuer), policy.NewJWT(nw, hk)}
	id, err := DeriveID(key, DefaultParams(), sig, vs)
	if err != nil {
		t.Fatal(err)
	}
	var pre []byte
	pre = append(pre, "mosaik groups id v1"...)
	pre = binary.BigEndian.AppendUint64(append(pre, 0x01), 500)
	pre = binary.BigEndian.AppendUint64(append(pre, 0x02), 150)
	pre = binary.BigEndian.AppendUint64(append(pre, 0x03), 10)
	pre = append(append(pre, 0x04), sig[:]...)
	fps := make([]string, len(vs))
	for i, v := range vs {
		fp := v.(Fingerprinter).Fingerprint()
		fps[i] = hex.EncodeToString(fp[:])
		pre = append(binary.BigEndian.AppendUint32(append(pre, 0x05), uint32(i)), fp[:]...)
	}
	pre = binary.BigEndian.AppendUint32(append(pre, 0x06), uint32(len(vs)))
	if got := keyed(key.h, pre); !bytes.Equal(got, id[:]) {
		t.Fatalf("PROTOCOL.md 21.1's id input gives %x, DeriveID %s", got, id)
	}
	testutil.CheckVector(t, vectorDir, "groups/group_id_tickets", id[:], testutil.Vector{
		Description: "group id of groups/group_id's group that also requires a libp2p-signed ticket (issuer key seed 20 .. 3f) " +
			"and an HS256 JWT (no other settings), in that order",
		Section: "17, 21.1",
		Fields: map[string]any{"secret": "vector", "key": hex.EncodeToString(key.h[:]), "heartbeat_ms": 500,
			"heartbeat_jitter_ms": 150, "missed_heartbeats": 10, "signature": sig.String(),
			"validators": []map[string]any{
				{"class": policy.SignedTicketClass.String(), "class_of": "mosaik.tickets.libp2p.v1", "network": nw.String(), "issuers": []string{issuer.String()}, "fingerprint": fps[0]},
				{"class": policy.JWTClass.String(), "class_of": "mosaik.tickets.jwt.v1", "network": nw.String(), "keys": []map[string]any{{"alg": "HS256", "secret": string(secret)}}, "fingerprint": fps[1]},
			},
			"id_input": hex.EncodeToString(pre)},
	})
}
