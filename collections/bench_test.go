package collections

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/mosaik-go/mosaik/groups"
)

// benchEntries is the size of the maps the benchmarks work on: large
// enough for a tree of three levels, small enough to build in a few
// milliseconds, so that -benchtime 1x stays quick.
const benchEntries = 10_000

// benchMapState builds a map state of n entries (string keys, 64 B
// values) through the pure kind, as replicas build it.
func benchMapState(b testing.TB, n int) (mapState[string, []byte], []string) {
	b.Helper()
	k := mapKind[string, []byte]{}
	s := k.empty()
	keys := make([]string, n)
	val := make([]byte, 64)
	for i := range n {
		keys[i] = fmt.Sprintf("key-%08d", i)
		cmd := insertCommand(b, keys[i], val)
		if _, o := k.apply(s, &cmd); o != applied {
			b.Fatalf("insert %d: outcome %d", i, o)
		}
	}
	return s, keys
}

func insertCommand(b testing.TB, key string, val []byte) command {
	b.Helper()
	ka, err := encode(key)
	if err != nil {
		b.Fatal(err)
	}
	va, err := encode(val)
	if err != nil {
		b.Fatal(err)
	}
	return command{Op: mapInsert, A: ka, B: va}
}

// BenchmarkMapGet is a local read of a present key: a published state
// loaded through the atomic pointer, the key encoded, a tree lookup.
func BenchmarkMapGet(b *testing.B) {
	s, keys := benchMapState(b, benchEntries)
	m := newMachine[mapState[string, []byte]](mapKind[string, []byte]{}, signature("map", "bench"), "map", "bench")
	m.publish(&published[mapState[string, []byte]]{state: s, version: 1, size: s.Len()})
	r := &MapReader[string, []byte]{handle[mapState[string, []byte]]{&core[mapState[string, []byte]]{name: "bench", m: m}}}
	requireNoReadAllocs(b, r, keys, 0)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if _, ok := r.Get(keys[i%len(keys)]); !ok {
			b.Fatal("key missing")
		}
	}
}

// BenchmarkMapGetRestored is BenchmarkMapGet on a state restored from
// its snapshot, as a late reader holds it: a binary search of the
// snapshot's bytes (the base) instead of a tree walk.
func BenchmarkMapGetRestored(b *testing.B) {
	s, keys := benchMapState(b, benchEntries)
	k := mapKind[string, []byte]{}
	rs := benchRestore(b, k, s)
	m := newMachine[mapState[string, []byte]](k, signature("map", "bench"), "map", "bench")
	m.publish(&published[mapState[string, []byte]]{state: rs, version: 1, size: rs.Len()})
	r := &MapReader[string, []byte]{handle[mapState[string, []byte]]{&core[mapState[string, []byte]]{name: "bench", m: m}}}
	requireNoReadAllocs(b, r, keys, 1) // the value's copy
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if _, ok := r.Get(keys[i%len(keys)]); !ok {
			b.Fatal("key missing")
		}
	}
}

// requireNoReadAllocs fails unless Get and Contains of a string key
// allocate nothing (encodeReadKey's pooled buffer) beyond copies, the
// copy of a []byte value that a restored map's Get makes (its values
// point into the snapshot the replica keeps and serves: the caller gets
// its own). Checked here rather than in a test: the race detector makes
// sync.Pool drop buffers at random, and the benchmarks run without it
// (the README's command runs each once).
func requireNoReadAllocs(b *testing.B, r *MapReader[string, []byte], keys []string, copies float64) {
	b.Helper()
	i := 0
	if a := testing.AllocsPerRun(100, func() {
		if _, ok := r.Get(keys[i%len(keys)]); !ok || !r.Contains(keys[i%len(keys)]) {
			b.Fatal("key missing")
		}
		i++
	}); a != copies && !raceEnabled {
		b.Fatalf("Get and Contains allocate %.1f times per read, want %.0f", a, copies)
	}
}

// benchRestore is s restored from its snapshot, as a late reader holds
// it: a base of the snapshot's bytes.
func benchRestore[K, V any](b testing.TB, k mapKind[K, V], s mapState[K, V]) mapState[K, V] {
	b.Helper()
	var buf bytes.Buffer
	if err := k.encodeRaw(s, &buf); err != nil {
		b.Fatal(err)
	}
	rs, err := k.decodeRaw(buf.Bytes(), 0)
	if err != nil || rs.base == nil {
		b.Fatalf("restore: %v", err)
	}
	return rs
}

// benchValue is a value that is neither a string nor a byte string: a
// restored map decodes it at each read.
type benchValue struct {
	ID    uint64
	Name  string
	Score int64
}

