package logonce

import (
	"fmt"
	"testing"
	"time"
)

func TestSet_Allow(t *testing.T) {
	t0 := time.Unix(1000, 0)
	s := New(time.Minute, 4)
	if !s.Allow("a", t0) || s.Allow("a", t0.Add(59*time.Second)) {
		t.Fatal("a key is allowed once within the window")
	}
	if !s.Allow("a", t0.Add(time.Minute)) {
		t.Fatal("a key is allowed again after the window")
	}
	s.Forget("a")
	if !s.Allow("a", t0.Add(time.Minute)) {
		t.Fatal("a forgotten key is allowed again at once")
	}
	for i := range 100 {
		s.Allow(fmt.Sprint(i), t0)
	}
	if len(s.seen) > 4 {
		t.Fatalf("the set holds %d keys, max 4", len(s.seen))
	}
}
