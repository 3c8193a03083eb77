package groups

import (
	"strings"
	"testing"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	"github.com/mosaik-go/mosaik/groups/pb"
)

// A peer's Close whose reason is over 256 bytes keeps its code (the reason
// is cut to valid UTF-8); it was a protocol violation, so the peer's code
// (and the backoff it asks for) was lost. Code 0 is still one.
func TestBondClose_LongReasonCut(t *testing.T) {
	long := strings.Repeat("é", maxReason) // 2 bytes each
	body, _ := proto.Marshal(&pb.BondClose{Code: uint32(CodeTimeout), Reason: long})
	ce, err := decodeClose(body)
	if err != nil {
		t.Fatalf("decodeClose of a %d-byte reason: %v", len(long), err)
	}
	if ce.Code != CodeTimeout || !ce.Remote || len(ce.Reason) > maxReason || !utf8.ValidString(ce.Reason) || !strings.HasPrefix(long, ce.Reason) {
		t.Fatalf("decodeClose = %+v (reason %d bytes), want TooSlow, remote, a valid prefix of at most %d bytes", ce, len(ce.Reason), maxReason)
	}
	if got := encodeClose(CodeTimeout, long); len(got) > maxReason+16 {
		t.Errorf("encodeClose sent %d bytes for a cut reason", len(got))
	}
	zero, _ := proto.Marshal(&pb.BondClose{Reason: "x"})
	if _, err := decodeClose(zero); err == nil {
		t.Error("a Close with code 0 was accepted")
	}
}
