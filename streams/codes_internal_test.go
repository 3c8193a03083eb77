package streams

import "testing"

// Ends are counted by code for the codes of the table; any other code,
// which the remote peer picks, counts under CodeOther, so that one peer
// cannot grow the stats and the metric series without bound.
func TestCodeCounts_UnknownCodesShareOneCounter(t *testing.T) {
	var c codeCounts
	for i := range 100 {
		c.add(Code(900000 + i))
	}
	c.add(CodeTooSlow)
	c.add(CodeOther)
	got := c.snapshot()
	if len(got) != 2 || got[CodeOther] != 101 || got[CodeTooSlow] != 1 {
		t.Fatalf("ends %v, want 101 under CodeOther and 1 TooSlow", got)
	}
	if CodeOther.String() != "Other" || !CodeNoCapacity.known() || Code(7).known() {
		t.Error("the code table is not what the counters use")
	}
}

// WithBackoff(nil) is refused by the constructor, as the other options'
// nil values are; accepted, it panicked in the receiver goroutine.
func TestWithBackoff_NilIsRefused(t *testing.T) {
	var c consumerConfig
	if err := WithBackoff(nil).applyConsumer(&c); err == nil {
		t.Fatal("WithBackoff(nil) accepted")
	}
}
