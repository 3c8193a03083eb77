package collections

import (
	"bytes"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/mosaik-go/mosaik/internal/detcbor"
)

// TestRestore_StateBeforeVersion: a reader that sees a restored
// snapshot's Version() and then reads finds that state, never the one
// before it. publish stored the version before the state, and a read that
// does not wait for the lock (nothing applied since) could get the older
// state under the newer version.
func TestRestore_StateBeforeVersion(t *testing.T) {
	m := newTestMap()
	const n = 20000
	snaps := make([][]byte, n+1)
	for v := 1; v <= n; v++ {
		var b bytes.Buffer
		if err := detcbor.NewEncoder(&b).Encode(snapshotHeader{Tag: "map", Version: uint64(v), Size: 1}); err != nil {
			t.Fatal(err)
		}
		b.Write(append([]byte{0x82}, append(raw(t, "v"), raw(t, v)...)...))
		snaps[v] = b.Bytes()
	}
	var stop atomic.Bool
	var bad atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		for !stop.Load() {
			v := m.version.Load() // handle.Version()
			if p := m.load(); uint64(p.version) < v {
				bad.Add(1)
			}
		}
	})
	for v := 1; v <= n && bad.Load() == 0; v++ {
		if err := m.Restore(bytes.NewReader(snaps[v])); err != nil {
			t.Fatal(err)
		}
	}
	stop.Store(true)
	wg.Wait()
	if k := bad.Load(); k > 0 {
		t.Fatalf("%d reads saw Version() ahead of the state they then read", k)
	}
}
