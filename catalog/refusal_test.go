package catalog

import (
	"errors"
	"fmt"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
)

func TestRefusal_ReadsAsErrorf(t *testing.T) {
	id := peer.ID("\x00\x24\x08\x01\x12\x20" + "0123456789abcdef0123456789abcdef")
	v := Version{StartMS: 1, UpdateMS: 2}
	got := refuse(ErrNotNewer, "%s has %v, offered %v", id, v, v)
	want := fmt.Errorf("%w: %s has %v, offered %v", ErrNotNewer, id, v, v)
	if got.Error() != want.Error() {
		t.Fatalf("message %q, want %q", got.Error(), want.Error())
	}
	if !errors.Is(got, ErrNotNewer) || errors.Is(got, ErrStale) {
		t.Fatal("errors.Is does not match the refusal's kind alone")
	}
}
