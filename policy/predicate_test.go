package policy

import (
	"testing"
	"time"

	"github.com/mosaik-go/mosaik/catalog"
)

var (
	yes Predicate = func(catalog.PeerInfo) bool { return true }
	no  Predicate = func(catalog.PeerInfo) bool { return false }
)

func TestPredicates_Combinators(t *testing.T) {
	pi := catalog.PeerInfo{}
	for _, tc := range []struct {
		name string
		p    Predicate
		want bool
	}{
		{"All of none", All(), true},
		{"All true", All(yes, yes), true},
		{"All one false", All(yes, no, yes), false},
		{"All nil accepts", All(nil), true},
		{"All nil and false", All(nil, no), false},
		{"Any of none", Any(), false},
		{"Any one true", Any(no, yes), true},
		{"Any all false", Any(no, no), false},
		{"Any nil accepts", Any(nil), true},
		{"Any nil and false", Any(no, nil), true},
		{"Not true", Not(yes), false},
		{"Not false", Not(no), true},
		{"Not nil rejects", Not(nil), false},
		{"Not Not", Not(Not(yes)), true},
		{"nested", All(Any(no, yes), Not(no)), true},
		{"nested false", Any(All(yes, no), Not(yes)), false},
	} {
		if got := tc.p(pi); got != tc.want {
			t.Errorf("%s = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestPredicates_ShortCircuit(t *testing.T) {
	calls := 0
	count := func(r bool) Predicate {
		return func(catalog.PeerInfo) bool { calls++; return r }
	}
	All(count(false), count(true))(catalog.PeerInfo{})
	if calls != 1 {
		t.Errorf("All evaluated %d predicates after a false", calls)
	}
	calls = 0
	Any(count(true), count(false))(catalog.PeerInfo{})
	if calls != 1 {
		t.Errorf("Any evaluated %d predicates after a true", calls)
	}
}

func TestHasTags(t *testing.T) {
	validator := catalog.IDFromString("validator")
	eu := catalog.IDFromString("region-eu")
	e := catalog.Entry{Tags: []catalog.Tag{validator, eu}}
	e.Normalize()
	tagged := catalog.PeerInfo{Entry: &catalog.SignedEntry{Entry: e}}
	untagged := catalog.PeerInfo{Entry: &catalog.SignedEntry{}}
	for _, tc := range []struct {
		name string
		p    Predicate
		pi   catalog.PeerInfo
		want bool
	}{
		{"one tag by name", HasTags("validator"), tagged, true},
		{"every tag", HasTags("validator", "region-eu"), tagged, true},
		{"by 64-hex ID", HasTags(validator.String()), tagged, true},
		{"by upper-case hex ID", HasTags(upperHex(eu.String())), tagged, true},
		{"a missing tag", HasTags("validator", "region-us"), tagged, false},
		{"untagged peer", HasTags("validator"), untagged, false},
		{"no tags asked", HasTags(), untagged, true},
		{"no entry", HasTags("validator"), catalog.PeerInfo{}, false},
		{"no entry, no tags asked", HasTags(), catalog.PeerInfo{}, false},
	} {
		if got := tc.p(tc.pi); got != tc.want {
			t.Errorf("%s = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func upperHex(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'a' && c <= 'f' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}

func TestRTTBelow(t *testing.T) {
	const limit = 50 * time.Millisecond
	for _, tc := range []struct {
		name string
		pi   catalog.PeerInfo
		want bool
	}{
		{"unknown is optimistic", catalog.PeerInfo{}, true},
		{"unknown even with a stale value", catalog.PeerInfo{RTT: time.Second}, true},
		{"below", catalog.PeerInfo{RTT: 49 * time.Millisecond, RTTKnown: true}, true},
		{"equal is not below", catalog.PeerInfo{RTT: limit, RTTKnown: true}, false},
		{"just below", catalog.PeerInfo{RTT: limit - time.Nanosecond, RTTKnown: true}, true},
		{"above", catalog.PeerInfo{RTT: 51 * time.Millisecond, RTTKnown: true}, false},
		{"zero known", catalog.PeerInfo{RTT: 0, RTTKnown: true}, true},
	} {
		if got := RTTBelow(limit)(tc.pi); got != tc.want {
			t.Errorf("%s = %v, want %v", tc.name, got, tc.want)
		}
	}
	if RTTBelow(0)(catalog.PeerInfo{RTT: 0, RTTKnown: true}) {
		t.Error("RTTBelow(0) accepted a known 0")
	}
}
