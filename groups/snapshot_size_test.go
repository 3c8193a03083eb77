package groups

import (
	"bytes"
	"io"
	"log/slog"
	"testing"

	"github.com/mosaik-go/mosaik/catalog"
)

// itemsMachine is a Describer whose snapshot is 100 bytes per item.
type itemsMachine struct{ n int }

func (m *itemsMachine) Signature() catalog.ID       { return catalog.IDFromString("items") }
func (m *itemsMachine) Apply(ApplyContext, []int64) {}
func (m *itemsMachine) Query(struct{}) int64        { return int64(m.n) }
func (m *itemsMachine) Restore(io.Reader) error     { return nil }
func (m *itemsMachine) Describe() Description       { return Description{Items: m.n} }
func (m *itemsMachine) CaptureSnapshot() func(io.Writer) error {
	n := m.n
	return func(w io.Writer) error { _, err := w.Write(bytes.Repeat([]byte{1}, 100*n)); return err }
}
func (m *itemsMachine) Snapshot(w io.Writer) error { return m.CaptureSnapshot()(w) }

// TestTypedMachine_SnapshotBufferFollowsItems: after the state grew by a
// quarter, the next snapshot's buffer is sized from the item count and
// never grows (a doubling would copy megabytes), whether written at once
// or captured.
func TestTypedMachine_SnapshotBufferFollowsItems(t *testing.T) {
	m := &itemsMachine{n: 4000}
	tm := &typedMachine[int64, struct{}, int64]{sm: m, codec: CBOR[int64]{}, log: slog.New(slog.DiscardHandler)}
	if _, err := tm.snapshotAfter(8); err != nil {
		t.Fatal(err)
	}
	// Sized ahead, a buffer is the snapshot and an eighth; grown, it
	// would be about twice the estimate from the last size alone.
	sizedAhead := func(n int) int { return 8 + n + n/8 + 512 }
	m.n = 5000
	b, err := tm.snapshotAfter(8)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 8+500000 || cap(b) != sizedAhead(500000) {
		t.Fatalf("snapshot of %d bytes in a buffer of %d, want %d (sized ahead, not grown)", len(b), cap(b), sizedAhead(500000))
	}
	m.n = 6000
	b, err = tm.capture(8)()
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 8+600000 || cap(b) != sizedAhead(600000) {
		t.Fatalf("captured snapshot of %d bytes in a buffer of %d, want %d", len(b), cap(b), sizedAhead(600000))
	}
}
