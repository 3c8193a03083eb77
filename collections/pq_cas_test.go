package collections_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/mosaik-go/mosaik/collections"
)

func ptr[T any](v T) *T { return &v }

// cas runs a CompareAndSwapValue and checks whether it applied.
func cas(t *testing.T, w *pqW, k, expected uint64, new *uint64, wantApplied bool) collections.Version {
	t.Helper()
	ok, v, err := w.CompareAndSwapValue(subCtx(t), k, expected, new)
	if err != nil {
		t.Fatal(err)
	}
	if ok != wantApplied {
		t.Fatalf("CAS %d %d→%v applied %v, want %v", k, expected, new, ok, wantApplied)
	}
	return v
}

var pqCASCases = []pqCase{
	// mosaik: tests/collections/depq.rs compare_exchange_value_success
	{"CompareExchangeValueSuccess", func(t *testing.T, s pqSetup) {
		w, r := s.writer(s.nodes[0]), s.reader(s.nodes[1])
		doer(t)(w.Insert(subCtx(t), 10, 1, 100))
		v := cas(t, w, 1, 100, ptr[uint64](200), true)
		reach(t, v, r)
		pqSame(t, []pqE{{10, 1, 200}}, w, r)
	}},
	// mosaik: tests/collections/depq.rs compare_exchange_value_remove
	{"CompareExchangeValueRemove", func(t *testing.T, s pqSetup) {
		w, r := s.writer(s.nodes[0]), s.reader(s.nodes[1])
		doer(t)(w.Extend(subCtx(t), entries(10, 20)))
		v := cas(t, w, 1, 100, nil, true)
		reach(t, v, r)
		pqSame(t, []pqE{{20, 2, 200}}, w, r)
	}},
	// mosaik: tests/collections/depq.rs compare_exchange_value_mismatch
	{"CompareExchangeValueMismatch", func(t *testing.T, s pqSetup) {
		w, r := s.writer(s.nodes[0]), s.reader(s.nodes[1])
		doer(t)(w.Insert(subCtx(t), 10, 1, 100))
		cas(t, w, 1, 999, ptr[uint64](200), false)
		v := cas(t, w, 1, 999, nil, false)
		reach(t, v, r)
		pqSame(t, []pqE{{10, 1, 100}}, w, r)
	}},
	// mosaik: tests/collections/depq.rs compare_exchange_value_missing_key
	{"CompareExchangeValueMissingKey", func(t *testing.T, s pqSetup) {
		w, r := s.writer(s.nodes[0]), s.reader(s.nodes[1])
		cas(t, w, 1, 100, ptr[uint64](200), false)
		v := cas(t, w, 2, 0, nil, false)
		reach(t, v, r)
		pqEmpty(t, r)
	}},
	// mosaik: tests/collections/depq.rs compare_exchange_value_replicates_to_readers
	{"CompareExchangeValueReplicatesToReaders", func(t *testing.T, s pqSetup) {
		w, r1, r2 := s.writer(s.nodes[0]), s.reader(s.nodes[1]), s.reader(s.nodes[2])
		doer(t)(w.Extend(subCtx(t), entries(10, 20)))
		v := cas(t, w, 1, 100, ptr[uint64](150), true)
		reach(t, v, r1, r2)
		pqSame(t, []pqE{{10, 1, 150}, {20, 2, 200}}, w, r1, r2)
	}},
	// mosaik: tests/collections/depq.rs compare_exchange_value_chained
	{"CompareExchangeValueChained", func(t *testing.T, s pqSetup) {
		w, r := s.writer(s.nodes[0]), s.reader(s.nodes[1])
		doer(t)(w.Insert(subCtx(t), 10, 1, 100))
		cas(t, w, 1, 100, ptr[uint64](200), true)
		cas(t, w, 1, 200, ptr[uint64](300), true)
		cas(t, w, 1, 200, ptr[uint64](400), false)
		v := cas(t, w, 1, 300, nil, true)
		reach(t, v, r)
		pqEmpty(t, r)
	}},
	// mosaik: tests/collections/depq.rs compare_exchange_value_preserves_priority
	{"CompareExchangeValuePreservesPriority", func(t *testing.T, s pqSetup) {
		w, r := s.writer(s.nodes[0]), s.reader(s.nodes[1])
		doer(t)(w.Extend(subCtx(t), entries(10, 20, 30)))
		v := cas(t, w, 2, 200, ptr[uint64](7), true)
		reach(t, v, r)
		pqSame(t, []pqE{{10, 1, 100}, {20, 2, 7}, {30, 3, 300}}, w, r)
		pqMinMax(t, r, 10, 30)
	}},
	// mosaik: tests/collections/depq.rs compare_exchange_value_mixed_with_mutations
	{"CompareExchangeValueMixedWithMutations", func(t *testing.T, s pqSetup) {
		w, r := s.writer(s.nodes[0]), s.reader(s.nodes[1])
		ctx, do := subCtx(t), doer(t)
		do(w.Insert(ctx, 10, 1, 100))
		do(w.UpdateValue(ctx, 1, 110))
		cas(t, w, 1, 100, ptr[uint64](1), false)
		cas(t, w, 1, 110, ptr[uint64](120), true)
		do(w.UpdatePriority(ctx, 1, 50))
		if p, _ := w.GetPriority(1); p != 50 {
			t.Fatalf("priority %d", p)
		}
		cas(t, w, 1, 120, nil, true)
		pqEmpty(t, w)
		v := do(w.Insert(ctx, 5, 1, 1))
		reach(t, v, r)
		pqSame(t, []pqE{{5, 1, 1}}, w, r)
	}},
	// mosaik: tests/collections/depq.rs compare_exchange_value_catchup
	{"CompareExchangeValueCatchup", func(t *testing.T, s pqSetup) {
		w := s.writer(s.nodes[0])
		doer(t)(w.Extend(subCtx(t), entries(10, 20, 30)))
		cas(t, w, 1, 100, ptr[uint64](111), true)
		v := cas(t, w, 3, 300, nil, true)
		r := s.reader(s.nodes[1])
		reach(t, v, r)
		pqSame(t, []pqE{{10, 1, 111}, {20, 2, 200}}, w, r)
	}},
	// mosaik: tests/collections/depq.rs construct_from_def
	{"ConstructFromDef", func(t *testing.T, s pqSetup) {
		pqFromDef(t, s, collections.PriorityQueueDef[uint64, string, string](s.name, fast))
	}},
	// mosaik: tests/collections/depq.rs construct_from_macro: Go has no
	// macros; a package-level definition value is the way.
	{"ConstructFromMacro", func(t *testing.T, s pqSetup) { pqFromDef(t, s, pqDef) }},
}

