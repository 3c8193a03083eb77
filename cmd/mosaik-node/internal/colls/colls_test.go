package colls

import (
	"errors"
	"reflect"
	"testing"
)

func TestParseSpec(t *testing.T) {
	if s, err := ParseSpec("map:orders"); err != nil || s != (Spec{"map", "orders"}) {
		t.Fatalf("map:orders = %v, %v", s, err)
	}
	if s, err := ParseSpec("map:a:b"); err != nil || s.Name != "a:b" {
		t.Fatalf("a name may hold a colon: %v, %v", s, err)
	}
	if _, err := ParseSpec("bogus:x"); !errors.Is(err, ErrUnknownKind) {
		t.Errorf("bogus:x: %v, want %v", err, ErrUnknownKind)
	}
	if got, want := Available(), []string{"cell", "depq", "map", "once", "set", "vec"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Available() = %v, want %v", got, want)
	}
	for _, in := range []string{"", "map", "map:", ":x"} {
		if _, err := ParseSpec(in); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
	for _, k := range Available() {
		if kinds[k] == nil {
			t.Errorf("Available lists %q, which has no opener", k)
		}
	}
}

func TestDiff_KeyOrderNetChanges(t *testing.T) {
	a := map[string]string{"a": "1", "b": "2", "c": "3"}
	b := map[string]string{"a": "1", "b": "20", "d": "4"}
	want := []Change{
		{Version: 9, Op: "put", Key: "b", Value: "20"},
		{Version: 9, Op: "del", Key: "c"},
		{Version: 9, Op: "put", Key: "d", Value: "4"},
	}
	if got := diff(a, b, 9); !reflect.DeepEqual(got, want) {
		t.Fatalf("diff = %v, want %v", got, want)
	}
	if got := diff(b, b, 9); len(got) != 0 {
		t.Fatalf("no change reported %v", got)
	}
	if s := want[1].String(); s != "9\tdel\tc" {
		t.Errorf("del line %q", s)
	}
	if s := want[0].String(); s != "9\tput\tb\t20" {
		t.Errorf("put line %q", s)
	}
}
