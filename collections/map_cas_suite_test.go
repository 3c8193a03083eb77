package collections_test

import (
	"testing"

	"github.com/mosaik-go/mosaik/collections"
)

// mapDef is a package-level definition, as a program declares one (Go's
// stand-in for mosaik's collection! macro).
var mapDef = collections.MapDef[string, string]("test.map.construct_from_macro", fast)

func u(v uint64) *uint64 { return &v }

var mapCASCases = []netCase[mapSetup]{
	// mosaik: tests/collections/map.rs compare_exchange_success
	{"CompareExchangeSuccess", func(t *testing.T, s mapSetup) {
		w, r := s.writer(s.nodes[0]), s.reader(s.nodes[1])
		doer(t)(w.Insert(subCtx(t), 1, 10))
		v := mapCAS(t, w, 1, u(10), u(99), true)
		reach(t, v, r)
		mapSame(t, map[uint64]uint64{1: 99}, w, r)
	}},
	// mosaik: tests/collections/map.rs compare_exchange_insert_new_key
	{"CompareExchangeInsertNewKey", func(t *testing.T, s mapSetup) {
		w, r := s.writer(s.nodes[0]), s.reader(s.nodes[1])
		v := mapCAS(t, w, 1, nil, u(10), true)
		reach(t, v, r)
		mapSame(t, map[uint64]uint64{1: 10}, w, r)
	}},
	// mosaik: tests/collections/map.rs compare_exchange_remove_key
	{"CompareExchangeRemoveKey", func(t *testing.T, s mapSetup) {
		w, r := s.writer(s.nodes[0]), s.reader(s.nodes[1])
		doer(t)(w.Extend(subCtx(t), kvs(10, 20)))
		v := mapCAS(t, w, 1, u(10), nil, true)
		reach(t, v, r)
		mapSame(t, map[uint64]uint64{2: 20}, w, r)
	}},
	// mosaik: tests/collections/map.rs compare_exchange_mismatch_no_change
	{"CompareExchangeMismatchNoChange", func(t *testing.T, s mapSetup) {
		w, r := s.writer(s.nodes[0]), s.reader(s.nodes[1])
		doer(t)(w.Insert(subCtx(t), 1, 10))
		mapCAS(t, w, 1, u(999), u(99), false)
		v := mapCAS(t, w, 1, nil, u(99), false)
		reach(t, v, r)
		mapSame(t, map[uint64]uint64{1: 10}, w, r)
	}},
	// mosaik: tests/collections/map.rs compare_exchange_mismatch_on_missing_key
	{"CompareExchangeMismatchOnMissingKey", func(t *testing.T, s mapSetup) {
		w, r := s.writer(s.nodes[0]), s.reader(s.nodes[1])
		v := mapCAS(t, w, 1, u(10), u(20), false)
		reach(t, v, r)
		mapSame(t, map[uint64]uint64{}, w, r)
	}},
	// mosaik: tests/collections/map.rs compare_exchange_replicates_to_readers
	{"CompareExchangeReplicatesToReaders", func(t *testing.T, s mapSetup) {
		w, r1, r2 := s.writer(s.nodes[0]), s.reader(s.nodes[1]), s.reader(s.nodes[2])
		doer(t)(w.Extend(subCtx(t), kvs(10, 20)))
		v := mapCAS(t, w, 1, u(10), u(100), true)
		reach(t, v, r1, r2)
		mapSame(t, map[uint64]uint64{1: 100, 2: 20}, w, r1, r2)
	}},
	// mosaik: tests/collections/map.rs compare_exchange_multiple_keys
	{"CompareExchangeMultipleKeys", func(t *testing.T, s mapSetup) {
		w, r := s.writer(s.nodes[0]), s.reader(s.nodes[1])
		doer(t)(w.Extend(subCtx(t), kvs(10, 20, 30)))
		mapCAS(t, w, 1, u(10), u(100), true)
		mapCAS(t, w, 2, u(20), nil, true)
		v := mapCAS(t, w, 4, nil, u(40), true)
		reach(t, v, r)
		mapSame(t, map[uint64]uint64{1: 100, 3: 30, 4: 40}, w, r)
	}},
	// mosaik: tests/collections/map.rs compare_exchange_none_to_none
	{"CompareExchangeNoneToNone", func(t *testing.T, s mapSetup) {
		w, r := s.writer(s.nodes[0]), s.reader(s.nodes[1])
		mapCAS(t, w, 1, nil, nil, false)
		v := doer(t)(w.Insert(subCtx(t), 1, 1))
		reach(t, v, r)
		mapSame(t, map[uint64]uint64{1: 1}, w, r)
	}},
	// mosaik: tests/collections/map.rs compare_exchange_catchup
	{"CompareExchangeCatchup", func(t *testing.T, s mapSetup) {
		w := s.writer(s.nodes[0])
		doer(t)(w.Extend(subCtx(t), kvs(10, 20, 30)))
		mapCAS(t, w, 1, u(10), u(100), true)
		mapCAS(t, w, 2, u(999), u(0), false)
		v := mapCAS(t, w, 3, u(30), nil, true)
		r := s.reader(s.nodes[1])
		reach(t, v, r)
		mapSame(t, map[uint64]uint64{1: 100, 2: 20}, w, r)
	}},
	// mosaik: tests/collections/map.rs compare_exchange_string_keys
	{"CompareExchangeStringKeys", func(t *testing.T, s mapSetup) {
		w, err := collections.NewMap[string, string](s.nodes[0], s.name, fast)
		if err != nil {
			t.Fatal(err)
		}
		closeAtEnd(t, w)
		online(t, w)
		a, b := "alpha", "beta"
		for _, step := range []struct {
			exp, new *string
			want     string
			present  bool
		}{{nil, &a, a, true}, {&a, &b, b, true}, {&b, nil, "", false}} {
			ok, _, err := w.CompareAndSwap(subCtx(t), "key", step.exp, step.new)
			if err != nil || !ok {
				t.Fatalf("CAS %v→%v: %v %v", step.exp, step.new, ok, err)
			}
			if got, present := w.Get("key"); present != step.present || got != step.want {
				t.Fatalf("after CAS: %q %v", got, present)
			}
		}
	}},
	// mosaik: tests/collections/map.rs construct_from_def
	{"ConstructFromDef", func(t *testing.T, s mapSetup) {
		mapFromDef(t, s, collections.MapDef[string, string](s.name, fast))
	}},
	// mosaik: tests/collections/map.rs construct_from_macro: a
	// package-level definition.
	{"ConstructFromMacro", func(t *testing.T, s mapSetup) { mapFromDef(t, s, mapDef) }},
}

func mapFromDef(t *testing.T, s mapSetup, def collections.MapDefinition[string, string]) {
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
	v := doer(t)(w.Insert(subCtx(t), "k", "v"))
	reach(t, v, r)
	if got, ok := r.Get("k"); !ok || got != "v" {
		t.Fatalf("reader: %q %v", got, ok)
	}
}