// pqDef is a package-level definition, as a program declares one.
var pqDef = collections.PriorityQueueDef[uint64, string, string]("test.depq.construct_from_macro", fast)

func pqFromDef(t *testing.T, s pqSetup, def collections.PriorityQueueDefinition[uint64, string, string]) {
	w, err := def.Writer(s.nodes[0])
	if err != nil {
		t.Fatal(err)
	}
	closeAtEnd(t, w)
	r, err := def.Reader(s.nodes[1])
	if err != nil {
		t.Fatal(err)
	}
	closeAtEnd(t, r)
	online(t, w, r)
	if w.GroupID() != r.GroupID() {
		t.Fatal("writer and reader of one definition in different groups")
	}
	v := doer(t)(w.Insert(subCtx(t), 1, "k", "v"))
	reach(t, v, r)
	if got, ok := r.Get("k"); !ok || got != "v" {
		t.Fatalf("reader: %q %v", got, ok)
	}
}

// boundedDef is a package-level definition, as a program declares one.
var boundedDef = collections.BoundedPriorityQueueDef[uint64, string, uint64]("test.depq.bounded.def", 5, fast)

func bounded(t *testing.T, s pqSetup, capacity uint64) (*pqW, *pqR) {
	t.Helper()
	w, err := collections.NewBoundedPriorityQueue[uint64, uint64, uint64](s.nodes[0], s.name, capacity, fast)
	if err != nil {
		t.Fatal(err)
	}
	closeAtEnd(t, w)
	r, err := collections.NewBoundedPriorityQueueReader[uint64, uint64, uint64](s.nodes[1], s.name, capacity, fast)
	if err != nil {
		t.Fatal(err)
	}
	closeAtEnd(t, r)
	online(t, w, r)
	if w.Capacity() != capacity || r.Capacity() != capacity {
		t.Fatalf("capacities %d %d", w.Capacity(), r.Capacity())
	}
	return w, r
}

