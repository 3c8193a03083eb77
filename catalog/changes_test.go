package catalog

import (
	"fmt"
	"slices"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
)

// TestChangeLog_GrowsThenForgets checks the ring against a plain list of
// every change while it grows from changeLogStart to its cap and then
// wraps: since answers exactly while the changes asked for are held, and
// reports false once the oldest of them were overwritten.
func TestChangeLog_GrowsThenForgets(t *testing.T) {
	const limit = 4*changeLogStart + 3 // not a power of two: the last growth is partial
	l := newChangeLog(limit)
	if got := len(l.ring); got != changeLogStart {
		t.Fatalf("a new ring holds %d records, want %d", got, changeLogStart)
	}
	var all []changeRecord                                                 // all[i] is version i+1
	id := func(v int) peer.ID { return peer.ID(fmt.Sprintf("p%d", v%37)) } // repeats, as peers change again
	want := func(from, to uint64) []peer.ID {
		var ids []peer.ID
		for _, r := range all {
			if r.version > from && r.version <= to {
				ids = append(ids, r.id)
			}
		}
		slices.Sort(ids)
		return slices.Compact(ids)
	}
	for v := 1; v <= 3*limit; v++ {
		l.add(uint64(v), id(v))
		all = append(all, changeRecord{uint64(v), id(v)})
		if len(l.ring) > limit {
			t.Fatalf("after %d changes the ring holds %d records, over its cap %d", v, len(l.ring), limit)
		}
		for _, from := range []int{0, v - 1, v - changeLogStart, v - limit, v - limit - 1} {
			if from < 0 {
				continue
			}
			got, ok := l.since(uint64(from), uint64(v))
			held := v-from <= limit // the newest limit changes are remembered
			if ok != held {
				t.Fatalf("after %d changes, since(%d) ok = %v, want %v", v, from, ok, held)
			}
			if ok && !slices.Equal(got, want(uint64(from), uint64(v))) {
				t.Fatalf("after %d changes, since(%d) = %v, want %v", v, from, got, want(uint64(from), uint64(v)))
			}
		}
	}
	if got := len(l.ring); got != limit {
		t.Fatalf("a full ring holds %d records, want its cap %d", got, limit)
	}
}
