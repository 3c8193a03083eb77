package policy

import (
	"bytes"
	"encoding/json"
	"math/big"
	"strings"
	"testing"
)

// asNumber returns s as a JSON number if s is exactly one.
func asNumber(s string) (json.Number, bool) {
	d := json.NewDecoder(bytes.NewReader([]byte(s)))
	d.UseNumber()
	var v any
	if d.Decode(&v) != nil || d.More() {
		return "", false
	}
	n, ok := v.(json.Number)
	return n, ok && string(n) == s
}

// FuzzNumberEqual: number claims compare as exact decimals. For any two
// JSON numbers, numberEqual is reflexive and symmetric, and, where big.Rat
// can afford it (short inputs), agrees with exact rational equality.
func FuzzNumberEqual(f *testing.F) {
	for _, s := range [][2]string{{"1000", "1e3"}, {"0.5", "5e-1"}, {"-0", "0"}, {"9007199254740993", "9007199254740992.0"}, {"1e400", "10e399"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		x, okA := asNumber(a)
		y, okB := asNumber(b)
		if !okA || !okB {
			return
		}
		if !numberEqual(x, x) {
			t.Fatalf("%s != itself", x)
		}
		eq := numberEqual(x, y)
		if eq != numberEqual(y, x) {
			t.Fatalf("numberEqual(%s, %s) is not symmetric", x, y)
		}
		if len(a) > 24 || len(b) > 24 || bigExp(a) || bigExp(b) {
			return // big.Rat would expand the number (or refuses it)
		}
		var ra, rb big.Rat
		if _, ok := ra.SetString(a); !ok {
			t.Fatalf("big.Rat cannot parse %s", a)
		}
		if _, ok := rb.SetString(b); !ok {
			t.Fatalf("big.Rat cannot parse %s", b)
		}
		if want := ra.Cmp(&rb) == 0; eq != want {
			t.Fatalf("numberEqual(%s, %s) = %v, exact equality %v", a, b, eq, want)
		}
	})
}

// bigExp reports whether the JSON number s has an exponent of more than
// three digits.
func bigExp(s string) bool {
	i := strings.IndexAny(s, "eE")
	if i < 0 {
		return false
	}
	return len(strings.TrimLeft(s[i+1:], "+-0")) > 3
}
