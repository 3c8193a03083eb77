package testutil

import (
	"fmt"
	"testing"
)

// Lazy calls its function when the message is formatted, once per
// argument use, and keeps the verb and its flags.
func TestLazy_FormatsAtPrintTime(t *testing.T) {
	n := 1
	v := Lazy(func() int { return n })
	n = 42
	if got := fmt.Sprintf("%d|%5d|%v|%x", v, v, v, v); got != "42|   42|42|2a" {
		t.Fatalf("Sprintf = %q, want the value at print time with each verb's flags", got)
	}
	s := Lazy(func() []string { return []string{"a", "b"} })
	if got := fmt.Sprintf("%q %+v", s, s); got != `["a" "b"] [a b]` {
		t.Fatalf("Sprintf = %q", got)
	}
}