var pqBoundedCases = []pqCase{
	// mosaik: tests/collections/depq.rs bounded_evicts_lowest_priority
	{"BoundedEvictsLowestPriority", func(t *testing.T, s pqSetup) {
		w, r := bounded(t, s, 3)
		ctx, do := subCtx(t), doer(t)
		do(w.Extend(ctx, entries(10, 20, 30)))
		v := do(w.Insert(ctx, 40, 4, 400))
		reach(t, v, r)
		pqSame(t, []pqE{{20, 2, 200}, {30, 3, 300}, {40, 4, 400}}, w, r)
		pqMinMax(t, r, 20, 40)
		// A bounded and an unbounded queue of one name are different groups.
		u, err := collections.NewPriorityQueueReader[uint64, uint64, uint64](s.nodes[2], s.name, fast)
		if err != nil {
			t.Fatal(err)
		}
		defer u.Close()
		if u.GroupID() == r.GroupID() {
			t.Fatal("the capacity is not part of the group id")
		}
	}},
	// mosaik: tests/collections/depq.rs bounded_extend_evicts_multiple
	{"BoundedExtendEvictsMultiple", func(t *testing.T, s pqSetup) {
		w, r := bounded(t, s, 3)
		ctx, do := subCtx(t), doer(t)
		do(w.Extend(ctx, entries(1, 2)))
		v := do(w.Extend(ctx, []pqE{{10, 10, 1}, {20, 20, 2}, {30, 30, 3}}))
		reach(t, v, r)
		pqSame(t, []pqE{{10, 10, 1}, {20, 20, 2}, {30, 30, 3}}, w, r)
	}},
	// mosaik: tests/collections/depq.rs bounded_update_priority_no_eviction
	{"BoundedUpdatePriorityNoEviction", func(t *testing.T, s pqSetup) {
		w, r := bounded(t, s, 3)
		ctx, do := subCtx(t), doer(t)
		do(w.Extend(ctx, entries(10, 20, 30)))
		do(w.UpdatePriority(ctx, 3, 1))
		v := do(w.Insert(ctx, 5, 2, 0)) // an upsert to the lowest priority
		reach(t, v, r)
		pqSame(t, []pqE{{1, 3, 300}, {5, 2, 0}, {10, 1, 100}}, w, r)
	}},
	// mosaik: tests/collections/depq.rs bounded_collection_macro, with a
	// package-level definition.
	{"BoundedCollectionMacro", func(t *testing.T, s pqSetup) {
		w, err := boundedDef.Writer(s.nodes[0])
		if err != nil {
			t.Fatal(err)
		}
		closeAtEnd(t, w)
		r, err := boundedDef.Reader(s.nodes[1])
		if err != nil {
			t.Fatal(err)
		}
		closeAtEnd(t, r)
		online(t, w, r)
		ctx, do := subCtx(t), doer(t)
		var v collections.Version
		for i := range uint64(6) {
			v = do(w.Insert(ctx, i, fmt.Sprintf("k%d", i), i))
		}
		reach(t, v, r)
		var keys []string
		for e := range r.All() {
			keys = append(keys, e.Key)
		}
		if !slices.Equal(keys, []string{"k1", "k2", "k3", "k4", "k5"}) || r.Capacity() != 5 {
			t.Fatalf("keys %v, capacity %d", keys, r.Capacity())
		}
	}},
}
