package collections_test

import (
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/mosaik-go/mosaik/collections"
	"github.com/mosaik-go/mosaik/node"
)

func TestMap_Smoke(t *testing.T) {
	ns := startNodes(t, 3)
	name := freshName(t)
	var ws []*collections.Map[string, int]
	for _, n := range ns {
		m, err := collections.NewMap[string, int](n, name)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = m.Close() })
		ws = append(ws, m)
	}
	for _, m := range ws {
		if err := m.When().Online(tctx(t, 20*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	v, err := ws[1].Insert(tctx(t, 10*time.Second), "a", 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ws[2].Extend(tctx(t, 10*time.Second), []collections.KV[string, int]{{"b", 2}, {"c", 3}}); err != nil {
		t.Fatal(err)
	}
	one, two := 1, 10
	ok, _, err := ws[0].CompareAndSwap(tctx(t, 10*time.Second), "a", &one, &two)
	if err != nil || !ok {
		t.Fatalf("CAS a 1->10: %v %v", ok, err)
	}
	ok, last, err := ws[0].CompareAndSwap(tctx(t, 10*time.Second), "a", &one, &two)
	if err != nil || ok {
		t.Fatalf("stale CAS applied: %v %v", ok, err)
	}
	if last <= v {
		t.Fatalf("versions do not increase: %d then %d", v, last)
	}
	want := map[string]int{"a": 10, "b": 2, "c": 3}
	for i, m := range ws {
		if err := m.When().Reaches(tctx(t, 10*time.Second), last); err != nil {
			t.Fatal(err)
		}
		if got := maps.Collect(m.All()); !maps.Equal(got, want) {
			t.Fatalf("replica %d holds %v, want %v", i, got, want)
		}
		if keys := slices.Collect(m.Keys()); !slices.Equal(keys, []string{"a", "b", "c"}) {
			t.Fatalf("replica %d key order %v", i, keys)
		}
	}
	// A late reader catches up.
	late := startNode(t, node.WithBootstrapPeers(ns[0].AddrInfo()))
	r, err := collections.NewMapReader[string, int](late, name)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := r.When().Reaches(tctx(t, 20*time.Second), last); err != nil {
		t.Fatal("late reader:", err)
	}
	if got := maps.Collect(r.All()); !maps.Equal(got, want) {
		t.Fatalf("late reader holds %v, want %v", got, want)
	}
	if v, err := r.Sync(tctx(t, 10*time.Second)); err != nil || v < last {
		t.Fatalf("reader Sync: %d %v", v, err)
	}
}

// An iterator takes its state when iteration starts, as documented: a
// sequence kept and ranged over again sees the state of then.
func TestMap_IteratorTakesItsStateWhenRanged(t *testing.T) {
	n := startNode(t)
	m, err := collections.NewMap[string, int](n, freshName(t))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.When().Online(tctx(t, 20*time.Second)); err != nil {
		t.Fatal(err)
	}
	all, keys := m.All(), m.Keys()
	if _, err := m.Insert(tctx(t, 10*time.Second), "a", 1); err != nil {
		t.Fatal(err)
	}
	if got := maps.Collect(all); !maps.Equal(got, map[string]int{"a": 1}) {
		t.Fatalf("a sequence taken before the insert ranges over %v, want the state when ranged", got)
	}
	if got := slices.Collect(keys); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("keys taken before the insert range over %v", got)
	}
}