// BenchmarkMapGetStruct is a local read of a struct value, from a map
// built by inserts (tree) and from one restored from its snapshot
// (restored), which decodes the value at each read.
func BenchmarkMapGetStruct(b *testing.B) {
	k := mapKind[string, benchValue]{}
	s := k.empty()
	keys := make([]string, benchEntries)
	for i := range keys {
		keys[i] = fmt.Sprintf("key-%08d", i)
		ka, _ := encode(keys[i])
		va, _ := encode(benchValue{ID: uint64(i), Name: "user", Score: int64(i) * 3})
		cmd := command{Op: mapInsert, A: ka, B: va}
		if _, o := k.apply(s, &cmd); o != applied {
			b.Fatalf("insert %d: outcome %d", i, o)
		}
	}
	rs := benchRestore(b, k, s)
	for _, c := range []struct {
		name string
		s    mapState[string, benchValue]
	}{{"tree", s}, {"restored", rs}} {
		b.Run(c.name, func(b *testing.B) {
			m := newMachine[mapState[string, benchValue]](k, signature("map", "bench"), "map", "bench")
			m.publish(&published[mapState[string, benchValue]]{state: c.s, version: 1, size: c.s.Len()})
			r := &MapReader[string, benchValue]{handle[mapState[string, benchValue]]{&core[mapState[string, benchValue]]{name: "bench", m: m}}}
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if _, ok := r.Get(keys[i%len(keys)]); !ok {
					b.Fatal("key missing")
				}
			}
		})
	}
}

// BenchmarkMapApplyInsert is the pure kind applying one insert of a new
// key (64 B value) to a map of benchEntries entries, after an O(1) clone
// as machine.load does when a reader asks for the state after a change:
// the decode of the key and value, and the copy-on-write path of the
// tree. It is the worst case, a read between every two inserts; see
// BenchmarkMachineApplyInsert for inserts nobody reads in between.
func BenchmarkMapApplyInsert(b *testing.B) {
	s, _ := benchMapState(b, benchEntries)
	k := mapKind[string, []byte]{}
	val := make([]byte, 64)
	cmds := make([]command, min(b.N, 1<<16))
	for i := range cmds {
		cmds[i] = insertCommand(b, fmt.Sprintf("new-%08d", i), val)
	}
	cur := s
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if i%len(cmds) == 0 {
			cur = k.clone(s) // back to benchEntries entries
		}
		next := k.clone(cur)
		if _, o := k.apply(next, &cmds[i%len(cmds)]); o != applied {
			b.Fatalf("outcome %d", o)
		}
		cur = next
	}
}

// BenchmarkMapRestore is a late reader's restore of a map of benchEntries
// entries from its snapshot bytes: the check of every entry and the
// offsets of the state's base, which stays in the buffer. Throughput is the
// snapshot's bytes per second.
func BenchmarkMapRestore(b *testing.B) {
	s, _ := benchMapState(b, benchEntries)
	k := mapKind[string, []byte]{}
	var buf bytes.Buffer
	if err := k.encodeRaw(s, &buf); err != nil {
		b.Fatal(err)
	}
	data := buf.Bytes()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		r, err := k.decodeRaw(data, benchEntries)
		if err != nil || r.Len() != benchEntries {
			b.Fatalf("restored %v entries: %v", r, err)
		}
	}
}

// BenchmarkMachineApplyInsert is what a replica does per committed insert
// beyond the group's own work, as the benchmark harness's sequential puts
// drive it (one command per Apply run, nobody reading between them): the
// command decoded from its log bytes by the collections codec, then
// machine.Apply on a map of benchEntries entries, with its publication
// and notification. The groups rows' key-value machine does the decode of
// a key and a value and one Go map assignment instead.
func BenchmarkMachineApplyInsert(b *testing.B) {
	benchMachineApplyInsert(b, false)
}

// BenchmarkMachineApplyInsertRead is BenchmarkMachineApplyInsert with a
// local read of the map after every insert, so that every insert finds
// the state it writes published.
func BenchmarkMachineApplyInsertRead(b *testing.B) {
	benchMachineApplyInsert(b, true)
}

func benchMachineApplyInsert(b *testing.B, read bool) {
	s, keys := benchMapState(b, benchEntries)
	m := newMachine[mapState[string, []byte]](mapKind[string, []byte]{}, signature("map", "bench"), "map", "bench")
	m.publish(&published[mapState[string, []byte]]{state: s, version: 1, size: s.Len()})
	r := &MapReader[string, []byte]{handle[mapState[string, []byte]]{&core[mapState[string, []byte]]{name: "bench", m: m}}}
	val := make([]byte, 64)
	raw := make([][]byte, min(b.N, 1<<16))
	for i := range raw {
		cmd := insertCommand(b, fmt.Sprintf("new-%08d", i), val)
		var err error
		if raw[i], err = (groups.CBOR[command]{}).Encode(cmd); err != nil {
			b.Fatal(err)
		}
	}
	var codec commandCodec
	cmds := make([]command, 1)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		var err error
		if cmds[0], err = codec.Decode(raw[i%len(raw)]); err != nil {
			b.Fatal(err)
		}
		m.Apply(groups.ApplyContext{FirstIndex: uint64(i) + 2}, cmds)
		if read {
			if _, ok := r.Get(keys[i%len(keys)]); !ok {
				b.Fatal("key missing")
			}
		}
	}
	if m.load().version != Version(b.N+1) {
		b.Fatalf("version %d after %d inserts", m.load().version, b.N)
	}
}
