package groups

import (
	"bytes"
	"testing"
)

// The huge-page hint never changes a buffer's contents, whatever its
// size and alignment (the kernel may or may not follow it).
func TestAdviseHugePages_KeepsContents(t *testing.T) {
	for _, n := range []int{0, 1, 4 << 10, 4<<20 + 123, 9 << 20} {
		b := make([]byte, n+1)[1:] // not aligned
		for i := range b {
			b[i] = byte(i * 31)
		}
		want := bytes.Clone(b)
		adviseHugePages(b)
		if !bytes.Equal(b, want) {
			t.Fatalf("%d bytes changed", n)
		}
	}
}
