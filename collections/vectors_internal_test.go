package collections

import (
	"bytes"
	"encoding/hex"
	"testing"

	"github.com/fxamacker/cbor/v2"
	"lukechampine.com/blake3"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/groups"
	"github.com/mosaik-go/mosaik/internal/testutil"
)

const vectorDir = "../testdata/vectors"

// vectorMap is the collection of the vectors: a Map[string, uint64]
// called chat.users.
const vectorMap = "chat.users"

func encoded[T any](t *testing.T, v T) cbor.RawMessage {
	t.Helper()
	b, err := encode(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestVectors checks the collections vectors of PROTOCOL.md section 22
// against testdata/vectors/collections (rewrite with -update-vectors):
// the group of a Map[string, uint64] called chat.users, three commands as
// Map builds them, and the map's snapshot after them.
func TestVectors(t *testing.T) {
	parts := mapParts[string, uint64]()
	sig := signature("map", vectorMap, parts...)
	key := blake3.Sum256([]byte("mosaik/collections/" + vectorMap))
	if groupKey(vectorMap) != groups.KeyFromBytes([]byte("mosaik/collections/"+vectorMap)) {
		t.Fatal("the group key is not blake3 of mosaik/collections/ and the name")
	}
	p := groups.DefaultParams()
	id, err := groups.DeriveID(groupKey(vectorMap), p, sig, nil)
	if err != nil {
		t.Fatal(err)
	}
	testutil.CheckVector(t, vectorDir, "collections/map_group", id[:], testutil.Vector{
		Description: "group id of a Map[string, uint64] called chat.users (bytes: the id) with the groups' default " +
			"heartbeat parameters and no ticket validators; signature = Derive(Derive(Derive(IDFromString(\"mosaik_collections_map\"), name), part1), part2)",
		Section: "21.1, 22.1, 22.2",
		Fields: map[string]any{"kind": "map", "name": vectorMap, "parts": parts,
			"kind_id": catalog.IDFromString("mosaik_collections_map").String(), "signature": sig.String(),
			"secret": "mosaik/collections/" + vectorMap, "key": hex.EncodeToString(key[:]),
			"heartbeat_ms": p.Heartbeat.Milliseconds(), "heartbeat_jitter_ms": p.HeartbeatJitter.Milliseconds(),
			"missed_heartbeats": p.MissedHeartbeats, "validators": []string{}, "group_id": id.String()},
	})

	// The commands are built as Map.Insert, Map.CompareAndSwap and
	// Map.Extend build them, and encoded by the group's codec.
	ins := command{Op: mapInsert, A: encoded(t, "alice"), B: encoded(t, uint64(10))}
	cas := command{Op: mapCAS, A: encoded(t, "alice"), N: 3, B: encoded(t, uint64(10)), C: encoded(t, uint64(11))}
	ext := command{Op: mapExtend, Many: []cbor.RawMessage{encoded(t, "bob"), encoded(t, uint64(20)),
		encoded(t, "carol"), encoded(t, uint64(300))}}
	wire := func(c command) []byte {
		b, err := commandCodec{}.Encode(c)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	testutil.CheckVector(t, vectorDir, "collections/map_insert", wire(ins), testutil.Vector{
		Description: "Map insert command (op 1): [op, a key, b value, c, n, m, many], unused arguments null or 0",
		Section:     "22.1, 22.2",
		Fields: map[string]any{"op": 1, "a": hex.EncodeToString(ins.A), "b": hex.EncodeToString(ins.B),
			"c": nil, "n": 0, "m": 0, "many": nil, "key": "alice", "value": 10},
	})
	testutil.CheckVector(t, vectorDir, "collections/map_cas", wire(cas), testutil.Vector{
		Description: "Map compare-and-exchange command (op 4): set alice to 11 if it is 10; n = 3 (b holds the expected value, c the new one)",
		Section:     "22.1, 22.2",
		Fields: map[string]any{"op": 4, "a": hex.EncodeToString(cas.A), "b": hex.EncodeToString(cas.B),
			"c": hex.EncodeToString(cas.C), "n": 3, "m": 0, "many": nil, "key": "alice", "expected": 10, "new": 11},
	})
	many := make([]string, len(ext.Many))
	for i, v := range ext.Many {
		many[i] = hex.EncodeToString(v)
	}
	testutil.CheckVector(t, vectorDir, "collections/map_extend", wire(ext), testutil.Vector{
		Description: "Map extend command (op 5): many holds key, value, key, value",
		Section:     "22.1, 22.2",
		Fields: map[string]any{"op": 5, "a": nil, "b": nil, "c": nil, "n": 0, "m": 0, "many": many,
			"entries": []map[string]any{{"key": "bob", "value": 20}, {"key": "carol", "value": 300}}},
	})

	// The snapshot of the map after the three commands at log indexes 1–3,
	// each passed through the codec as the log does.
	m := newMachine(kind[mapState[string, uint64]](mapKind[string, uint64]{}), sig, "map", vectorMap)
	var cmds []command
	for _, c := range []command{ins, cas, ext} {
		d, err := commandCodec{}.Decode(wire(c))
		if err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, d)
	}
	m.Apply(groups.ApplyContext{FirstIndex: 1}, cmds)
	if m.rejected.Load() != 0 {
		t.Fatalf("%d vector commands rejected", m.rejected.Load())
	}
	snap := snapshotBytes(t, m)
	testutil.CheckVector(t, vectorDir, "collections/map_snapshot", snap, testutil.Vector{
		Description: "Map snapshot (the state of a CoreSnapshot) after map_insert, map_cas and map_extend at indexes 1 to 3: " +
			"a CBOR sequence of the header [kind, version, size] and one [key, value] array per entry in key encoding order",
		Section: "22.1, 22.2",
		Fields: map[string]any{"header": map[string]any{"kind": "map", "version": 3, "size": 3},
			"entries": []map[string]any{{"key": "bob", "value": 20}, {"key": "alice", "value": 11}, {"key": "carol", "value": 300}}},
	})
}

func snapshotBytes(t *testing.T, m *machine[mapState[string, uint64]]) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := m.Snapshot(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}
