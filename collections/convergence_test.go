package collections_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/mosaik-go/mosaik/collections"
	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/node"
)

// cval is a struct value, so that CAS compares canonical encodings of
// CBOR maps, not only of integers.
type cval struct {
	N int64  `cbor:"n"`
	S string `cbor:"s"`
}

type centry = collections.KV[string, cval]

// convKey draws from keys of several lengths, so that the encoding order
// (shorter strings first) differs from the strings' own order.
func convKey(rng *rand.Rand) string {
	switch rng.IntN(3) {
	case 0:
		return fmt.Sprint("k", rng.IntN(10))
	case 1:
		return fmt.Sprint("key-", rng.IntN(30))
	}
	return string(rune('a' + rng.IntN(26)))
}

// convOps issues n random operations on m with the given seed and returns
// the highest version it saw and how many failed.
func convOps(m *collections.Map[string, cval], seed uint64, n int) (collections.Version, int) {
	rng := rand.New(rand.NewPCG(seed, 20))
	var top collections.Version
	failed := 0
	for i := range n {
		ctx, cancel := context.WithTimeout(context.Background(), testutil.Scale(10*time.Second))
		val := cval{N: int64(seed)*10_000 + int64(i), S: fmt.Sprint("w", seed)}
		var v collections.Version
		var err error
		switch r := rng.IntN(200); {
		case r < 60:
			v, err = m.Insert(ctx, convKey(rng), val)
		case r < 90:
			v, err = m.Remove(ctx, convKey(rng))
		case r < 140:
			// Read locally, then swap: it matches unless another writer
			// got there first.
			k := convKey(rng)
			var exp, nw *cval
			if cur, ok := m.Get(k); ok {
				exp = &cur
			}
			if rng.IntN(5) > 0 {
				nw = &val
			}
			_, v, err = m.CompareAndSwap(ctx, k, exp, nw)
		case r < 170:
			es := make([]centry, 1+rng.IntN(5))
			for j := range es {
				es[j] = centry{Key: convKey(rng), Value: cval{N: val.N, S: fmt.Sprint(val.S, "/", j)}}
			}
			v, err = m.Extend(ctx, es)
		case r < 199:
			ks := make([]string, 1+rng.IntN(4))
			for j := range ks {
				ks[j] = convKey(rng)
			}
			v, err = m.RemoveMany(ctx, ks)
		default:
			v, err = m.Clear(ctx)
		}
		cancel()
		if err != nil {
			failed++
			continue
		}
		top = max(top, v)
	}
	return top, failed
}

// Replicas converge: three writers issue 1 000 random mutations at once
// (fixed seeds; four clients each), and once every replica reaches the
// last version, all hold the same entries in the same order, and that
// order is the order of the keys' encodings; a late reader, caught up by
// a snapshot, holds the same.
// mosaik: tests/collections (replicas agree after concurrent writers)
func TestMap_ConvergesUnderConcurrentWriters(t *testing.T) {
	mc := startMapCluster[cval](t, 3, freshName(t))
	const clients, total = 12, 1000
	var wg sync.WaitGroup
	var top atomic.Uint64
	var failed atomic.Int64
	for c := range clients {
		n := total / clients
		if c < total%clients {
			n++
		}
		wg.Go(func() {
			v, f := convOps(mc.maps[c%len(mc.maps)], uint64(c+1), n)
			for {
				cur := top.Load()
				if uint64(v) <= cur || top.CompareAndSwap(cur, uint64(v)) {
					break
				}
			}
			failed.Add(int64(f))
		})
	}
	wg.Wait()
	// Failures do not break convergence (a failed command either never
	// commits or commits everywhere), but a run of failures proves little.
	if f := failed.Load(); f > total/10 {
		t.Fatalf("%d of %d operations failed", f, total)
	}
	last := collections.Version(top.Load())
	for _, m := range mc.maps {
		v, err := m.Sync(tctx(t, 10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		last = max(last, v)
	}
	var want []centry
	for i, m := range mc.maps {
		if err := m.When().Reaches(tctx(t, 10*time.Second), last); err != nil {
			t.Fatalf("replica %d stays at %d, short of %d: %v", i, m.Version(), last, err)
		}
		var got []centry
		for k, v := range m.All() {
			got = append(got, centry{Key: k, Value: v})
		}
		if m.Len() != len(got) || m.Version() != last {
			t.Fatalf("replica %d: Len %d for %d entries, version %d, want %d", i, m.Len(), len(got), m.Version(), last)
		}
		if i == 0 {
			want = got
			continue
		}
		if !slices.Equal(got, want) {
			t.Fatalf("replica %d diverged:\n got  %v\n want %v", i, got, want)
		}
	}
	if len(want) < 5 {
		t.Fatalf("only %d entries left: the run proves little", len(want))
	}
	if !slices.IsSortedFunc(want, func(a, b centry) int {
		ka, _ := cbor.Marshal(a.Key)
		kb, _ := cbor.Marshal(b.Key)
		return bytes.Compare(ka, kb)
	}) {
		t.Fatalf("iteration order is not the order of the keys' encodings: %v", want)
	}
	// A late reader installs a snapshot (TestParams snapshot every 200
	// entries) and holds the same sequence.
	late := startNode(t, node.WithBootstrapPeers(mc.nodes[0].AddrInfo()))
	r, err := collections.NewMapReader[string, cval](late, mc.maps[0].Name(), fastGroup)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := r.When().Reaches(tctx(t, 20*time.Second), last); err != nil {
		t.Fatalf("late reader stays at %d, short of %d: %v", r.Version(), last, err)
	}
	var got []centry
	for k, v := range r.All() {
		got = append(got, centry{Key: k, Value: v})
	}
	if !slices.Equal(got, want) || r.Len() != len(want) {
		t.Fatalf("late reader diverged:\n got  %v\n want %v", got, want)
	}
	for i, m := range mc.maps {
		if r := m.Rejected(); r != 0 {
			t.Fatalf("replica %d rejected %d commands", i, r)
		}
	}
	t.Logf("%d entries at version %d on every replica (%d operations failed)", len(want), last, failed.Load())
}
