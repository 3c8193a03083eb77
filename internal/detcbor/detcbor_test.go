package detcbor

import (
	"bytes"
	"testing"
	"time"
)

func TestMarshal_Deterministic(t *testing.T) {
	a := map[string]int{}
	b := map[string]int{}
	keys := []string{"zeta", "a", "mid", "bb", "c"}
	for i, k := range keys {
		a[k] = i
	}
	for i := len(keys) - 1; i >= 0; i-- {
		b[keys[i]] = i
	}
	x, err := Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	for range 20 { // map iteration order varies from call to call
		y, err := Marshal(b)
		if err != nil || !bytes.Equal(x, y) {
			t.Fatalf("equal maps encoded differently: %x vs %x (%v)", x, y, err)
		}
	}
	var back map[string]int
	if err := Unmarshal(x, &back); err != nil || len(back) != len(a) || back["zeta"] != 0 {
		t.Fatalf("round trip: %v %v", back, err)
	}
}

func TestUnmarshal_Limits(t *testing.T) {
	// An array header claiming 2^21 elements, with none of them sent.
	claim := []byte{0x9a, 0x00, 0x20, 0x00, 0x00}
	var v []int
	if err := Unmarshal(claim, &v); err == nil {
		t.Fatal("an array over MaxArrayElements decoded")
	}
	deep := bytes.Repeat([]byte{0x81}, 40) // 40 nested one-element arrays
	var w any
	if err := Unmarshal(append(deep, 0x01), &w); err == nil {
		t.Fatal("nesting over MaxNestedLevels decoded")
	}
}

// FuzzUnmarshal: arbitrary bytes never panic, and whatever decodes
// re-encodes to bytes that decode to the same encoding again.
func FuzzUnmarshal(f *testing.F) {
	for _, v := range []any{map[string]int{"a": 1}, []any{1, "x", []byte{2}}, 3.5} {
		b, _ := Marshal(v)
		f.Add(b)
	}
	f.Add([]byte{0x9a, 0x00, 0x20, 0x00, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		var v any
		if Unmarshal(data, &v) != nil {
			return
		}
		b, err := Marshal(v)
		if err != nil {
			return // e.g. a map key that is not comparable in Go
		}
		var w any
		if err := Unmarshal(b, &w); err != nil {
			t.Fatalf("re-encoding %x does not decode: %v", b, err)
		}
		c, err := Marshal(w)
		if err != nil || !bytes.Equal(b, c) {
			t.Fatalf("encoding not stable: %x then %x (%v)", b, c, err)
		}
	})
}

// Wellformed accepts what the deterministic encoder writes as raw bytes
// and refuses indefinite lengths, which it would not.
func TestWellformed(t *testing.T) {
	for _, tc := range []struct {
		b  []byte
		ok bool
	}{
		{[]byte{0x61, 'a'}, true},              // "a"
		{[]byte{0x82, 0x01, 0x02}, true},       // [1, 2]
		{[]byte{0xf6}, true},                   // null
		{[]byte{0x7f, 0x61, 'a', 0xff}, false}, // indefinite text
		{[]byte{0x9f, 0x01, 0xff}, false},      // indefinite array
		{[]byte{0x82, 0x01}, false},            // cut short
		{[]byte{0x01, 0x02}, false},            // two items
	} {
		if err := Wellformed(tc.b); (err == nil) != tc.ok {
			t.Errorf("Wellformed(% x) = %v, want ok %v", tc.b, err, tc.ok)
		}
	}
}

// A time.Time keeps its nanoseconds and its offset through a round trip,
// and re-encodes to the same bytes (collections refuse a value that does
// not), so two instants a moment apart are two values. The core options
// alone write whole seconds.
func TestMarshal_TimeKeepsNanoseconds(t *testing.T) {
	base := time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC)
	for _, v := range []time.Time{
		base.Add(100 * time.Millisecond),
		base.Add(600 * time.Millisecond),
		base.Add(time.Nanosecond),
		base.In(time.FixedZone("", 2*3600)).Add(123456789),
		base,
	} {
		b, err := Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		var back time.Time
		if err := Unmarshal(b, &back); err != nil || !back.Equal(v) {
			t.Fatalf("%v encoded as %x decodes to %v (%v)", v, b, back, err)
		}
		again, err := Marshal(back)
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("%v: %x re-encodes to %x (%v)", v, b, again, err)
		}
	}
	// One instant, one encoding, whatever the zone it is read in.
	u, _ := Marshal(base.Add(500))
	z, _ := Marshal(base.Add(500).In(time.FixedZone("CET", 3600)))
	if !bytes.Equal(u, z) {
		t.Fatalf("one instant encodes as %q in UTC and %q in CET", u, z)
	}
	x, _ := Marshal(base.Add(100 * time.Millisecond))
	y, _ := Marshal(base.Add(600 * time.Millisecond))
	if bytes.Equal(x, y) {
		t.Fatalf("two instants half a second apart encode alike: %x", x)
	}
}
