package collections

import (
	"bytes"
	"encoding/hex"
	"maps"
	"strconv"
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

// kindVector is one command of a kindVectors run: its file name, what it
// does, and its decoded fields.
type kindVector struct {
	name, desc string
	cmd        command
	fields     map[string]any
}

// kindVectors writes the signature of the collection of kind kindName
// called name, each command as the group's codec encodes it, and the
// snapshot after the commands applied at indexes 1, 2, …
func kindVectors[S any](t *testing.T, kindName, name string, k kind[S], parts []string, section string,
	cmds []kindVector, items []any,
) {
	t.Helper()
	sig := signature(kindName, name, parts...)
	testutil.CheckVector(t, vectorDir, "collections/"+kindName+"_signature", sig[:], testutil.Vector{
		Description: "state machine signature (bytes) of the " + kindName + " called " + name,
		Section:     "22.1, " + section,
		Fields: map[string]any{"kind": kindName, "name": name, "parts": parts,
			"kind_id": catalog.IDFromString("mosaik_collections_" + kindName).String()},
	})
	m := newMachine(k, sig, kindName, name)
	var applied []command
	for _, c := range cmds {
		b, err := commandCodec{}.Encode(c.cmd)
		if err != nil {
			t.Fatal(err)
		}
		f := map[string]any{"op": c.cmd.Op, "a": hexOrNil(c.cmd.A), "b": hexOrNil(c.cmd.B), "c": hexOrNil(c.cmd.C),
			"n": c.cmd.N, "m": c.cmd.M, "many": nil}
		if c.cmd.Many != nil {
			many := make([]string, len(c.cmd.Many))
			for i, v := range c.cmd.Many {
				many[i] = hex.EncodeToString(v)
			}
			f["many"] = many
		}
		maps.Copy(f, c.fields)
		testutil.CheckVector(t, vectorDir, "collections/"+kindName+"_"+c.name, b, testutil.Vector{
			Description: c.desc, Section: "22.1, " + section, Fields: f,
		})
		d, err := commandCodec{}.Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		applied = append(applied, d)
	}
	m.Apply(groups.ApplyContext{FirstIndex: 1}, applied)
	if m.rejected.Load() != 0 {
		t.Fatalf("%s: %d vector commands rejected", kindName, m.rejected.Load())
	}
	var snap bytes.Buffer
	if err := m.Snapshot(&snap); err != nil {
		t.Fatal(err)
	}
	testutil.CheckVector(t, vectorDir, "collections/"+kindName+"_snapshot", snap.Bytes(), testutil.Vector{
		Description: "snapshot of the " + kindName + " after its command vectors, applied at indexes 1 to " +
			strconv.Itoa(len(cmds)) + ": the header [kind, version, size], then the items in the type's order",
		Section: "22.1, " + section,
		Fields: map[string]any{"header": map[string]any{"kind": kindName, "version": len(cmds), "size": len(items)},
			"items": items},
	})
}

func hexOrNil(b cbor.RawMessage) any {
	if b == nil {
		return nil
	}
	return hex.EncodeToString(b)
}

// TestVectors_OtherKinds checks the vectors of Vec, Set, Cell, Once and
// PriorityQueue (PROTOCOL.md sections 22.3 and 22.4): a signature, two
// commands each, built as the handles build them, and the snapshot after
// them.
func TestVectors_OtherKinds(t *testing.T) {
	kindVectors(t, "vec", "chat.log", kind[vecState[string]](vecKind[string]{}), vecParts[string](), "22.3",
		[]kindVector{
			{"push_back", "Vec push back command (op 1): a the value", command{Op: vecPushBack, A: encoded(t, "hello")},
				map[string]any{"value": "hello"}},
			{"insert", "Vec insert command (op 3): n the index, a the value", command{Op: vecInsert, N: 0, A: encoded(t, "first")},
				map[string]any{"index": 0, "value": "first"}},
		}, []any{"first", "hello"})
	kindVectors(t, "set", "chat.rooms", kind[setState[string]](setKind[string]{}), setParts[string](), "22.3",
		[]kindVector{
			{"insert", "Set insert command (op 1): a the member", command{Op: setInsert, A: encoded(t, "lobby")},
				map[string]any{"value": "lobby"}},
			{"extend", "Set extend command (op 4): many the members", command{Op: setExtend,
				Many: []cbor.RawMessage{encoded(t, "ops"), encoded(t, "dev")}}, map[string]any{"values": []string{"ops", "dev"}}},
		}, []any{"dev", "ops", "lobby"})
	kindVectors(t, "cell", "chat.topic", kind[optState[string]](cellKind[string]{}), cellParts[string](), "22.3",
		[]kindVector{
			{"write", "Cell write command (op 1): a the value", command{Op: cellWrite, A: encoded(t, "welcome")},
				map[string]any{"value": "welcome"}},
			{"cas", "Cell compare and swap command (op 3): n = 3, a the expected value, b the new one",
				command{Op: cellCAS, N: 3, A: encoded(t, "welcome"), B: encoded(t, "rules")},
				map[string]any{"expected": "welcome", "new": "rules"}},
		}, []any{"rules"})
	kindVectors(t, "once", "chat.founder", kind[optState[string]](onceKind[string]{}), onceParts[string](), "22.3",
		[]kindVector{
			{"write", "Once write command (op 1): a the value", command{Op: onceWrite, A: encoded(t, "alice")},
				map[string]any{"value": "alice"}},
		}, []any{"alice"})
	kindVectors(t, "depq", "chat.jobs", kind[*pqState[int64, string, string]](pqKind[int64, string, string]{capacity: UnboundedCapacity}),
		pqParts[int64, string, string](UnboundedCapacity), "22.4",
		[]kindVector{
			{"insert", "PriorityQueue insert command (op 1): a the key, b the value, c the priority",
				command{Op: pqInsert, A: encoded(t, "job1"), B: encoded(t, "build"), C: encoded(t, int64(5))},
				map[string]any{"key": "job1", "value": "build", "priority": 5}},
			{"extend", "PriorityQueue extend command (op 2): many holds key, value, priority triples",
				command{Op: pqExtend, Many: []cbor.RawMessage{encoded(t, "job2"), encoded(t, "test"), encoded(t, int64(-1))}},
				map[string]any{"entries": []map[string]any{{"key": "job2", "value": "test", "priority": -1}}}},
		}, []any{[]any{"job1", "build", 5}, []any{"job2", "test", -1}})
}
