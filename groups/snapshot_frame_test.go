package groups

import (
	"bytes"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/mosaik-go/mosaik/groups/pb"
)

// frameSnapshotData must frame a state exactly as proto.Marshal does.
func TestFrameSnapshotData_MatchesMarshal(t *testing.T) {
	for _, epoch := range []uint64{0, 1, 127, 128, 1 << 63, ^uint64(0)} {
		for _, n := range []int{0, 1, 127, 128, 300, 70000} {
			state := bytes.Repeat([]byte{0xab}, n)
			b := append(make([]byte, snapshotHeadRoom), state...)
			got := frameSnapshotData(epoch, b, snapshotHeadRoom)
			want, err := proto.MarshalOptions{Deterministic: true}.Marshal(&pb.CoreSnapshot{Epoch: epoch, State: state})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("epoch %d, %d bytes: framed %x..., want %x...", epoch, n, got[:min(len(got), 24)], want[:min(len(want), 24)])
			}
		}
	}
}
